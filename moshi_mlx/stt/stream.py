"""Stt: streaming transcription over an `Lm` without depformer, with the timing of the reference's `LMGen`.

A step is functional like `LmGen`'s: `advance` leaves the state it is given unchanged and returns the next one
(`Lm.step_text`); let the old state go before evaluating, so that the caches are written in place.

The reference runs STT models through `LMGen` with dep_q 0. With every delay 0 (Kyutai's releases) its schedule
reduces to: step 0 feeds the initial tokens only (its audio frame is never seen: `offset <= delay` for every
stream); step t > 0 feeds the text token sampled at step t - 1 and the audio codes given at step t; each step
returns the text token it sampled. `step_with_extra_heads` adds the softmax of each extra head over the
normed temporal output of the same step.

With per-stream delays (`delays`: text first, then each codebook; d = max of them), as `LMGen._step` does: at
step t a stream of delay d_k is fed its initial token while t <= d_k; after, audio codebook k is fed the code
given at step t - d_k, the text the token sampled at step t - 1. The first d steps return nothing (`ready`
False: the token given is then the padding id), and step t >= d returns the token sampled at step
t - d + d_text; the extra heads are those of the step itself. Rings of the last codes and sampled tokens in
the state hold what is still to be fed or returned.

The step is a pure function of arrays compiled with `mx.compile` once per model setting, as `LmGen`'s
halves: the step counter and cache offset go in as int32 arrays, the RoPE table is made on the host and passed
in, caches are passed in and returned, and the attention spans only the written slots of the ring until it
wraps (`window_bucket`). `MOSHI_MLX_COMPILE=0` (or `compile=False`) runs the same function op by op.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx

from ..compiled import WindowedSteps, compile_by_default, lm_setting, window_offsets
from ..errors import ConfigError
from ..lm import Lm, LmState
from ..lm_gen import WINDOW_BUCKET
from ..modules.transformer import RotaryTable
from ..sampling import draw, noise_width, step_noise


class SttState(NamedTuple):
    lm: LmState
    text: mx.array  # [B] int32: the text token of the previous step, this step's text input
    step: int  # steps taken (host counter)
    key: mx.array  # PRNG key of the next step (used only when sampling with a temperature)
    # with stream delays only (else empty): [B, n_q, max audio delay + 1] the last codes given, and
    # [B, max delay - text delay + 1] the last tokens sampled (rings indexed by step)
    delayed: tuple[mx.array, ...] = ()


class SttStep(NamedTuple):
    text_token: mx.array  # [B] int32: the token this step returns (the padding id until `ready`)
    text_logits: mx.array  # [B, text_card] of the token sampled at this step
    extra_heads: mx.array | None  # [B, heads, extra_heads_dim] softmax of each extra head; None without heads
    ready: bool = True  # False for the first max(delays) steps, where the reference's LMGen returns nothing


class Stt:
    """Streaming speech-to-text over an `Lm` of `model_type` "stt".

    Args:
        lm: the loaded model (dep_q 0).
        text_temp, text_top_k: text sampling; temperature 0 (Kyutai's setting for these models) is greedy.
        seed: makes sampling repeatable; None draws a fresh seed.
        compile: compile the step (None: `compile_by_default()`).
        window_bucket: as `LmGen`'s (None: always attend over the whole ring, as the reference).
    """

    def __init__(
        self,
        lm: Lm,
        text_temp: float = 0.0,
        text_top_k: int = 50,
        seed: int | None = None,
        compile: bool | None = None,
        window_bucket: int | None = WINDOW_BUCKET,
    ):
        cfg = lm.cfg
        if not cfg.is_stt:
            raise ConfigError(
                f"this is not a speech-to-text model (model_type {cfg.model_type!r}, not 'stt'): "
                "transcribe with one of Kyutai's STT models (e.g. kyutai/stt-1b-en_fr)"
            )
        self.lm, self.cfg = lm, cfg
        self.text_temp, self.text_top_k, self.seed = text_temp, text_top_k, seed
        self._initial = mx.array([cfg.text_initial_token_id] + [cfg.initial_token_id] * cfg.n_q, mx.int32)
        self._delays = mx.array(cfg.delays, mx.int32)  # [1 + n_q]: text first
        self.max_delay = max(cfg.delays)
        self._rings = (max(cfg.delays[1:]) + 1, self.max_delay - cfg.delays[0] + 1) if self.max_delay else ()
        self.output_lag = self.max_delay - cfg.delays[0]  # steps between sampling a token and returning it
        self._layers = cfg.transformer.num_layers
        self.compiled = compile_by_default() if compile is None else compile
        self.window_bucket = window_bucket
        self._steps = WindowedSteps(self._step)

    @property
    def codebooks(self) -> int:
        """Audio codebooks each step takes (32 for Kyutai's releases)."""
        return self.cfg.n_q

    def init_state(self, batch: int = 1, seed: int | None = None) -> SttState:
        seed = (self.seed if self.seed is not None else secrets.randbits(63)) if seed is None else seed
        text = mx.full((batch,), self.cfg.text_initial_token_id, mx.int32)
        delayed = ()
        if self._rings:
            codes, tokens = self._rings
            pad = self.cfg.existing_text_padding_id
            delayed = (mx.zeros((batch, self.cfg.n_q, codes), mx.int32), mx.full((batch, tokens), pad, mx.int32))
        return SttState(self.lm.init_state(batch), text, 0, mx.random.key(seed), delayed)

    def prepare(self, batch: int = 1) -> None:
        """Trace the compiled step now for every attention window a stream will meet (as `LmGen.prepare`), on
        throwaway states that are never evaluated: the first frames of a live transcript pay no trace."""
        if not self.compiled:
            return
        state = self.init_state(batch, seed=0)
        codes = mx.zeros((batch, self.cfg.n_q), mx.int32)
        for offset in window_offsets(self.cfg.transformer.context or 1, self.window_bucket):
            lm = LmState.from_arrays(state.lm.arrays(), offset, self._layers)
            self.advance(state._replace(lm=lm, step=offset), codes)

    def advance(self, state: SttState, codes: mx.array) -> tuple[SttStep, SttState]:
        """One step; outputs and state are lazy (evaluate them together).

        Args:
            codes: [B, >= n_q] int, the audio's Mimi codes of this step (-1: no input for that codebook).
        """
        codes = codes.astype(mx.int32)
        if codes.ndim != 2 or codes.shape[1] < self.cfg.n_q:
            raise ConfigError(f"audio codes must have shape [batch, {self.cfg.n_q}], got {tuple(codes.shape)}")
        offset = state.lm.offset
        assert isinstance(offset, int)  # a traced offset lives only inside the compiled step
        rope = self.lm.transformer.rope(offset, 1)
        sampled, token, logits, key, *rest = self._step_fn(self.window(state))(
            state.text,
            state.key,
            codes[:, : self.cfg.n_q],
            mx.array(state.step, mx.int32),
            mx.array(offset, mx.int32),
            [] if rope is None else [rope.cos, rope.sin],
            list(state.delayed),
            state.lm.arrays(),
        )
        heads = rest.pop(0) if self.lm.extra_heads else None
        delayed, caches = tuple(rest[: len(self._rings)]), rest[len(self._rings) :]
        lm_state = LmState.from_arrays(caches, offset + 1, self._layers)
        out = SttStep(token, logits, heads, state.step >= self.max_delay)
        return out, SttState(lm_state, sampled, state.step + 1, key, delayed)

    # ---- the step: a pure function of arrays, compiled ----

    def window(self, state: SttState) -> int | None:
        """The slots of the temporal ring the next step attends over (None: all of them)."""
        return state.lm.window(self.window_bucket)

    def _step_fn(self, window: int | None) -> Callable:
        """The step for an attention `window`, compiled for the model's current setting (made again after a
        cast, a new compute dtype or KV width, new sampling settings); `recompile()` after swapping modules."""
        return self._steps.get(window, self.compiled, (*lm_setting(self.lm), self.text_temp, self.text_top_k))

    def recompile(self) -> None:
        """Trace the step again at the next call (after the model's modules or weights were replaced)."""
        self._steps.clear()

    def _step(self, text, key, codes, t, offset, rope, delayed, caches, window: int | None = None) -> list[mx.array]:
        """A stream is fed its initial token while t <= its delay, then the previous text token and the codes
        given `delay` steps ago; run the temporal transformer, sample the text token and apply the extra heads.

        Returns:
            [token sampled, token returned, text logits, next PRNG key, extra heads (only with heads),
            *delay rings (only with delays), *caches].
        """
        if delayed:  # the codes given at step t - d_k, from the ring of the last ones
            ring, sampled = delayed
            size = ring.shape[2]
            ring = mx.where(mx.arange(size) == t % size, codes[:, :, None], ring)
            at = (t - self._delays[1:] + size) % size  # [n_q]; a stream still at its initial token reads any slot
            codes = mx.take_along_axis(ring, mx.broadcast_to(at[None, :, None], (ring.shape[0], at.shape[0], 1)), 2)
            codes = codes[:, :, 0]
        fed = mx.concatenate([text[:, None], codes], axis=1)
        inputs = mx.where(t <= self._delays[None], mx.broadcast_to(self._initial[None], fed.shape), fed)
        width = noise_width(self.text_temp, self.text_top_k, self.cfg.text_card)
        key, (bits,) = step_noise(key, inputs.shape[0], [width])
        table = RotaryTable(*rope) if rope else None
        lm_state = LmState.from_arrays(list(caches), offset, self._layers)
        context, text_logits, lm_state = self.lm.step_text(inputs[:, :, None], lm_state, table, window)
        text_logits = text_logits[:, 0]
        token = draw(text_logits, self.text_temp, self.text_top_k, bits)
        returned, rings = token, []
        if delayed:  # the token sampled at step t - (max delay - text delay); the padding id until step max delay
            size = sampled.shape[1]
            sampled = mx.where(mx.arange(size)[None] == t % size, token[:, None], sampled)
            oldest = mx.take(sampled, ((t + 1) % size)[None], axis=1)[:, 0]
            returned = mx.where(t >= self.max_delay, oldest, self.cfg.existing_text_padding_id)
            rings = [ring, sampled]
        heads = []
        if self.lm.extra_heads:
            out = context[:, 0]
            stacked = mx.stack([h(out) for h in self.lm.extra_heads], axis=1).astype(mx.float32)
            heads = [mx.softmax(stacked, axis=-1)]
        return [token, returned, text_logits, key, *heads, *rings, *lm_state.arrays()]

    @staticmethod
    def state_arrays(state: SttState) -> list[mx.array]:
        return [state.text, state.key, *state.delayed, *state.lm.arrays()]
