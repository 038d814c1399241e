"""Whether the user's live transcript keeps up on this machine: the dialog's frame timed with and without the
STT step, once both models are loaded and traced, against the step budget of a live dialog
(dialog/pacing.py's `step_budget_ms`).

Where Moshi with the STT step would take longer than the budget, the live dialog goes on without the user's
transcript (`MoshiPipeline.check_user_speed`): the person came to talk, and the transcript is the extra. It is
also dropped where Moshi alone is already over the budget (the transcript would only add lag to a dialog that
skips input); the message says which. File mode runs at any speed and keeps it.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

from ..audio import FRAME_S

TIMED_FRAMES = 3  # frames timed each way (interleaved), after one each way that is not
FRAME_MS = FRAME_S * 1000.0


class TranscriptCost(NamedTuple):
    """The dialog's frame with and without the STT step on this machine (medians, milliseconds)."""

    alone_ms: float
    both_ms: float
    budget_ms: float

    @property
    def stt_ms(self) -> float:
        """What the transcript adds to a frame: the STT step, and Mimi encoding all 32 codebooks, not Moshi's 8."""
        return max(0.0, self.both_ms - self.alone_ms)

    @property
    def fits(self) -> bool:
        return self.both_ms <= self.budget_ms

    def cost(self) -> str:
        return f"the speech-to-text step adds {self.stt_ms:.1f} ms to each 80 ms frame ({self.stt_ms / FRAME_MS:.0%})"

    def note(self) -> str:
        """Where it keeps up: what it costs."""
        return (
            f"Your words are transcribed live: {self.cost()}; a frame takes {self.both_ms:.0f} ms with it, "
            f"{self.alone_ms:.0f} ms without"
        )

    def refusal(self) -> str:
        """Where it does not: why the dialog goes on without it (one sentence)."""
        alone = (
            f"Moshi alone keeps up ({self.alone_ms:.0f} ms)"
            if self.alone_ms <= self.budget_ms
            else f"Moshi alone takes {self.alone_ms:.0f} ms already"
        )
        return (
            f"Your words are not transcribed: on this machine {self.cost()}, and a frame would take "
            f"{self.both_ms:.0f} ms, over the {self.budget_ms:.0f} ms a live dialog can spend ({alone}). "
            "The conversation goes on without your transcript"
        )


def time_frames(alone: Callable[[], object], both: Callable[[], object], budget_ms: float) -> TranscriptCost:
    """Times real frames of the dialog without (`alone`) and with (`both`) the STT step, interleaved so that
    the machine's other load weighs on both alike; the first of each is not counted (the 8-codebook Mimi
    encode of `alone` is traced there, not at load: the pipeline's own is the 32-codebook one)."""
    alone()
    both()
    a, b = [], []
    for _ in range(TIMED_FRAMES):
        for run, out in ((alone, a), (both, b)):
            t0 = time.perf_counter()
            run()
            out.append(1000.0 * (time.perf_counter() - t0))
    return TranscriptCost(statistics.median(a), statistics.median(b), budget_ms)
