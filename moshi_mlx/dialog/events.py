"""What the model loop and its users share: the frame result, the two protocols the loop drives (the
model, the audio port) and the plain events it reports. Import these from here; `loop.py` runs them and
`moshi_mlx.pipeline` (the real FrameModel) returns a FrameResult without importing the loop."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np

from ..audio import FRAME
from ..audio import MODEL_RATE as RATE
from ..errors import Setting


class FrameResult(NamedTuple):
    pcm: np.ndarray | None  # [FRAME] float32 at 24 kHz, or None while the model has no audio yet
    text: str | None = None  # text to show this step (word or word pieces, a space before a new word)
    token: int | None = None  # the raw text token behind it (for transcripts and tests)
    word: str | None = None  # the word this step completed (started at an earlier step), if any
    word_start: bool = False  # this step's text is the first piece of a new word
    # the user's side, when the model transcribes it (`user_lag_s` on the model: how late its words come)
    user_text: str | None = None
    user_word: str | None = None
    user_word_start: bool = False
    # a speech-to-text model's end-of-turn head says the speaker finished a turn (`transcribe --mic`)
    turn_end: bool = False
    user_turn_end: bool = False  # the same for the user's side of a dialog (before this step's user text)


class FrameModel(Protocol):
    """What the loop drives: Mimi encode -> LM step -> Mimi decode, or a fake in tests."""

    def step(self, pcm: np.ndarray) -> FrameResult: ...  # pcm: [FRAME] float32, 24 kHz mono

    def reset(self) -> None: ...  # new conversation: fresh streaming state, same weights

    # optional: `notes`, a list of sentences on how the model was set up, and `alerts`, what was asked for and
    # is off (the user's transcript where it cannot keep up), reported with `Loaded`;
    # `flush_word() -> str | None`, the word still being spelled (called before a reset and at the end)


class AudioPort(Protocol):
    """The 24 kHz side of `moshi_mlx.audio.devices.AudioIO` (all calls on the loop thread)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def check(self) -> None: ...  # raises MoshiError if a device failed
    def read_input(self) -> np.ndarray: ...
    def input_lost(self) -> int: ...  # samples dropped after the last read_input (a stall), 24 kHz
    def write_output(self, pcm: np.ndarray) -> int: ...
    def read_reference(self) -> np.ndarray: ...
    def output_queued_s(self) -> float: ...


# -- events (plain, picklable, safe to hand to any thread) ----------------------------------------
class Loaded(NamedTuple):
    seconds: float
    notes: tuple[str, ...] = ()  # the model's notes on how it was set up (e.g. a compressed cache)
    alerts: tuple[str, ...] = ()  # what a person must be told: something asked for is off (the app opens a dialog)


class SessionStarted(NamedTuple):
    input_rate: float | None
    output_rate: float | None


class Text(NamedTuple):
    text: str  # to append to what is shown (a new word comes with its space)
    t: float  # seconds since the session started, on the model's timeline
    frame: int
    speaker: str = "moshi"  # or "user", when the user is transcribed too (then `t` is when it was said)


class Word(NamedTuple):
    """A whole word of Moshi's (or the user's), once complete (the next word began, or the turn ended)."""

    word: str
    t: float  # when its first piece came (a user's word: when it was said), seconds since the session started
    speaker: str = "moshi"


class TurnEnded(NamedTuple):
    """The speaker finished a turn (a speech-to-text model's end-of-turn head rose past 0.5 after some words)."""

    t: float  # seconds since the session started, on the model's timeline (the user's in a dialog: when said)
    speaker: str | None = None  # "user" in a dialog that transcribes the user; None: the one voice transcribed


class RecordingStopped(NamedTuple):
    """The recorder failed (disk full...): the conversation goes on unrecorded; what was written is kept."""

    message: str


class Skipped(NamedTuple):
    frames: int  # input frames dropped now
    total: int
    lag_s: float  # how far behind the loop was


class Stats(NamedTuple):
    frame: int
    step_ms: float  # last model step
    step_ms_avg: float  # since the last Stats
    rtf: float  # step time / frame duration (below 1 keeps up)
    lag_ms: float  # microphone audio waiting behind the frame just processed
    output_queued_ms: float  # answer audio queued for the speaker
    frames_skipped: int
    output_dropped: int  # answer frames dropped because the speaker queue was full
    output_trimmed_ms: float  # quiet answer audio cut to win back delay after late steps
    input_db: float  # frame level, dBFS
    output_db: float
    loop_ms: float  # time the loop itself took around the step (reading, echo, writing)
    rtf_sustained: float | None = None  # median step time of the last steps over the frame duration (see
    # _SUSTAINED_STEPS); None until enough steps past the warm-up were taken to judge


TOO_SLOW_RTF = 3.0  # past this a live dialog is not choppy but hopeless


def too_slow(stats: Stats) -> str | None:
    """What front ends tell a person whose machine is far slower than real time (None otherwise); judged
    on the sustained real-time factor, never on one slow step."""
    rtf = stats.rtf_sustained
    if rtf is None or rtf < TOO_SLOW_RTF:
        return None
    return (
        f"This machine runs the model {rtf:.0f}x slower than real time ({rtf * FRAME / RATE:.1f} s "
        "per 80 ms frame): Moshi cannot hold a live conversation here"
    )


class Error(NamedTuple):
    message: str
    hint: Setting | None = None  # the setting that would get around it (a MoshiError's hint)


class Notice(NamedTuple):
    message: str  # something a person should know about the session (said once), e.g. a repaired input


class SessionEnded(NamedTuple):
    reason: str  # "stopped" | "error"
    frames: int
    frames_skipped: int


class Closed(NamedTuple):
    pass


Event = (
    Loaded
    | SessionStarted
    | Text
    | Word
    | TurnEnded
    | Skipped
    | Stats
    | Error
    | Notice
    | RecordingStopped
    | SessionEnded
    | Closed
)
