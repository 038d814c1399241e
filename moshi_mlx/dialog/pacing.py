"""Output pacing: how much of each answer frame goes to the speaker, so that its queue stays short.

Two things make the speaker's queue grow. Clock drift between separate microphone and speaker devices:
beyond `max_queue_s` queued, a new answer frame is dropped. A late model step: the speaker runs dry and
plays silence, which delays everything after it; once more than `target_queue_s` has stayed queued for
3 frames, the excess is cut from the start of the next quiet answer frame (< -40 dBFS), so such
hiccups do not add up to a growing delay.
"""

from __future__ import annotations

import math
import os

import numpy as np

from ..audio import FRAME_S, MODEL_RATE
from ..errors import ConfigError

QUIET_DB = -40.0  # an answer frame below this level may be trimmed
_FRAMES_OVER = 3  # frames the queue must stay over the target before trimming starts

# A live dialog keeps up while a model step takes at most this share of the 80 ms frame: the rest goes to the
# loop's own work around the step (the echo canceller: 90-120 ms of CPU per second of audio on the 2-core test
# machine, 7-10 ms a frame; microphone and speaker) and to jitter. Steadily above it, the lag grows until the
# loop skips input (--max-lag).
STEP_SHARE = 0.85
STEP_BUDGET_ENV = "MOSHI_MLX_STEP_BUDGET_MS"  # another budget in milliseconds (tests force both outcomes)


def step_budget_ms() -> float:
    """Milliseconds a live dialog's model step may take (STEP_SHARE of the frame, or MOSHI_MLX_STEP_BUDGET_MS).

    Raises:
        ConfigError: MOSHI_MLX_STEP_BUDGET_MS is not a positive number.
    """
    raw = os.environ.get(STEP_BUDGET_ENV, "").strip()
    if not raw:
        return STEP_SHARE * FRAME_S * 1000.0
    try:
        ms = float(raw)
    except ValueError:
        ms = math.nan
    if not (math.isfinite(ms) and ms > 0):
        raise ConfigError(f"{STEP_BUDGET_ENV}={raw!r} is not a number of milliseconds above 0: unset it, or e.g. 68")
    return ms


def level_db(x: np.ndarray | None) -> float:
    """The level of `x` in dBFS (-120 for nothing)."""
    if x is None or x.size == 0:
        return -120.0
    return float(10.0 * np.log10(np.mean(np.square(x, dtype=np.float64)) + 1e-12))


class OutputPacer:
    """Decides, frame by frame, what of the answer to play; counts what it dropped and trimmed.

    Args:
        max_queue_s: answer audio allowed to wait for the speaker; beyond it the new frame is dropped.
        target_queue_s: the queue to come back to after a late step, by trimming quiet frames.
    """

    def __init__(self, max_queue_s: float, target_queue_s: float) -> None:
        self.max_queue_s = max_queue_s
        self.target_queue_s = target_queue_s
        self.dropped = 0  # answer frames not played
        self.trimmed = 0  # answer samples cut to win back delay after late steps
        self._over_target = 0  # frames in a row with the queue over the target

    def play(self, pcm: np.ndarray, queued_s: float) -> np.ndarray | None:
        """What of the answer frame `pcm` to queue for the speaker, which holds `queued_s` seconds already:
        `pcm` itself, its end (a quiet frame trimmed) or None (dropped)."""
        self._over_target = self._over_target + 1 if queued_s > self.target_queue_s else 0
        if queued_s > self.max_queue_s:
            self.dropped += 1
            return None
        if self._over_target >= _FRAMES_OVER and level_db(pcm) < QUIET_DB:
            cut = min(pcm.size, int((queued_s - self.target_queue_s) * MODEL_RATE))
            self.trimmed += cut
            return pcm[cut:]
        return pcm
