"""A conversation in the terminal: microphone in, Moshi's voice out, its words printed as it says them.

Enter starts a new conversation (same weights), m + Enter mutes or unmutes the microphone, Ctrl-C stops.
`run_live` drives a ModelLoop on an AudioIO and shows its events with a ConsoleView.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from ..cli.wording import worded
from .console import ConsoleView, wait_loaded
from .events import Error, FrameModel, SessionEnded, SessionStarted
from .loop import ModelLoop
from .recorder import Recorder, holds_recording

KEYS = "Enter starts a new conversation, m + Enter mutes or unmutes the microphone"  # see _keyboard


def run_live(
    new_model: Callable[[], FrameModel],
    audio,
    *,
    max_lag_frames: int,
    echo=None,
    record: str | None = None,
    record_meta: dict | None = None,
) -> int:
    """A conversation on `audio` (an AudioIO whose devices were found before the model was fetched)."""
    view = ConsoleView(worded=worded)
    loop = ModelLoop(new_model, max_lag_frames=max_lag_frames)
    try:
        loop.start()  # in the try: a Ctrl-C as it starts closes it too
        if not wait_loaded(loop, view):
            return 1
        recorder = Recorder(record, meta=record_meta) if record else None
        loop.begin_session(audio, recorder, echo)
        failed, stopped, started = False, None, False
        try:
            while True:
                ev = loop.events.get()
                view.handle(ev)
                if isinstance(ev, SessionStarted):  # the devices are open
                    started = True
                    out_name = audio.output_info.name if audio.output_info else "default output"
                    view.note(
                        f"listening on {audio.input_info.name}, speaking on {out_name}. "
                        f"Talk to Moshi; {KEYS}, Ctrl-C stops."
                    )
                    if sys.stdin is not None and sys.stdin.isatty():
                        threading.Thread(target=_keyboard, args=(loop, view), daemon=True).start()
                if isinstance(ev, Error):
                    failed = True
                if isinstance(ev, SessionEnded):
                    break
        except KeyboardInterrupt as e:  # Ctrl-C, SIGTERM, SIGHUP: end the conversation, then say so
            stopped = e
            loop.end_session()
            while not loop.events.empty():
                view.handle(loop.events.get())
            view.finish()
        if recorder is not None and not started:  # the devices would not open: a recording of nothing
            recorder.discard()
        elif recorder is not None:
            if not holds_recording(recorder.paths.folder):  # its folder was removed while recording (said above)
                view.note(f"no recording is left in {record}")
            else:
                view.note(f"conversation saved in {record}" + (" (cut short, see above)" if recorder.error else ""))
        if stopped is not None:
            raise stopped
        return 1 if failed or (recorder is not None and recorder.error) else 0
    finally:
        loop.close(wait_loading=False)  # a Ctrl-C while the model loads ends at once


def _keyboard(loop: ModelLoop, view: ConsoleView, lines=None) -> None:
    """Enter: a new conversation; m + Enter: mute / unmute the microphone."""
    for line in sys.stdin if lines is None else lines:
        view.finish()
        if line.strip().lower() == "m":
            loop.set_muted(not loop.muted)
            view.note(
                "-- microphone muted: Moshi hears silence (m + Enter to unmute) --"
                if loop.muted
                else "-- microphone on --"
            )
        else:
            loop.reset()
            view.note("-- new conversation --")
