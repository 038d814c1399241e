"""Stt: streaming transcription over an `Lm` without depformer, with the timing of the reference's `LMGen`.

A step is functional like `LmGen`'s: `advance` leaves the state it is given unchanged and returns the next one
(`Lm.step_text`); let the old state go before evaluating, so that the caches are written in place.

The reference runs STT models through `LMGen` with dep_q 0 and every delay 0. Its schedule then reduces to:
step 0 feeds the initial tokens only (its audio frame is never seen: `offset <= delay` for every stream);
step t > 0 feeds the text token sampled at step t - 1 and the audio codes given at step t; each step
returns the text token it sampled. `step_with_extra_heads` adds the softmax of each extra head over the
normed temporal output of the same step.
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

import mlx.core as mx

from ..errors import ConfigError
from ..lm import Lm, LmState
from ..sampling import sample


class SttState(NamedTuple):
    lm: LmState
    text: mx.array  # [B] int32: the text token of the previous step, this step's text input
    step: int  # steps taken (host counter)
    key: mx.array  # PRNG key of the next step (used only when sampling with a temperature)


class SttStep(NamedTuple):
    text_token: mx.array  # [B] int32
    text_logits: mx.array  # [B, text_card]
    extra_heads: mx.array | None  # [B, heads, extra_heads_dim] softmax of each extra head; None without heads


class Stt:
    """Streaming speech-to-text over an `Lm` of `model_type` "stt".

    Args:
        lm: the loaded model (dep_q 0).
        text_temp, text_top_k: text sampling; temperature 0 (Kyutai's setting for these models) is greedy.
        seed: makes sampling repeatable; None draws a fresh seed.
    """

    def __init__(self, lm: Lm, text_temp: float = 0.0, text_top_k: int = 50, seed: int | None = None):
        cfg = lm.cfg
        if not cfg.is_stt:
            raise ConfigError(
                f"this is not a speech-to-text model (model_type {cfg.model_type!r}, not 'stt'): "
                "transcribe with one of Kyutai's STT models (e.g. kyutai/stt-1b-en_fr)"
            )
        self.lm, self.cfg = lm, cfg
        self.text_temp, self.text_top_k, self.seed = text_temp, text_top_k, seed
        self._initial = mx.array([cfg.text_initial_token_id] + [cfg.initial_token_id] * cfg.n_q, mx.int32)

    @property
    def codebooks(self) -> int:
        """Audio codebooks each step takes (32 for Kyutai's releases)."""
        return self.cfg.n_q

    def init_state(self, batch: int = 1, seed: int | None = None) -> SttState:
        seed = (self.seed if self.seed is not None else secrets.randbits(63)) if seed is None else seed
        text = mx.full((batch,), self.cfg.text_initial_token_id, mx.int32)
        return SttState(self.lm.init_state(batch), text, 0, mx.random.key(seed))

    def advance(self, state: SttState, codes: mx.array) -> tuple[SttStep, SttState]:
        """One step; outputs and state are lazy (evaluate them together).

        Args:
            codes: [B, >= n_q] int, the audio's Mimi codes of this step (-1: no input for that codebook).
        """
        codes = codes.astype(mx.int32)
        if codes.ndim != 2 or codes.shape[1] < self.cfg.n_q:
            raise ConfigError(f"audio codes must have shape [batch, {self.cfg.n_q}], got {tuple(codes.shape)}")
        b = codes.shape[0]
        if state.step == 0:
            inputs = mx.broadcast_to(self._initial[None], (b, self._initial.shape[0]))
        else:
            inputs = mx.concatenate([state.text[:, None], codes[:, : self.cfg.n_q]], axis=1)
        key, sub = mx.random.split(state.key)
        context, text_logits, lm_state = self.lm.step_text(inputs[:, :, None], state.lm)
        text_logits = text_logits[:, 0]
        token = sample(text_logits, self.text_temp, self.text_top_k, sub)
        heads = None
        if self.lm.extra_heads:
            out = context[:, 0]
            heads = mx.softmax(mx.stack([h(out) for h in self.lm.extra_heads], axis=1).astype(mx.float32), axis=-1)
        return SttStep(token, text_logits, heads), SttState(lm_state, token, state.step + 1, key)

    @staticmethod
    def state_arrays(state: SttState) -> list[mx.array]:
        return [state.text, state.key, *state.lm.arrays()]
