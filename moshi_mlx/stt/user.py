"""The user's side of a conversation, transcribed live by an STT model from the dialog's own Mimi codes.

The dialog already encodes the user's audio with Mimi for Moshi, which reads 8 codebooks; Kyutai's STT
models read 32. Residual quantization makes the first 8 codes of a 32-codebook encoding those of an
8-codebook one, so the dialog's Mimi encodes 32 once (the encoder runs once; only the 24 extra residual
lookups are added): Moshi takes the first 8, the STT model all 32. The STT repository's own Mimi is not
loaded (it is the same codec: same cardinality and codebooks, checked).

A user word appears `lag_s` (the model's audio delay: 0.5 s for the 1B) after it was said; its time is
taken back by that much, as the reference's timestamps are. A model with the end-of-turn head (the 1B's PyTorch
and candle releases) also says where the user finished a turn (stt/turns.py), as late.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx

from ..audio import FRAME_S
from ..config import LmConfig
from ..errors import ConfigError, Setting
from ..lm import Lm
from ..loading.hub import ModelFiles
from ..loading.memory import check_memory_fits, estimate_bytes
from ..mimi import Mimi
from ..text import TextStep, TextStream
from ..weights.safetensors_io import read_header
from .stream import Stt, SttState
from .turns import TurnEnds, end_of_turn_prob


class Heard(NamedTuple):
    """The user's side of one frame."""

    text: TextStep
    turn_end: bool  # the user finished a turn here (before this frame's text)
    last_word: str | None  # the turn's last word, complete at its end (else it completes with the next word)


class UserTranscriber:
    """Stt + text stream over the user's codes, stepped inside the dialog's frame (one host sync for both).

    Args:
        lm: a speech-to-text model.
        tokenizer: its sentencepiece model file.
    """

    def __init__(self, lm: Lm, tokenizer) -> None:
        self.stt = Stt(lm)
        assert lm.cfg.stt is not None
        self.lag_s = lm.cfg.stt.audio_delay_seconds + self.stt.output_lag * FRAME_S  # the stream delays' steps too
        self.codebooks = lm.cfg.n_q
        self.text = TextStream(tokenizer, padding_ids=(0, lm.cfg.existing_text_padding_id))
        self.reset()

    @classmethod
    def from_files(cls, files: ModelFiles) -> UserTranscriber:
        from ..loading.lm import load_lm

        return cls(load_lm(files.moshi, files.config), files.tokenizer)

    def check_mimi(self, mimi: Mimi) -> None:
        """The dialog's Mimi must give this model's codes; it is set to encode as many codebooks as it needs."""
        cfg = self.stt.cfg
        check_codec(cfg, mimi.total_codebooks, mimi.cardinality)
        if mimi.num_codebooks < cfg.n_q:
            mimi.set_num_codebooks(cfg.n_q)

    def reset(self) -> None:
        self._state: SttState = self.stt.init_state(1)
        self.text.flush()
        self.turns = TurnEnds()

    def advance(self, codes: mx.array) -> tuple[list[mx.array], list[mx.array]]:
        """This frame's codes [1, >= 32] -> the lazy outputs to `push` once evaluated (the text token [1], and the
        end-of-turn probability where the model has that head) and every array to evaluate with them."""
        out, self._state = self.stt.advance(self._state, codes)
        prob = end_of_turn_prob(out.extra_heads)
        outputs = [out.text_token] if prob is None else [out.text_token, prob]
        return outputs, [*outputs, *Stt.state_arrays(self._state)]

    def push(self, outputs: list[mx.array]) -> Heard:
        """The evaluated outputs of `advance` -> this frame's text and whether the user's turn ended."""
        ended = self.turns.ended(float(outputs[1]) if len(outputs) > 1 else None)
        last = self.text.flush() if ended else None
        text = self.text.push(int(outputs[0][0]))
        self.turns.heard(bool(text.shown))
        return Heard(text, ended, last)

    def flush_word(self) -> str | None:
        return self.text.flush()


def check_codec(cfg: LmConfig, codebooks: int, cardinality: int) -> None:
    """ConfigError unless a Mimi of `codebooks` codebooks of `cardinality` entries gives the STT model's codes."""
    if cardinality != cfg.card or codebooks < cfg.n_q:
        raise ConfigError(
            f"the user's transcript needs {cfg.n_q} Mimi codebooks of {cfg.card} entries, but the dialog's Mimi has "
            f"{codebooks} of {cardinality}: this speech-to-text model does not fit this Moshi's codec (Kyutai's "
            "released Mimi holds 32 codebooks of 2048)"
        )


def check_dialog_model(moshi: ModelFiles, stt: ModelFiles) -> None:
    """Before anything loads: `stt` is a speech-to-text model whose codes the dialog's Mimi gives, and Moshi and it
    fit in memory together (ConfigError / MemoryBudgetError saying why not)."""
    from ..loading.mimi import mimi_config

    cfg = LmConfig.from_json(stt.config) if stt.config is not None else None
    if cfg is None or not cfg.is_stt:
        raise ConfigError(f"{stt.source} is not a speech-to-text model (model_type 'stt')")
    quantizer = mimi_config(moshi.mimi_config).quantizer
    check_codec(cfg, quantizer.n_q, quantizer.bins)
    check_dialog_fits(moshi, stt)


def check_dialog_fits(moshi: ModelFiles, stt: ModelFiles) -> None:
    """Moshi and the STT model together must fit in memory (MemoryBudgetError naming the way out), checked
    from the files' headers before either loads; each one's own check comes again as it loads."""
    total = 0
    for files in (moshi, stt):
        cfg = LmConfig.preset() if files.config is None else LmConfig.from_json(files.config)
        total += estimate_bytes(read_header(files.moshi), cfg, None)
    check_memory_fits(
        total,
        "Moshi with the user's live transcript",
        "Turn the user's transcript off, or use 4-bit weights for both models.",
        setting=Setting.PRECISION,
    )
