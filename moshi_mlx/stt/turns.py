"""End of turn from an STT model's extra heads, read as Kyutai's scripts read it (delayed-streams-modeling's
scripts/stt_from_mic_mlx.py and stt_from_file_mlx.py with --vad): the first class of extra head 2 is the
probability that the speaker finished their turn; past 0.5 the turn has ended, said once until some text comes
again. Here not before the first text either (a silence before anyone spoke ends no turn).

The one owner of that rule: `transcribe --mic`, the dialog's user transcript and the file transcripts use it.
"""

from __future__ import annotations

import mlx.core as mx

from ..config import LmConfig

END_OF_TURN_HEAD = 2  # the extra head Kyutai's scripts read as "end of turn" (its class 0)
THRESHOLD = 0.5


def has_end_of_turn(cfg: LmConfig) -> bool:
    """The model has the end-of-turn head (kyutai/stt-1b-en_fr's PyTorch and candle releases do)."""
    return cfg.extra_heads_num_heads > END_OF_TURN_HEAD


def end_of_turn_prob(extra_heads: mx.array | None) -> mx.array | None:
    """A step's extra heads [B, heads, dim] -> the lazy end-of-turn probability of the first stream (None
    without the head)."""
    if extra_heads is None or extra_heads.shape[1] <= END_OF_TURN_HEAD:
        return None
    return extra_heads[0, END_OF_TURN_HEAD, 0]


class TurnEnds:
    """Says at which steps a turn ended, step by step: `ended` with the step's probability, then `heard` with
    whether the step gave text (a turn ends before its step's text, which begins the next turn)."""

    def __init__(self) -> None:
        self._spoke = False  # text came since the last end of turn said

    def ended(self, prob: float | None) -> bool:
        """This step's end-of-turn probability (None: no head) -> the turn ended here."""
        end = prob is not None and prob > THRESHOLD and self._spoke
        self._spoke = self._spoke and not end
        return end

    def heard(self, text: bool) -> None:
        self._spoke = self._spoke or text
