"""load_mimi: Kyutai's PyTorch Mimi checkpoint -> a ready Mimi (strictly loaded, centroids derived)."""

from __future__ import annotations

import os
from typing import cast

import mlx.core as mx
import mlx.nn as nn

from ..config import MimiConfig, read_json_object
from ..cpu.swap import use_cpu_variants
from ..dtypes import FLOATS
from ..mimi import Mimi
from ..release import MIMI_FILE
from ..weights.mimi_torch import map_mimi_torch
from ..weights.safetensors_io import load_tensors
from ..weights.strict import load_strict


def mimi_config(config: MimiConfig | dict | str | os.PathLike | None, num_codebooks: int = 8) -> MimiConfig:
    """The Mimi configuration `load_mimi` builds from `config` (None: the released Mimi)."""
    if config is None:
        return MimiConfig.preset("mimi_202407", num_codebooks)
    if isinstance(config, MimiConfig):
        return config.with_num_codebooks(num_codebooks)
    if isinstance(config, dict):
        return MimiConfig.from_kyutai(config, num_codebooks)
    return MimiConfig.from_kyutai(read_json_object(config), num_codebooks)


def load_mimi(
    path: str | os.PathLike,
    dtype: mx.Dtype | None = None,
    num_codebooks: int = 8,
    config: MimiConfig | dict | str | os.PathLike | None = None,
) -> Mimi:
    """Load Kyutai's PyTorch Mimi weights (the `tokenizer-e351c8d8-checkpoint125.safetensors` layout).

    Args:
        path: local safetensors file.
        dtype: compute dtype of the weights (float32 if None; float16/bfloat16 trade accuracy for speed).
        num_codebooks: codebooks that `encode` produces (Moshi uses 8; the released file holds 32).
        config: a MimiConfig, Kyutai's mimi config dict or a path to its JSON; the released
            `mimi_202407` config if None.

    Raises:
        CheckpointError: unreadable file, or tensors missing / unexpected / mis-shaped for the config.
        ConfigError: a malformed or unsupported config.
        ValueError: an unsupported dtype.
    """
    if dtype is not None and dtype not in FLOATS.values():
        raise ValueError(f"dtype must be one of {tuple(FLOATS.values())} (or None for float32), got {dtype}")
    cfg = mimi_config(config, num_codebooks)
    model = Mimi(cfg)
    weights = map_mimi_torch(load_tensors(path))
    weights = {k: v.astype(mx.float32) if mx.issubdtype(v.dtype, mx.floating) else v for k, v in weights.items()}
    load_strict(
        model,
        weights,
        source=str(path),
        advice=(
            f"Expected Kyutai's PyTorch Mimi checkpoint ({MIMI_FILE}) matching "
            f"the Mimi config ({cfg.quantizer.n_q} codebooks, SEANet dimension {cfg.seanet.dimension}, "
            f"{cfg.transformer.num_layers} transformer layers); another Mimi needs its config: a model folder names "
            "it as mimi_config_name in its config.json (load_mimi takes config=)."
        ),
        setting=None,
    )
    if dtype is not None and dtype != mx.float32:
        # Codebooks stay float32: centroids are sums divided by usages, and codes are argmins over them.
        for name, child in model.children().items():
            if name != "quantizer":
                cast(nn.Module, child).set_dtype(dtype)  # Mimi's children are modules, not lists
        for rvq in (model.quantizer.rvq_first, model.quantizer.rvq_rest):
            rvq.input_proj.set_dtype(dtype)
            rvq.output_proj.set_dtype(dtype)
    model.post_load()
    use_cpu_variants(model)  # evaluates what inference uses (not the lazy views of blocked weights)
    return model
