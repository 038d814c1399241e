"""What each output file holds: float, uniform affine quantization (Kyutai's recipe), or mixed precision.

Kyutai's q8/q4 releases quantize every Linear and Embedding alike (8 bits group 64, 4 bits group 32).
The mixed 4-bit recipe (`--mixed`) keeps the tensors where 4-bit error costs most at 8 bits (group 64)
while everything else, above all the temporal transformer, goes to 4 bits:

* embeddings (text, audio, depformer inputs): each row is a whole input vector of the model;
* output heads (`text_linear`, the depformer `linear_out`s): they set the logits directly.

Measured on the test fixture (teacher-forced, 4 code sequences, agreement with the float model; sizes
of the 7B computed from its shapes by `recipe_bytes`):

    recipe                      text top-1 / KL      audio top-1 / KL     7B size
    q4                          0.538 / 7.8e-2       0.578 / 5.3e-2       4.80 GB
    + embeddings 8-bit          0.601 / 5.2e-2       0.641 / 3.7e-2       +2.8 %
    + embeddings float          0.609 / 5.2e-2       0.641 / 3.7e-2       +9.0 %
    + emb. and heads 8-bit      0.598 / 5.0e-2       0.648 / 3.6e-2       +4.2 %   <- --mixed
    + depformer 8-bit as well   0.584 / 5.0e-2       0.665 / 3.4e-2       +10.1 %  (float emb.)
    q8                          0.947 / 7.7e-4       0.939 / 5.6e-4       +70 %

Float embeddings buy nothing over 8-bit ones; the depformer at 8 bits improves the audio KL by 6 % for
another 5.9 % of size (and a slower depformer), so it stays at 4 bits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlx.nn as nn

from moshi_mlx.errors import ConfigError
from moshi_mlx.release import GROUP_SIZE, MOSHI_FILES
from moshi_mlx.weights.formats import quantized_bytes
from moshi_mlx.weights.quant import MLX_GROUPS, QuantSpec, quantizable_modules
from moshi_mlx.weights.quant_config import QuantRecipe

BITS = tuple(GROUP_SIZE)  # Kyutai's q4 and q8


@dataclass(frozen=True)
class Output:
    """One weight file to write."""

    file_name: str
    recipe: QuantRecipe | None  # None: float (in the conversion dtype)
    label: str  # how the report names it

    @property
    def bits(self) -> int | None:
        return None if self.recipe is None else self.recipe.default.bits


_EMBEDDING = re.compile(r"text_emb|audio_embs\.\d+|depformer\.slices\.\d+\.emb")
_HEAD = re.compile(r"text_linear|depformer\.slices\.\d+\.linear_out")


def _is_embedding(path: str) -> bool:
    return bool(_EMBEDDING.fullmatch(path))


def _is_head(path: str) -> bool:
    return bool(_HEAD.fullmatch(path))


def mixed_overrides(model: nn.Module, sensitive_group: int = 64) -> dict[str, QuantSpec | None]:
    """Per-module overrides of the mixed 4-bit recipe (see the module docstring)."""
    eight = QuantSpec(8, sensitive_group)
    out: dict[str, QuantSpec | None] = {}
    for path, module in quantizable_modules(model).items():
        if _is_embedding(path) or _is_head(path):
            out[path] = eight if module["weight"].shape[-1] % sensitive_group == 0 else None
    return out


def recipe_bytes(model: nn.Module, recipe: QuantRecipe | None, float_bytes: int = 2) -> int:
    """Bytes the quantizable weights take under `recipe` (norms, which are tiny, left out); needs only shapes."""
    total = 0
    for path, module in quantizable_modules(model).items():
        n = module["weight"].size
        spec = None if recipe is None else recipe.spec_for(path, module)
        total += n * float_bytes if spec is None else quantized_bytes(n, spec.bits, spec.group_size, float_bytes)
    return total


def check_options(bits: int | None, group_size: int | None, mixed: bool) -> None:
    """ConfigError unless the precision options make sense together (checked as the command line is read)."""
    if bits is not None and bits not in BITS:
        raise ConfigError(f"unsupported bit width {bits}: use 4 or 8 (Kyutai's q4 and q8), or leave it out for all")
    if group_size is not None and group_size not in MLX_GROUPS:
        raise ConfigError(f"unsupported group size {group_size}: MLX affine quantization takes {MLX_GROUPS}")
    if mixed and bits == 8:
        raise ConfigError("--mixed applies to the 4-bit file: use it with --q-bits 4 or without --q-bits")


def plan_outputs(model: nn.Module, bits: int | None, group_size: int | None, mixed: bool) -> list[Output]:
    """The files a conversion writes: with `bits`, only that precision; otherwise bf16, q8 and q4.

    Raises:
        ConfigError: unsupported bits or group size, or --mixed without a 4-bit output.
    """
    check_options(bits, group_size, mixed)
    outputs = [] if bits is not None else [Output(MOSHI_FILES[None], None, "float")]
    for b in (8, 4) if bits is None else (bits,):
        spec = QuantSpec(b, group_size or GROUP_SIZE[b])
        overrides = mixed_overrides(model) if mixed and b == 4 else {}
        label = f"q{b} mixed" if overrides else f"q{b}"
        for path, module in quantizable_modules(model).items():  # recorded, not left to a width rule
            if path not in overrides and module["weight"].shape[-1] % spec.group_size:
                overrides[path] = None
        outputs.append(Output(MOSHI_FILES[b], QuantRecipe(spec, overrides), label))
    return outputs
