"""The one place where models meet the CPU-only speed-ups: `use_cpu_variants`, which the loaders call
once a model is loaded. Model code has no CPU special cases; on Metal this does nothing."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..mimi import Mimi
from ..modules.conv import StreamingConv1d, StreamingConvTranspose1d
from ..modules.seanet import SeanetResnetBlock
from . import lanes
from .blocked import blocked_variant
from .contiguous import ContiguousLinear


def use_cpu_variants(model: nn.Module) -> None:
    """On the CPU backend, swap `model`'s modules for their CPU variants, in place; elsewhere nothing.

    Mimi: weights laid out for the few rows each streamed frame multiplies (blocked.py). Any other
    model (the LM): its matmuls spread over one stream per core (lanes.py). Both: the float Linears that go
    to BLAS multiply by their weight's contiguous transpose (contiguous.py).
    """
    if mx.default_device() != mx.cpu:
        return
    if isinstance(model, Mimi):
        _install(model, {path: blocked_variant(module, rows) for path, module, rows in _streaming_rows(model)})
    else:
        lanes.lane_count()  # a malformed MOSHI_MLX_CPU_LANES is reported now, not at the first step
        _install(model, {path: lanes.spread_variant(module) for path, module in model.named_modules() if path})
    for path in _contiguous_candidates(model):  # one at a time, so that memory never holds two copies
        linear = _get(model, path)
        assert isinstance(linear, nn.Linear)
        _set(model, path, ContiguousLinear.like(linear))
        del linear
    mx.eval(model.parameters())


def _install(model: nn.Module, variants: dict[str, nn.Module]) -> None:
    """Put each variant at its path. Nothing else holds them once this returns, so the contiguous copies made
    next replace weights that are then freed, one by one."""
    for path, new in variants.items():
        if new is not _get(model, path):
            _set(model, path, new)


def _contiguous_candidates(model: nn.Module) -> list[str]:
    """The float Linears whose matmul goes to BLAS: those of Mimi's transformers and quantizer that blocking
    left alone, and the float32 Linears of any other model (the LM cast to float32: lanes spread only
    bfloat16 and quantized matmuls)."""
    if isinstance(model, Mimi):
        parts = ("encoder_transformer", "decoder_transformer", "quantizer")
        return [
            f"{name}.{path}"
            for name in parts
            for path, m in getattr(model, name).named_modules()
            if type(m) is nn.Linear
        ]
    return [
        path
        for path, m in model.named_modules()
        if type(m) in (nn.Linear, lanes.SpreadLinear) and m.weight.dtype == mx.float32
    ]


def _streaming_rows(mimi: Mimi) -> list[tuple[str, nn.Module, int]]:
    """(path, module, rows) for each matmul module of Mimi: the rows it multiplies per streamed frame."""
    found: list[tuple[str, nn.Module, int]] = []

    def seanet(prefix: str, layers: list, rows: int) -> int:
        for i, layer in enumerate(layers):
            path = f"{prefix}.{i}"
            if isinstance(layer, StreamingConv1d):
                rows //= layer.stride
                found.append((path, layer, rows))
            elif isinstance(layer, StreamingConvTranspose1d):
                found.append((path, layer, rows))
                rows *= layer.stride
            elif isinstance(layer, SeanetResnetBlock):
                seanet(f"{path}.block", layer.block, rows)
        return rows

    steps = mimi.config.resample_stride  # transformer steps per frame
    seanet("encoder.model", mimi.encoder.model, mimi.frame_size)
    seanet("decoder.model", mimi.decoder.model, steps)
    for name in ("encoder_transformer", "decoder_transformer"):
        for path, module in getattr(mimi, name).named_modules():
            if type(module) is nn.Linear:
                found.append((f"{name}.{path}", module, steps))
    found.append(("downsample.conv", mimi.downsample.conv, 1))
    return found


def _get(model: nn.Module, path: str):
    node = model
    for key in path.split(".") if path else ():
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node


def _set(model: nn.Module, path: str, new: nn.Module) -> None:
    parent_path, _, last = path.rpartition(".")
    parent = _get(model, parent_path)
    if isinstance(parent, list):
        parent[int(last)] = new
    else:
        setattr(parent, last, new)
