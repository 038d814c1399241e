"""MLX affine quantization of the LM: what a file holds (read from shapes) and applying it to a model.

Kyutai's quantized releases run `nn.quantize` over the whole model: every Linear and Embedding is stored
as packed uint32 `weight` + `scales` + `biases`, norms stay float. The bits and group size are not
written anywhere but follow from the shapes (`formats.quant_bits_group`).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.nn as nn

from ..errors import CheckpointError, Setting
from .formats import quant_bits_group, quantized_columns
from .safetensors_io import TensorInfo
from .tree import flatten

MLX_BITS = (2, 3, 4, 5, 6, 8)  # what MLX affine quantization takes
MLX_GROUPS = (32, 64, 128)


@dataclass(frozen=True)
class QuantSpec:
    """Affine quantization of one module (or a whole model when uniform)."""

    bits: int
    group_size: int

    def __str__(self) -> str:
        return f"{self.bits}-bit, group {self.group_size}"


def quantizable_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Leaf modules that can be quantized (those with `to_quantized`), by parameter path. Read their
    weight as `m["weight"]`: MLX types `m.weight` on a plain nn.Module as possibly None."""
    return {
        path: m for path, m in flatten(model.leaf_modules(), is_leaf=nn.Module.is_module) if hasattr(m, "to_quantized")
    }


def should_quantize(module: nn.Module, spec: QuantSpec) -> bool:
    """The default predicate for quantizing a float model: as mlx-lm, skip what the group cannot tile."""
    return hasattr(module, "to_quantized") and module["weight"].shape[-1] % spec.group_size == 0


def specs_from_header(model: nn.Module, header: dict[str, TensorInfo], source: str) -> dict[str, QuantSpec]:
    """Per-module QuantSpec for every module the file stores quantized (empty for a float file)."""
    specs: dict[str, QuantSpec] = {}
    for path, module in quantizable_modules(model).items():
        scales = header.get(f"{path}.scales")
        weight = header.get(f"{path}.weight")
        if scales is None or weight is None:
            continue
        in_dim = module["weight"].shape[-1]
        packed, groups = weight.shape[-1], scales.shape[-1]
        bits, group = quant_bits_group(weight, scales, in_dim)
        if (
            weight.dtype != "U32"
            or bits not in MLX_BITS
            or group not in MLX_GROUPS
            or in_dim % group
            or quantized_columns(in_dim, bits, group) != (packed, groups)
        ):
            raise CheckpointError(
                f"{source}: {path} is stored quantized with shapes weight {weight.shape} {weight.dtype}, "
                f"scales {scales.shape} that fit no MLX quantization of a {in_dim}-wide input. The file and "
                "the config do not belong together, or the file is damaged.",
                hint=Setting.CONFIG,
            )
        specs[path] = QuantSpec(bits, group)
    return specs


def uniform_spec(specs: dict[str, QuantSpec]) -> QuantSpec | None:
    """The single spec all modules share, None if mixed or not quantized."""
    found = set(specs.values())
    return found.pop() if len(found) == 1 else None


def apply(model: nn.Module, specs: dict[str, QuantSpec]) -> None:
    """Swap each listed module for its quantized form (ScaledEmbedding keeps its -1 = zero rule)."""
    if not specs:
        return
    nn.quantize(
        model,
        class_predicate=lambda path, m: (
            {"bits": specs[path].bits, "group_size": specs[path].group_size} if path in specs else False
        ),
    )
