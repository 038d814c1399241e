"""Terminal presentation of a dialog: the transcript as it is spoken, and a status line.

On a terminal the status sits dimmed after the transcript's current line and is redrawn in place;
elsewhere (a pipe, a log file) the transcript goes to stdout and status lines to stderr now and then.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from ..audio import FRAME_S
from ..errors import Setting
from .events import Error, Loaded, Notice, RecordingStopped, SessionEnded, Skipped, Stats, Text, TurnEnded, too_slow

if TYPE_CHECKING:
    from .loop import ModelLoop

_STATUS_EVERY_S = 5.0  # non-terminal status cadence, in model time
TURN_END = " [end of turn]"  # ends the line where a speech-to-text model heard the speaker finish
SPEAKER_LABELS = {"user": "you", "moshi": "moshi"}  # when both sides are transcribed


def turn_label(speaker: str, t: float | None) -> str:
    """A turn's label once both sides are shown. A terminal cannot put a late line back among those printed
    before: the user's words come late (the STT model's delay), so their turn says when it was said."""
    said = f" ({t:.1f} s)" if speaker == "user" and t is not None else ""
    return f"{SPEAKER_LABELS[speaker]}{said}: "


def format_stats(s: Stats) -> str:
    return (
        f"step {s.step_ms_avg:.0f} ms | RTF {s.rtf:.2f} | lag {s.lag_ms:.0f} ms | "
        f"skipped {s.frames_skipped} | out {s.output_queued_ms:.0f} ms"
    )


class ConsoleView:
    """Turns loop events into terminal output (call `handle` from one thread)."""

    def __init__(
        self,
        out: TextIO | None = None,
        err: TextIO | None = None,
        live: bool | None = None,
        worded: Callable[[str, Setting | None], str] = lambda message, hint: message,
    ) -> None:
        self.worded = worded  # an error's message and hint -> the front end's words
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.live = self.out.isatty() and self.err.isatty() if live is None else live
        self.line = ""  # transcript text on the current terminal line
        self.status = ""
        self._last_status_t = -_STATUS_EVERY_S
        self._said_too_slow = False
        self.speaker: str | None = None  # whose text the current line holds, once the user is transcribed too
        self._new_line = False  # a turn's end closed the last line: the next words start without their space

    def _width(self) -> int:
        return max(40, shutil.get_terminal_size((100, 24)).columns - 1)

    def _redraw(self) -> None:
        room = self._width() - len(self.line) - 3
        status = f"  \x1b[2m{self.status[:room]}\x1b[0m" if self.status and room > 10 else ""
        self.out.write("\r\x1b[K" + self.line + status)
        self.out.flush()

    def text(self, text: str, speaker: str = "moshi", t: float | None = None) -> None:
        """Prints a piece of speech as it comes (Moshi's is never held back); `t`, the time of a user's piece
        (when it was said), labels the user's turn."""
        if speaker == "user" and self.speaker is None:
            self.speaker = "moshi"  # both sides from now on: each turn on a line of its own, labelled
        if self.speaker is not None and speaker != self.speaker:
            self.speaker = speaker
            if self.line:
                self.out.write("\r\x1b[K" + self.line + "\n" if self.live else "\n")
            self.line = ""
            text = turn_label(speaker, t) + text.lstrip()
        if self._new_line:
            self._new_line = False
            text = text.lstrip()
        if not self.live:
            self.line += text
            self.out.write(text)
            self.out.flush()
            return
        if len(self.line) + len(text) > self._width() - 30 and text.startswith(" "):
            self.out.write("\r\x1b[K" + self.line + "\n")
            self.line = text.lstrip()
        else:
            self.line += text
        self._redraw()

    def turn_end(self, speaker: str | None = None, t: float | None = None) -> None:
        """Ends the line with TURN_END: the next words start a line of their own. In a dialog (`speaker` "user",
        `t` when the user's turn ended) the user's next words start a labelled turn; where Moshi's line came
        in between, the end goes on a labelled line of its own."""
        if speaker is not None and self.speaker is not None and self.speaker != speaker:
            if self.line:
                self.out.write("\r\x1b[K" + self.line + "\n" if self.live else "\n")
            self.line = turn_label(speaker, t).rstrip()
            if not self.live:
                self.out.write(self.line)
        if speaker is not None and self.speaker is not None:
            self.speaker = ""  # whoever speaks next starts a labelled line
        if self.live:
            self.out.write("\r\x1b[K" + self.line + TURN_END + "\n")
        else:
            self.out.write(TURN_END + "\n")
        self.out.flush()
        self.line = ""
        self._new_line = True

    def note(self, message: str) -> None:
        """A line of its own (skips, errors), keeping the transcript line intact."""
        if self.live:
            self.out.write("\r\x1b[K")
            self.err.write(message + "\n")
            self.err.flush()
            self._redraw()
        else:
            self.err.write(("\n" if self.line else "") + message + "\n")
            self.err.flush()

    def handle(self, ev) -> None:
        if isinstance(ev, Text):
            self.text(ev.text, ev.speaker, ev.t)
        elif isinstance(ev, TurnEnded):
            self.turn_end(ev.speaker, ev.t)
        elif isinstance(ev, Stats):
            self.status = format_stats(ev)
            slow = None if self._said_too_slow else too_slow(ev)
            if slow:
                self._said_too_slow = True
                self.note(
                    f"{slow}. File mode (--input FILE --output FILE) works at any speed; a live talk needs a GPU."
                )
            t = ev.frame * FRAME_S
            if self.live:
                self._redraw()
            elif t - self._last_status_t >= _STATUS_EVERY_S:
                self._last_status_t = t
                self.err.write(f"\n[{t:6.1f} s] {self.status}\n")
                self.err.flush()
        elif isinstance(ev, Skipped):
            self.note(
                f"[behind real time by {ev.lag_s * 1000:.0f} ms: skipped {ev.frames} input frame(s), {ev.total} so far]"
            )
        elif isinstance(ev, Error):
            self.note(f"error: {self.worded(ev.message, ev.hint)}")
        elif isinstance(ev, RecordingStopped):
            self.note(f"error: {ev.message}")
        elif isinstance(ev, Notice):
            self.note(f"note: {ev.message}")
        elif isinstance(ev, Loaded):
            self.note(f"model loaded in {ev.seconds:.1f} s")
            for note in (*ev.notes, *ev.alerts):
                self.note(note)
        elif isinstance(ev, SessionEnded):
            self.finish()

    def finish(self) -> None:
        if self.line or self.live:
            self.out.write("\n")
            self.out.flush()
        self.line = ""


def wait_loaded(loop: ModelLoop, view: ConsoleView) -> bool:
    """Waits for the model; `view` shows what loading said (its time and notes, or the error). False: it failed."""
    print("loading the model...", file=sys.stderr, flush=True)
    while not loop.loaded.wait(0.1):
        pass
    while not loop.events.empty():
        view.handle(loop.events.get())
    return loop.load_error is None
