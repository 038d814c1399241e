"""What each output file holds: float, uniform affine quantization (Kyutai's recipe), or mixed precision.

Kyutai's q8/q4 releases quantize every Linear and Embedding alike (8 bits group 64, 4 bits group 32).
The mixed 4-bit recipe keeps the tensors where 4-bit error costs most at higher precision while the
bulk of the weights, the temporal transformer, goes to 4 bits:

* embeddings (text, audio, depformer inputs) stay float: they are gathered, never multiplied, so
  their precision costs memory only, and each audio embedding row is a whole input vector;
* output heads (`text_linear`, the depformer `linear_out`s) go to 8 bits: they set the logits directly;
* the depformer's own transformer goes to 8 bits: it runs 8 times per frame, so its errors compound
  across a frame's codebooks.

Measured on the test fixture (see the report in quantize/README section and tests/test_quantize.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.nn as nn

from moshi_mlx.errors import ConfigError
from moshi_mlx.weights.quant import QuantSpec, quantizable_modules
from moshi_mlx.weights.quant_config import QuantRecipe

BITS = (4, 8)
GROUPS = (32, 64, 128)
DEFAULT_GROUP = {4: 32, 8: 64}  # Kyutai's releases
FILE_NAMES = {None: "model.safetensors", 8: "model.q8.safetensors", 4: "model.q4.safetensors"}


@dataclass(frozen=True)
class Output:
    """One weight file to write."""

    file_name: str
    recipe: QuantRecipe | None   # None: float (in the conversion dtype)
    label: str                   # how the report names it

    @property
    def bits(self) -> int | None:
        return None if self.recipe is None else self.recipe.default.bits


def _is_embedding(path: str) -> bool:
    return path == "text_emb" or path.startswith("audio_embs.") or path.endswith(".emb")


def _is_head(path: str) -> bool:
    return path == "text_linear" or path.endswith(".linear_out") and path.startswith("depformer.slices.")


def _in_depformer(path: str) -> bool:
    return path.startswith("depformer.")


def mixed_overrides(model: nn.Module, sensitive_group: int = 64) -> dict[str, QuantSpec | None]:
    """Per-module overrides of the mixed 4-bit recipe (see the module docstring)."""
    eight = QuantSpec(8, sensitive_group)
    out: dict[str, QuantSpec | None] = {}
    for path, module in quantizable_modules(model).items():
        if _is_embedding(path):
            out[path] = None
        elif _is_head(path) or _in_depformer(path):
            out[path] = eight if module.weight.shape[-1] % sensitive_group == 0 else None
    return out


def plan_outputs(model: nn.Module, bits: int | None, group_size: int | None, mixed: bool) -> list[Output]:
    """The files a conversion writes: with `bits`, only that precision; otherwise bf16, q8 and q4.

    Raises:
        ConfigError: unsupported bits or group size, or --mixed without a 4-bit output.
    """
    if bits is not None and bits not in BITS:
        raise ConfigError(f"unsupported bit width {bits}: use 4 or 8 (Kyutai's q4 and q8), or leave it out for all")
    if group_size is not None and group_size not in GROUPS:
        raise ConfigError(f"unsupported group size {group_size}: MLX affine quantization takes {GROUPS}")
    if mixed and bits == 8:
        raise ConfigError("--mixed applies to the 4-bit file: use it with --q-bits 4 or without --q-bits")
    outputs = [] if bits is not None else [Output(FILE_NAMES[None], None, "float")]
    for b in (8, 4) if bits is None else (bits,):
        spec = QuantSpec(b, group_size or DEFAULT_GROUP[b])
        overrides = mixed_overrides(model) if mixed and b == 4 else {}
        label = f"q{b} mixed" if overrides else f"q{b}"
        for path, module in quantizable_modules(model).items():  # recorded, not left to a width rule
            if path not in overrides and module.weight.shape[-1] % spec.group_size:
                overrides[path] = None
        outputs.append(Output(FILE_NAMES[b], QuantRecipe(spec, overrides), label))
    return outputs
