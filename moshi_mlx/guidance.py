"""Conditioning and classifier-free guidance of the LM (Hibiki), as the reference's `LMGen(cfg_coef=...)`.

`GuidedLm` wraps an `Lm` and is driven by `LmGen` unchanged. Without guidance (cfg_coef 1) it only adds the
model's condition (Hibiki: "very_good") to every step's input. With guidance each conversation runs as two
rows, the same tokens under the positive and the negative condition ("very_bad"), and every distribution
that is sampled, text then each depformer codebook, becomes `null + (cond - null) * cfg_coef`; the token
sampled from it is fed to both rows. Row order as the reference: the B positive rows, then the B negative.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

import mlx.core as mx

from .config.conditioner import CONDITIONS
from .errors import ConfigError

if TYPE_CHECKING:
    from .lm import Lm, LmState
    from .modules.transformer import RotaryTable, TransformerState

DEFAULT_CFG_COEF = 1.0  # the reference's run_inference default (Hibiki's README: "a typical value is 3")
MAX_CFG_COEF = 20.0


def check_cfg_coef(cfg_coef: float) -> float:
    if not (isinstance(cfg_coef, (int, float)) and 0.0 <= cfg_coef <= MAX_CFG_COEF):
        raise ConfigError(f"cfg_coef {cfg_coef!r} is out of range: use 0 to {MAX_CFG_COEF:g} (1: no guidance)")
    return float(cfg_coef)


class GuidedLm:
    """An `Lm` as `LmGen` sees it, with its condition and classifier-free guidance; weights are shared.

    Args:
        lm: a conditioned model (`lm.cfg.conditioners`); a model without conditioners passes through (cfg_coef
            must then be 1).
        cfg_coef: guidance strength; 1 runs one row per conversation, as the reference.
    """

    def __init__(self, lm: Lm, cfg_coef: float = DEFAULT_CFG_COEF):
        self.lm = lm
        self.cfg = lm.cfg
        self.cfg_coef = check_cfg_coef(cfg_coef)
        self.guided = self.cfg_coef != 1.0
        if self.guided and not lm.cfg.conditioners:
            raise ConfigError(
                "classifier-free guidance (cfg_coef other than 1) needs a conditioned model such as Hibiki"
            )
        self.depformer = _GuidedDepformer(self)
        self._conditions: dict[int, mx.array | None] = {}

    def as_lm(self) -> Lm:
        """This wrapper where an `Lm` is expected (LmGen): it answers every call LmGen makes."""
        return cast("Lm", self)

    def __getattr__(self, name: str):  # is_quantized, compute_dtype, cache_dtype...: the model's own
        return getattr(self.lm, name)

    def rows(self, batch: int) -> int:
        return 2 * batch if self.guided else batch

    def condition(self, batch: int) -> mx.array | None:
        """[rows(batch), dim] float32: the positive condition per conversation, then the negative ones.
        Made (and evaluated) by `init_state`, outside any compiled step, which then reads it as a constant."""
        if batch not in self._conditions:
            if not self.cfg.conditioners:
                self._conditions[batch] = None
            else:
                pos, neg = CONDITIONS[self.cfg.model_type]
                halves = (pos, neg) if self.guided else (pos,)
                values = {name: [h[name] for h in halves for _ in range(batch)] for name in pos}
                c = self.lm.condition(values)
                assert c is not None
                mx.eval(c)
                self._conditions[batch] = c
        return self._conditions[batch]

    def guide(self, logits: mx.array) -> mx.array:
        """[2B, ...] logits of the positive and negative rows -> [B, ...] guided; unchanged without guidance."""
        if not self.guided:
            return logits
        cond, null = mx.split(logits, 2, axis=0)
        return null + (cond - null) * self.cfg_coef

    def double(self, x: mx.array) -> mx.array:
        return mx.concatenate([x, x], axis=0) if self.guided else x

    def init_state(self, batch: int = 1) -> LmState:
        self.condition(batch)
        return self.lm.init_state(self.rows(batch))

    def step_text(
        self, tokens: mx.array, state: LmState, rope: RotaryTable | None = None, window: int | None = None
    ) -> tuple[mx.array, mx.array, LmState]:
        """tokens [B, 1 + n_q, T] -> (context [rows(B), T, dim] for the depformer, guided text logits
        [B, T, V], the next state of both rows)."""
        batch = tokens.shape[0]
        if batch not in self._conditions:
            raise RuntimeError("GuidedLm.init_state(batch) makes the condition before the first step")
        condition = self._conditions[batch]
        context, text_logits, state = self.lm.step_text(self.double(tokens), state, rope, window, condition)
        return context, self.guide(text_logits), state


class _GuidedDepformer:
    def __init__(self, owner: GuidedLm):
        self.owner = owner

    def init_state(self, batch: int, dtype: mx.Dtype) -> TransformerState:
        """`batch`: the rows of the context (both halves under guidance), as LmGen passes it."""
        return self.owner.lm.depformer.init_state(batch, dtype)

    def step(
        self, k: int, context: mx.array, prev_token: mx.array, state: TransformerState, sampled: bool = False
    ) -> tuple[mx.array, TransformerState]:
        """(Guided logits [B, card] of codebook k, the next state); `context` has both rows, `prev_token` one
        per conversation (fed to both); `sampled` as `Depformer.step`."""
        o = self.owner
        logits, state = o.lm.depformer.step(k, context, o.double(prev_token), state, sampled)
        return o.guide(logits), state
