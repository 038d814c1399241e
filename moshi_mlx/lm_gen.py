"""LmGen: Moshi's streaming generation, with the timing of the reference's PyTorch `LMGen`.

Each step takes the user's frame of the same step, runs the temporal transformer once, samples the
text token, then the depformer samples Moshi's dep_q codebooks one after the other. Streams lag behind
the text by their delay; a small ring of the last max_delay + 2 token frames re-aligns them:

* the user frame given at step t is read as input at step t + delay (0 for the semantic codebook);
* what is sampled at step t is written at slot t + 1 and read as the input of step t + 1;
* a stream reads its initial token (text_card / card) while t <= its delay;
* step t returns the text token of step t - max_delay and the audio codebooks delayed to match it (with
  delays [0, 1, ...]: semantic code from t - 1, acoustic codes from t); nothing while t < max_delay.

A step reads values on the host once; its graph is evaluated in one go (on CPU with quantized weights,
the temporal pass is evaluated first to bound memory, see `advance`).
"""

from __future__ import annotations

import secrets
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from .errors import ConfigError
from .lm import Lm, LmState
from .sampling import sample

UNGENERATED = -2  # a slot nothing was written to yet (never read: the initial token replaces it)


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
    ):
        self.lm = lm
        self.cfg = lm.cfg
        self.temp, self.text_temp, self.top_k, self.text_top_k = temp, text_temp, top_k, text_top_k
        self.seed = seed
        self.batch = batch
        cfg = self.cfg
        self._delays = cfg.delays
        self._ring = cfg.max_delay + 2
        self._initial = mx.array([cfg.text_initial_token_id] + [cfg.initial_token_id] * cfg.n_q, mx.int32)
        self.reset()

    @property
    def _wait_temporal(self) -> bool:  # asked at each step: the model may be cast after this LmGen was made
        return self.lm.is_quantized and self.lm.compute_dtype == mx.float32

    # ---- explicit state ----

    def init_state(self, batch: int | None = None, seed: int | None = None) -> LmGenState:
        batch = self.batch if batch is None else batch
        seed = (self.seed if self.seed is not None else secrets.randbits(63)) if seed is None else seed
        tokens = mx.full((batch, self.cfg.num_codebooks, self._ring), UNGENERATED, mx.int32)
        return LmGenState(self.lm.init_state(batch), tokens, 0, mx.random.key(seed))

    def write_step_inputs(self, state: LmGenState, user_codes: mx.array) -> mx.array:
        """Write the user's codes of this step into the token ring (their streams enter it already
        delayed) and return the temporal transformer's input tokens [B, 1 + n_q] for step `state.step`."""
        cfg, t, ring = self.cfg, state.step, self._ring
        user_codes = mx.array(user_codes).astype(mx.int32)
        n_user = cfg.user_codebooks
        if user_codes.ndim != 2 or user_codes.shape[1] < n_user:
            raise ConfigError(f"user codes must have shape [batch, {n_user}], got {tuple(user_codes.shape)}")
        for i in range(n_user):
            row = cfg.dep_q + 1 + i
            state.tokens[:, row, (t + self._delays[row]) % ring] = user_codes[:, i]
        is_init = mx.array([t <= d for d in self._delays])[None, :]
        return mx.where(is_init, self._initial[None, :], state.tokens[:, :, t % ring])

    def advance(self, state: LmGenState, user_codes: mx.array) -> tuple[StepOutput, mx.array | None, LmGenState]:
        """One step. Outputs and state are lazy (at most the temporal pass is evaluated, without reading
        values; see `_wait_temporal`): evaluate them together, as `step` does.

        Args:
            user_codes: [B, user_codebooks] int, the user's Mimi codes of this step (-1: no input).

        Returns:
            (this step's samples and logits, the output frame [B, 1 + dep_q] or None while the delays
            fill, the next state).
        """
        cfg, t, ring = self.cfg, state.step, self._ring
        tokens = state.tokens
        inputs = self.write_step_inputs(state, user_codes)

        keys = mx.random.split(state.key, 2 + cfg.dep_q)
        context, text_logits = self.lm.forward_text(inputs[:, :, None], state.lm)
        if self._wait_temporal:
            # Quantized weights under float32 activations: each matmul makes float32 copies of its bf16
            # scales. Dispatched together, the text head's and depformer's copies would be allocated while
            # the temporal pass still runs (+20 MB; 7B q4 then peaks just above 6 GiB). No values are read.
            mx.eval(context)
        else:
            mx.async_eval(context)  # start the temporal pass; the depformer graph is built while it runs
        text_logits = text_logits[:, 0]
        text_token = sample(text_logits, self.text_temp, self.text_top_k, keys[1])
        dep_state = self.lm.depformer.init_state(inputs.shape[0], self.lm.compute_dtype)
        prev, codes, logits = text_token, [], []
        for k in range(cfg.dep_q):
            lk = self.lm.depformer.step(k, context, prev, dep_state)
            prev = sample(lk, self.temp, self.top_k, keys[2 + k])
            codes.append(prev)
            logits.append(lk)
        audio = mx.stack(codes, axis=1)

        t += 1
        tokens[:, : cfg.dep_q + 1, t % ring] = mx.concatenate([text_token[:, None], audio], axis=1)
        out = None
        if t > cfg.max_delay:
            slots = [(t - cfg.max_delay + d) % ring for d in self._delays[: cfg.dep_q + 1]]
            out = mx.stack([tokens[:, k, s] for k, s in enumerate(slots)], axis=1)
        step = StepOutput(text_token, audio, text_logits, mx.stack(logits, axis=1))
        return step, out, LmGenState(state.lm, tokens, t, keys[0])

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
