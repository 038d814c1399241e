"""Kyutai's MLX Moshi LM layout (kyutai/moshiko-mlx-{bf16,q8,q4}) -> our names: they are the same.

Our parameter names are Kyutai's MLX release names, so nothing is renamed; quantized files are loaded
into a model already quantized to the spec their shapes imply (see `weights.quant`). This function only
rejects what cannot be Moshi weights before the strict check lists the differences.
"""

from __future__ import annotations

import mlx.core as mx

from ..config import LmConfig
from ..errors import CheckpointError, Setting


def map_lm_mlx(tensors: dict[str, mx.array], cfg: LmConfig, source: str = "checkpoint") -> dict[str, mx.array]:
    norm = tensors.get("out_norm.weight")
    if norm is not None and norm.shape != (cfg.dim,):
        raise CheckpointError(
            f"{source}: out_norm.weight has shape {tuple(norm.shape)} but the config has dim {cfg.dim}: "
            "pass the config that belongs to these weights.",
            hint=Setting.CONFIG,
        )
    return dict(tensors)
