"""Moshi over an audio file: the answer streams to an audio file as it is produced, with a progress bar,
then the transcript is printed (and written as JSON when asked). On an error or a stop (Ctrl-C, SIGTERM,
SIGHUP) the answer and transcript so far are kept, and said so once.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from ..audio import FRAME_S, MODEL_RATE
from ..audio.file_port import FileAudioPort
from ..audio.files import AudioInput, AudioWriter
from ..cli.args import print_error
from ..cli.signals import exit_code, stops_deferred
from ..cli.wording import worded
from ..errors import MoshiError
from ..outputs import write_failure, write_text
from .console import ConsoleView, wait_loaded
from .events import Error, FrameModel, Notice, RecordingStopped, SessionEnded, Text, TurnEnded, Word
from .loop import ModelLoop
from .recorder import Recorder


def run_file(
    new_model: Callable[[], FrameModel],
    audio: AudioInput,
    output: str,
    *,
    source: str,
    transcript: str | None = None,
    max_lag_frames: int,
    record: str | None = None,
    record_meta: dict | None = None,
    new_port: Callable | None = None,
) -> int:
    """Runs the model over `audio` (read from `source` as it is stepped); the answer streams to `output`. On an
    error or a stop (Ctrl-C, SIGTERM, SIGHUP) the answer and transcript so far are written, and said so once.
    Returns the exit status. `new_port(audio, writer)`: the port over the input (default FileAudioPort;
    translation has its own)."""
    loop = ModelLoop(new_model, max_lag_frames=max_lag_frames, stats_every=25)
    got = _Collected()
    try:
        loop.start()  # in the try: a Ctrl-C as it starts closes it too
        if not wait_loaded(
            loop, ConsoleView(live=False, worded=worded)
        ):  # says the load time and the model's notes, or why not
            return 1
        writer = AudioWriter(output)
        try:
            port = (new_port or FileAudioPort)(audio, writer)
            loop.begin_session(port, Recorder(record, meta=record_meta) if record else None, None)
            interrupted = _follow(loop, port, got)
            with stops_deferred() as later:  # a Ctrl-C now (or another one) would lose the answer
                loop.end_session()
                loop.close()
                got.drain(loop, port)
                port.close(complete=interrupted is None and got.error is None)
                code = _finish(
                    output, transcript, source, writer, got, port, interrupted or (later[0] if later else None)
                )
        except BaseException:
            writer.discard()
            raise
    finally:
        loop.close(wait_loading=False)  # a Ctrl-C while the model loads ends at once
    return exit_code(later[0]) if later and interrupted is None and code == 0 else code


def _follow(loop: ModelLoop, port, got: _Collected) -> KeyboardInterrupt | None:
    """Follows the run with a progress bar until the input is done; the stop (Ctrl-C, SIGTERM...) that ended
    it early, if any."""
    from tqdm.auto import tqdm

    try:
        with tqdm(total=port.frames, unit="frame", desc="moshi", file=sys.stderr) as bar:
            done = False
            while not done:
                done = port.exhausted.wait(0.1)
                got.drain(loop, port)
                bar.update(port.frames_read - bar.n)
    except KeyboardInterrupt as e:
        return e
    return None


def _finish(
    output: str,
    transcript: str | None,
    source: str,
    writer,
    got: _Collected,
    port,
    interrupted: KeyboardInterrupt | None,
) -> int:
    """Writes the answer and the transcript (complete, or so far), says what happened; the exit status."""

    def write_transcript() -> None:
        assert transcript is not None
        write_text(transcript, transcript_json(source, got.pieces, got.words, got.user_words, got.user_turn_ends))

    written, failed = [], []
    for path, write in ((output, writer.commit), (transcript, write_transcript)):
        if path:
            try:
                write()
                written.append(str(path))
            except (OSError, MoshiError) as e:
                failed.append(f"{path} ({write_failure(e) if isinstance(e, OSError) else e})")
    print(transcript_text(got.pieces))
    done = f"{port.written / MODEL_RATE:.1f} s of {port.length / MODEL_RATE:.1f} s"
    kept = "; ".join(
        filter(
            None,
            (
                f"{' and '.join(written)} hold{'s' if len(written) == 1 else ''} the answer up to {done}"
                if written
                else "",
                f"could not write {' and '.join(failed)}" if failed else "",
            ),
        )
    )
    if interrupted is not None:
        print(f"stopped: {kept}", file=sys.stderr)
        return exit_code(interrupted)
    errors = [f"{got.error} ({kept})" if got.error else (failed and kept), got.recording_error]
    for error in filter(None, errors):
        print_error(error)
    return 1 if any(errors) else 0


class _Collected:
    """What a file run reports: text pieces, whole words, errors."""

    def __init__(self) -> None:
        self.pieces: list[tuple[float, str]] = []
        self.words: list[tuple[float, str]] = []
        self.user_words: list[tuple[float, str]] | None = None  # when the user is transcribed too
        self.user_turn_ends: list[float] = []  # when the user finished a turn (a model with the end-of-turn head)
        self.error: str | None = None
        self.recording_error: str | None = None

    def drain(self, loop: ModelLoop, port) -> None:
        while not loop.events.empty():
            ev = loop.events.get()
            if isinstance(ev, Text) and ev.speaker == "moshi":
                self.pieces.append((ev.t, ev.text))
            elif isinstance(ev, Word) and ev.speaker == "user":
                self.user_words = (self.user_words or []) + [(ev.t, ev.word)]
            elif isinstance(ev, Word):
                self.words.append((ev.t, ev.word))
            elif isinstance(ev, TurnEnded) and ev.speaker == "user":
                self.user_turn_ends.append(ev.t)
            elif isinstance(ev, Error):
                self.error = worded(ev.message, ev.hint)
            elif isinstance(ev, RecordingStopped):
                self.recording_error = ev.message
            elif isinstance(ev, Notice):
                print(f"\nnote: {ev.message}", file=sys.stderr)
            elif isinstance(ev, SessionEnded):
                port.exhausted.set()


def transcript_text(pieces: list[tuple[float, str]]) -> str:
    return " ".join("".join(p for _, p in pieces).split())


def transcript_json(
    source: str,
    pieces: list[tuple[float, str]],
    words: list[tuple[float, str]],
    user_words: list[tuple[float, str]] | None = None,
    user_turn_ends: list[float] | None = None,
) -> str:
    """The --transcript document: the text as shown, its words with start times, the pieces as they came;
    with --transcribe-user, the user's words with the times they were said, the times the user finished a turn
    (`user_end_of_turn`: a model with the end-of-turn head), and both sides' words in one list in order of time
    (`conversation`: the user's words come late, so in the order they were said, not heard; the user's turn
    ends in it as {"t", "speaker": "user", "end_of_turn": true})."""
    doc: dict = {
        "input": str(source),
        "frame_s": FRAME_S,
        "text": transcript_text(pieces),
        "words": [{"t": round(t, 3), "word": w} for t, w in words],
        "pieces": [{"t": round(t, 3), "text": p} for t, p in pieces],
    }
    if user_words is not None:
        ends = user_turn_ends or []
        doc["user_words"] = [{"t": round(t, 3), "word": w} for t, w in user_words]
        doc["user_end_of_turn"] = [round(t, 3) for t in ends]
        both = [(t, "moshi", w) for t, w in words] + [(t, "user", w) for t, w in user_words]
        both += [(t, "user", None) for t in ends]
        doc["conversation"] = [
            {"t": round(t, 3), "speaker": who, **({"word": w} if w is not None else {"end_of_turn": True})}
            for t, who, w in sorted(both, key=lambda x: x[0])
        ]
    return json.dumps(doc, indent=1, ensure_ascii=False) + "\n"
