"""SEANet encoder and decoder (causal, ELU, residual blocks), channels-last.

Each `model` list mirrors the reference's nn.Sequential index for index (parameterless ELU entries
included), so checkpoint names map one to one. A streaming state is a tuple with one entry per list
item: a ConvState / ConvTrState, a block's tuple, or () for an ELU.
"""

from __future__ import annotations

import math

import mlx.core as mx
import mlx.nn as nn

from ..config import SeanetConfig
from .conv import ConvState, ConvTrState, StreamingConv1d, StreamingConvTranspose1d

LayerState = ConvState | ConvTrState | tuple
SeanetState = tuple  # one LayerState per entry of `model`


# expm1 for x <= 0 from cheap arithmetic, fused by mx.compile into one pass. MLX's CPU exp/expm1 are
# scalar (~11 ns per element here) and ELU runs on ~1.1 M values per streamed frame; this is ~5x faster
# and within 1 ulp of the correctly rounded expm1 (as MLX's own expm1).
# Range reduction x = n ln2 + r, |r| <= ln2 / 2; expm1(x) = 2^n expm1(r) + (2^n - 1).
_LN2_HI = 0.693145751953125  # ln 2 in two parts: n * _LN2_HI is exact for |n| < 2^11
_LN2_LO = 1.428606765330187e-06
_INV_LN2 = 1.4426950408889634
_EXPM1_TAYLOR = tuple(1.0 / math.factorial(i) for i in range(9, 1, -1))  # 1/9! .. 1/2!: error < 1e-9


def _expm1_nonpositive(x: mx.array) -> mx.array:
    x = mx.maximum(x, -87.0)  # expm1(-87) rounds to -1; keeps 2^n a normal float
    n = mx.floor(x * _INV_LN2 + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = _EXPM1_TAYLOR[0]
    for c in _EXPM1_TAYLOR[1:]:
        p = p * r + c
    em1 = r + (r * r) * p  # expm1(r)
    two_n = mx.view(mx.left_shift(n.astype(mx.int32) + 127, 23), mx.float32)
    return two_n * em1 + (two_n - 1.0)


@mx.compile
def _elu_f32(x: mx.array) -> mx.array:
    return mx.maximum(x, 0.0) + _expm1_nonpositive(mx.minimum(x, 0.0))


def elu(x: mx.array) -> mx.array:
    """ELU with alpha 1 (x for x > 0, expm1(x) otherwise), computed in float32."""
    if x.dtype == mx.float32:
        return _elu_f32(x)
    return _elu_f32(x.astype(mx.float32)).astype(x.dtype)


class ELU(nn.Module):
    """ELU with alpha 1, as torch.nn.ELU() (see `elu`)."""

    def __call__(self, x: mx.array) -> mx.array:
        return elu(x)


def _init_states(layers: list, batch: int) -> tuple:
    return tuple(() if isinstance(layer, ELU) else layer.init_state(batch) for layer in layers)


def _run(layers: list, x: mx.array, states: tuple) -> tuple[mx.array, tuple]:
    new = []
    for layer, state in zip(layers, states):
        if isinstance(layer, ELU):
            x = layer(x)
            new.append(())
        else:
            x, state = layer.step(x, state)
            new.append(state)
    return x, tuple(new)


class SeanetResnetBlock(nn.Module):
    """x + conv1x1(elu(conv_k(elu(x)))), the hidden width dim / compress."""

    def __init__(self, dim: int, kernel_size: int, dilation: int, compress: int, pad_mode: str):
        super().__init__()
        hidden = dim // compress
        self.block = [
            ELU(),
            StreamingConv1d(dim, hidden, kernel_size, dilation=dilation, pad_mode=pad_mode),
            ELU(),
            StreamingConv1d(hidden, dim, 1, pad_mode=pad_mode),
        ]

    def init_state(self, batch: int = 1) -> tuple:
        return _init_states(self.block, batch)

    def step(self, x: mx.array, state: tuple) -> tuple[mx.array, tuple]:
        y, state = _run(self.block, x, state)
        return x + y, state


class _Seanet(nn.Module):
    model: list

    def init_state(self, batch: int = 1) -> SeanetState:
        return _init_states(self.model, batch)

    def step(self, x: mx.array, state: SeanetState) -> tuple[mx.array, SeanetState]:
        return _run(self.model, x, state)

    def __call__(self, x: mx.array) -> mx.array:
        return self.step(x, self.init_state(x.shape[0]))[0]


class SeanetEncoder(_Seanet):
    """Audio [B, T, channels] (T a multiple of hop_length) -> latent [B, T / hop_length, dimension]."""

    def __init__(self, cfg: SeanetConfig):
        super().__init__()
        nf, pad = cfg.n_filters, cfg.pad_mode
        model: list = [StreamingConv1d(cfg.channels, nf, cfg.kernel_size, pad_mode=pad)]
        mult = 1
        for ratio in reversed(cfg.ratios):
            for j in range(cfg.n_residual_layers):
                model.append(
                    SeanetResnetBlock(mult * nf, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress, pad)
                )
            model += [ELU(), StreamingConv1d(mult * nf, 2 * mult * nf, 2 * ratio, ratio, pad_mode=pad)]
            mult *= 2
        model += [ELU(), StreamingConv1d(mult * nf, cfg.dimension, cfg.last_kernel_size, pad_mode=pad)]
        self.model = model


class SeanetDecoder(_Seanet):
    """Latent [B, T, dimension] -> audio [B, T * hop_length, channels]."""

    def __init__(self, cfg: SeanetConfig):
        super().__init__()
        nf, pad = cfg.n_filters, cfg.pad_mode
        mult = 2 ** len(cfg.ratios)
        model: list = [StreamingConv1d(cfg.dimension, mult * nf, cfg.kernel_size, pad_mode=pad)]
        for ratio in cfg.ratios:
            model += [ELU(), StreamingConvTranspose1d(mult * nf, mult * nf // 2, 2 * ratio, ratio)]
            for j in range(cfg.n_residual_layers):
                model.append(
                    SeanetResnetBlock(mult * nf // 2, cfg.residual_kernel_size, cfg.dilation_base**j, cfg.compress, pad)
                )
            mult //= 2
        model += [ELU(), StreamingConv1d(nf, cfg.channels, cfg.last_kernel_size, pad_mode=pad)]
        self.model = model
