"""Output pacing: how much of each answer frame goes to the speaker, so that its queue stays short.

Two things make the speaker's queue grow. Clock drift between separate microphone and speaker devices:
beyond `max_queue_s` queued, a new answer frame is dropped. A late model step: the speaker runs dry and
plays silence, which delays everything after it; once more than `target_queue_s` has stayed queued for
3 frames, the excess is cut from the start of the next quiet answer frame (< -40 dBFS), so such
hiccups do not add up to a growing delay.
"""

from __future__ import annotations

import numpy as np

from ..audio import MODEL_RATE

QUIET_DB = -40.0  # an answer frame below this level may be trimmed
_FRAMES_OVER = 3  # frames the queue must stay over the target before trimming starts


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
