"""Output pacing: the speaker queue's bound, and late-step delay won back in quiet frames only."""

from __future__ import annotations

import numpy as np

from moshi_mlx.audio import FRAME, MODEL_RATE
from moshi_mlx.dialog.pacing import OutputPacer, level_db

QUIET = np.full(FRAME, 0.003, np.float32)  # about -50 dBFS: Moshi silent, may be trimmed
LOUD = np.full(FRAME, 0.1, np.float32)  # -20 dBFS: Moshi speaking, never trimmed


def test_level_db() -> None:
    assert level_db(None) == level_db(np.zeros(0, np.float32)) == -120.0
    assert abs(level_db(LOUD) - -20.0) < 0.01 and abs(level_db(QUIET) - -50.5) < 0.1


def test_a_short_queue_plays_every_frame_whole() -> None:
    pacer = OutputPacer(max_queue_s=0.5, target_queue_s=0.03)
    for _ in range(10):
        assert pacer.play(QUIET, 0.02) is QUIET
    assert pacer.dropped == pacer.trimmed == 0


def test_frames_past_the_bound_are_dropped_and_counted() -> None:
    pacer = OutputPacer(max_queue_s=0.2, target_queue_s=0.03)
    assert pacer.play(LOUD, 0.21) is None and pacer.play(QUIET, 0.5) is None
    assert pacer.play(LOUD, 0.19) is LOUD
    assert pacer.dropped == 2 and pacer.trimmed == 0


def test_delay_is_won_back_from_quiet_frames_after_three_frames_over_the_target() -> None:
    pacer = OutputPacer(max_queue_s=0.5, target_queue_s=0.03)
    assert pacer.play(QUIET, 0.06) is QUIET and pacer.play(QUIET, 0.06) is QUIET  # a queue over the target...
    played = pacer.play(QUIET, 0.06)  # ...for the third frame: the excess goes
    cut = int(0.03 * MODEL_RATE)
    assert played.size == FRAME - cut and pacer.trimmed == cut
    assert pacer.play(LOUD, 0.06) is LOUD  # speech is never cut
    assert pacer.play(QUIET, 0.3).size == 0 and pacer.trimmed == cut + FRAME  # at most the whole frame


def test_the_count_of_frames_over_the_target_starts_again_below_it() -> None:
    pacer = OutputPacer(max_queue_s=0.5, target_queue_s=0.03)
    for queued in (0.06, 0.06, 0.01, 0.06, 0.06):
        assert pacer.play(QUIET, queued) is QUIET
    assert pacer.play(QUIET, 0.06).size < FRAME
