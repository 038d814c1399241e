"""SEANet encoder and decoder (causal, ELU, residual blocks), channels-last.

Each `model` list mirrors the reference's nn.Sequential index for index (parameterless ELU entries
included), so checkpoint names map one to one. A streaming state is a tuple with one entry per list
item: a ConvState / ConvTrState, a block's tuple, or () for an ELU.
"""

from __future__ import annotations

from typing import Union

import mlx.core as mx
import mlx.nn as nn

from ..config import SeanetConfig
from .conv import ConvState, ConvTrState, StreamingConv1d, StreamingConvTranspose1d

LayerState = Union[ConvState, ConvTrState, tuple]
SeanetState = tuple  # one LayerState per entry of `model`


class ELU(nn.Module):
    """ELU with alpha 1, computed with expm1 as torch does."""

    def __call__(self, x: mx.array) -> mx.array:
        return mx.where(x > 0, x, mx.expm1(mx.minimum(x, 0.0)))


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
                model.append(SeanetResnetBlock(mult * nf, cfg.residual_kernel_size, cfg.dilation_base**j,
                                               cfg.compress, pad))
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
                model.append(SeanetResnetBlock(mult * nf // 2, cfg.residual_kernel_size, cfg.dilation_base**j,
                                               cfg.compress, pad))
            mult //= 2
        model += [ELU(), StreamingConv1d(nf, cfg.channels, cfg.last_kernel_size, pad_mode=pad)]
        self.model = model
