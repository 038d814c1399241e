"""LmGen: Moshi's streaming generation, with the timing of the reference's PyTorch `LMGen`.

Each step takes the user's frame of the same step, runs the temporal transformer once, samples the
text token, then the depformer samples Moshi's dep_q codebooks one after the other. Streams lag behind
the text by their delay; a small ring of the last max_delay + 2 token frames re-aligns them:

* the user frame given at step t is read as input at step t + delay (0 for the semantic codebook);
* what is sampled at step t is written at slot t + 1 and read as the input of step t + 1;
* a stream reads its initial token (text_card / card) while t <= its delay;
* step t returns the text token of step t - max_delay and the audio codebooks delayed to match it (with
  delays [0, 1, ...]: semantic code from t - 1, acoustic codes from t); nothing while t < max_delay.

A step is a value function: `advance(state, codes)` returns the next state and leaves `state` unchanged,
so a kept state replays the same step. Its two halves (temporal pass with the text sampling; depformer with
the audio sampling and the ring update) are compiled with `mx.compile` once per model setting: fixed
shapes, the step counter, ring slots and cache offset as int32 arrays, the RoPE table made on the host and
passed in, caches passed in and returned. `MOSHI_MLX_COMPILE=0` (or `compile=False`) runs the same
functions op by op, for debugging and for the benchmark's comparison. A step reads values on the host
once; its graph is evaluated in one go.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from .compiled import WindowedSteps, compile_by_default, lm_setting, window_offsets
from .errors import ConfigError
from .lm import Lm, LmState
from .modules.transformer import RotaryTable
from .sampling import draw, noise_width, step_noise

UNGENERATED = -2  # a slot nothing was written to yet (never read: the initial token replaces it)
# Attention windows grow by this many slots until the ring wraps: the 7B's 3000-slot ring takes 12 widths
# (a trace each, the first time) and a step in its first 20 s reads 256 slots of cache, not 3000.
WINDOW_BUCKET = 256


class LmGenState(NamedTuple):
    lm: LmState
    tokens: mx.array  # [B, 1 + n_q, max_delay + 2] int32 ring of token frames
    step: int  # steps taken (host counter: known without a sync)
    key: mx.array  # PRNG key for the next step


class StepOutput(NamedTuple):
    text_token: mx.array  # [B] int32
    audio_codes: mx.array  # [B, dep_q] int32
    text_logits: mx.array  # [B, text_card] of the step's text sampling
    audio_logits: mx.array  # [B, dep_q, card] of the step's depformer


class LmGen:
    """Streaming generation over an `Lm`; `step()` is the friendly facade over `advance(state, codes)`.

    Args:
        lm: the loaded model.
        temp, top_k: audio sampling temperature and top-k (0 temperature: greedy).
        text_temp, text_top_k: the same for text.
        seed: makes sampling repeatable; None draws a fresh seed.
        batch: conversations generated in parallel.
        compile: compile the step (None: `compile_by_default()`).
        window_bucket: until the temporal ring cache wraps, attend only over its written slots, rounded up
            to a multiple of this many (each width is one more trace of the compiled step); None: always
            over the whole ring, as the reference. Both give the same values (tests/test_lm.py).
    """

    def __init__(
        self,
        lm: Lm,
        temp: float = 0.8,
        text_temp: float = 0.7,
        top_k: int = 250,
        text_top_k: int = 25,
        seed: int | None = None,
        batch: int = 1,
        compile: bool | None = None,
        window_bucket: int | None = WINDOW_BUCKET,
    ):
        self.lm = lm
        self.cfg = lm.cfg
        self.temp, self.text_temp, self.top_k, self.text_top_k = temp, text_temp, top_k, text_top_k
        self.seed = seed
        self.batch = batch
        cfg = self.cfg
        self._ring = cfg.max_delay + 2
        self._initial = mx.array([cfg.text_initial_token_id] + [cfg.initial_token_id] * cfg.n_q, mx.int32)
        self._delays_arr = mx.array(cfg.delays, mx.int32)
        self._layers = cfg.transformer.num_layers
        self.compiled = compile_by_default() if compile is None else compile
        self.window_bucket = window_bucket
        self._temporal = WindowedSteps(self._temporal_half)
        self._depformer: Callable | None = None
        self._depformer_setting: tuple | None = None
        self.reset()

    # ---- explicit state ----

    def init_state(self, batch: int | None = None, seed: int | None = None) -> LmGenState:
        batch = self.batch if batch is None else batch
        seed = (self.seed if self.seed is not None else secrets.randbits(63)) if seed is None else seed
        tokens = mx.full((batch, self.cfg.num_codebooks, self._ring), UNGENERATED, mx.int32)
        return LmGenState(self.lm.init_state(batch), tokens, 0, mx.random.key(seed))

    def check_user_codes(self, user_codes) -> mx.array:
        """The user's codes of a step as int32 [B, user_codebooks] (extra codebooks dropped)."""
        n_user = self.cfg.user_codebooks
        codes = mx.array(user_codes).astype(mx.int32)
        if codes.ndim != 2 or codes.shape[1] < n_user:
            raise ConfigError(f"user codes must have shape [batch, {n_user}], got {tuple(codes.shape)}")
        return codes[:, :n_user]

    def advance(self, state: LmGenState, user_codes) -> tuple[StepOutput, mx.array | None, LmGenState]:
        """One step; `state` is left unchanged. Outputs and the next state are lazy: evaluate them together,
        in one evaluation, as `step` does. Drop `state` before that evaluation (as `step` does) and the
        caches are written in place; a state kept past it is copied once (what replaying it costs).

        Args:
            user_codes: [B, user_codebooks] int, the user's Mimi codes of this step (-1: no input).

        Returns:
            (this step's samples and logits, the output frame [B, 1 + dep_q] or None while the delays
            fill, the next state).
        """
        t, offset = state.step, state.lm.offset
        assert isinstance(offset, int)  # a traced offset lives only inside the compiled halves
        temporal, depformer = self._step_halves(self.window(state))
        rope = self.lm.transformer.rope(offset, 1)
        t_arr = mx.array(t, mx.int32)
        context, text_logits, text_token, tokens, key, *rest = temporal(
            state.tokens,
            state.key,
            self.check_user_codes(user_codes),
            t_arr,
            mx.array(offset, mx.int32),
            [] if rope is None else [rope.cos, rope.sin],
            state.lm.arrays(),
        )
        noise, caches = rest[: self.cfg.dep_q], rest[self.cfg.dep_q :]
        # No evaluation here: one per step, after the caller has let go of `state`. An evaluation while
        # `state` is still held cannot reuse its cache buffers: it copies the whole cache (7B: +1.46 GiB).
        audio, audio_logits, tokens, frame = depformer(context, text_token, noise, tokens, t_arr)
        lm_state = LmState.from_arrays(caches, offset + 1, self._layers)
        out = frame if t + 1 > self.cfg.max_delay else None
        step = StepOutput(text_token, audio, text_logits, audio_logits)
        return step, out, LmGenState(lm_state, tokens, t + 1, key)

    def prepare(self, batch: int | None = None) -> None:
        """Trace the compiled step now for every attention window a conversation will meet, rather than
        during it (the skinny 7B's first step took 118 ms traced, 73 ms prepared; each later window ~25 ms:
        a stall the listener hears). Steps over throwaway states that are never evaluated: nothing is computed."""
        if not self.compiled:
            return
        state = self.init_state(batch, seed=0)
        user = mx.zeros((state.tokens.shape[0], self.cfg.user_codebooks), mx.int32)
        for offset in window_offsets(self.cfg.transformer.context or 1, self.window_bucket):
            lm = LmState.from_arrays(state.lm.arrays(), offset, self._layers)
            self.advance(state._replace(lm=lm, step=offset), user)

    # ---- the two halves of a step: pure functions of arrays, compiled ----

    def window(self, state: LmGenState) -> int | None:
        """The slots of the temporal ring the next step attends over (None: all of them)."""
        return state.lm.window(self.window_bucket)

    def _step_halves(self, window: int | None) -> tuple[Callable, Callable]:
        """The step's halves for an attention `window`, compiled for the model's current setting (made
        again after a cast, a new compute dtype or KV width, new sampling settings); a model whose modules
        were swapped after this LmGen's first step needs `recompile()`."""
        setting = (*lm_setting(self.lm), self.temp, self.text_temp, self.top_k, self.text_top_k)
        temporal = self._temporal.get(window, self.compiled, setting)
        if self._depformer is None or self._depformer_setting != (self.compiled, *setting):
            self._depformer = mx.compile(self._depformer_half) if self.compiled else self._depformer_half
            self._depformer_setting = (self.compiled, *setting)
        return temporal, self._depformer

    def recompile(self) -> None:
        """Trace the step again at the next call (after the model's modules or weights were replaced)."""
        self._temporal.clear()
        self._depformer = None

    def _temporal_half(self, tokens, key, user, t, offset, rope, caches, window: int | None = None):
        """Write the user's codes into the token ring (their streams enter it already delayed), run the
        temporal transformer on this step's inputs and sample the text token."""
        cfg, ring = self.cfg, self._ring
        user_rows = cfg.dep_q + 1
        slots = (t + self._delays_arr[user_rows:]) % ring  # [n_user]
        index = mx.broadcast_to(slots[None, :, None], (user.shape[0], slots.shape[0], 1))
        user_part = mx.put_along_axis(tokens[:, user_rows:], index, user[:, :, None], axis=2)
        tokens = mx.concatenate([tokens[:, :user_rows], user_part], axis=1)
        current = mx.take(tokens, t % ring, axis=2)  # [B, 1 + n_q]
        inputs = mx.where((t <= self._delays_arr)[None, :], self._initial[None, :], current)

        widths = [noise_width(self.text_temp, self.text_top_k, cfg.text_card)]
        widths += [noise_width(self.temp, self.top_k, cfg.card)] * cfg.dep_q
        key, noise = step_noise(key, user.shape[0], widths)
        table = RotaryTable(*rope) if rope else None
        lm_state = LmState.from_arrays(list(caches), offset, self._layers)
        context, text_logits, lm_state = self.lm.step_text(inputs[:, :, None], lm_state, table, window)
        text_logits = text_logits[:, 0]
        text_token = draw(text_logits, self.text_temp, self.text_top_k, noise[0])
        return [context, text_logits, text_token, tokens, key, *noise[1:], *lm_state.arrays()]

    def _depformer_half(self, context, text_token, noise, tokens, t):
        """Sample Moshi's dep_q codebooks one after the other, write this step's samples into the token
        ring and read the output frame the delays have completed."""
        cfg, ring = self.cfg, self._ring
        dep_state = self.lm.depformer.init_state(context.shape[0], self.lm.compute_dtype)
        prev, codes, logits = text_token, [], []
        for k in range(cfg.dep_q):
            lk, dep_state = self.lm.depformer.step(k, context, prev, dep_state, sampled=True)
            prev = draw(lk, self.temp, self.top_k, noise[k])
            codes.append(prev)
            logits.append(lk)
        audio = mx.stack(codes, axis=1)
        rows = cfg.dep_q + 1
        b = tokens.shape[0]
        written = mx.broadcast_to(((t + 1) % ring).reshape(1, 1, 1), (b, rows, 1))
        sampled = mx.concatenate([text_token[:, None], audio], axis=1)[:, :, None]
        head = mx.put_along_axis(tokens[:, :rows], written, sampled, axis=2)
        tokens = mx.concatenate([head, tokens[:, rows:]], axis=1)
        slots = (t + 1 - cfg.max_delay + self._delays_arr[:rows]) % ring
        frame = mx.take_along_axis(head, mx.broadcast_to(slots[None, :, None], (b, rows, 1)), axis=2)[:, :, 0]
        return audio, mx.stack(logits, axis=1), tokens, frame

    @staticmethod
    def state_arrays(state: LmGenState) -> list[mx.array]:
        return [state.tokens, state.key, *state.lm.arrays()]

    # ---- facade ----

    def reset(self) -> None:
        """Start a new conversation (same weights, fresh caches and PRNG stream)."""
        self._state = self.init_state()

    @property
    def step_index(self) -> int:
        return self._state.step

    def step(self, user_codes) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
        """Feed the user's frame of this step; get Moshi's output frame.

        Args:
            user_codes: int [B, 8] (mx.array, numpy or nested lists).

        Returns:
            (text_token int [B], audio_codes int [B, 8]) as numpy arrays; (None, None) during the first
            max_delay steps (the reference returns nothing then). One host sync.
        """
        _, out, self._state = self.advance(self._state, user_codes)
        if out is None:
            mx.eval(self.state_arrays(self._state))
            return None, None
        mx.eval(out, self.state_arrays(self._state))
        frame = np.array(out)
        return frame[:, 0], frame[:, 1:]
