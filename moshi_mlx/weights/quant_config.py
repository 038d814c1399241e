"""The quantization recorded in a model folder's config.json, and checking it against a weight file.

`python -m quantize` writes Kyutai's LM JSON schema plus, as mlx-lm does, a "quantization" key:

    "quantization": {"bits": 4, "group_size": 32, "mode": "affine",
                     "text_emb": {"bits": 8, "group_size": 64},     # stored at another precision
                     "depformer.slices.0.emb": false}               # kept float (bf16)

It describes the file named by "moshi_name". A folder holding several precisions also lists each file:
"model_files": {"model.safetensors": null, "model.q8.safetensors": {...}, "model.q4.safetensors": {...}}
(null: float). The shapes in a file are the truth the model is built from (see `quant.specs_from_header`);
the config is a record that must agree with them, so a renamed or swapped file is caught, not mis-run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import mlx.nn as nn

from ..config import read_json_object
from ..errors import CheckpointError, ConfigError
from .quant import MLX_BITS, MLX_GROUPS, QuantSpec, quantizable_modules

MODES = ("affine",)
_MAX_LISTED = 12


@dataclass(frozen=True)
class QuantRecipe:
    """How every quantizable module of one file is stored.

    default: the spec of modules not listed in `overrides`; modules whose input width the group
        cannot tile stay float, as mlx-lm's quantize_model does.
    overrides: per module path, another spec, or None for "kept float".
    """

    default: QuantSpec
    overrides: dict[str, QuantSpec | None] = field(default_factory=dict)
    mode: str = "affine"

    def spec_for(self, path: str, module: nn.Module) -> QuantSpec | None:
        if path in self.overrides:
            return self.overrides[path]
        if module["weight"].shape[-1] % self.default.group_size:
            return None
        return self.default

    def resolve(self, model: nn.Module) -> dict[str, QuantSpec]:
        """Per-module specs of the quantized modules (the form `quant.apply` takes)."""
        out = {}
        for path, module in quantizable_modules(model).items():
            spec = self.spec_for(path, module)
            if spec is not None:
                out[path] = spec
        return out

    def to_json(self) -> dict:
        raw: dict = {"bits": self.default.bits, "group_size": self.default.group_size, "mode": self.mode}
        for path in sorted(self.overrides):
            spec = self.overrides[path]
            raw[path] = False if spec is None else {"bits": spec.bits, "group_size": spec.group_size}
        return raw


def _spec(raw: object, where: str) -> QuantSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected an object with bits and group_size, got {raw!r}")
    bits, group = raw.get("bits"), raw.get("group_size")
    if bits not in MLX_BITS or group not in MLX_GROUPS:
        raise ConfigError(
            f"{where}: bits={bits!r}, group_size={group!r} is no MLX affine quantization "
            f"(bits in {MLX_BITS}, group_size in {MLX_GROUPS})"
        )
    if raw.get("mode", "affine") not in MODES:
        raise ConfigError(f"{where}: mode {raw['mode']!r} is not supported (only {MODES})")
    return QuantSpec(int(bits), int(group))


def recipe_from_json(raw: object, source: str = "config") -> QuantRecipe:
    """Parse an mlx-lm style "quantization" object; ConfigError if malformed."""
    where = f'{source}: "quantization"'
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object, got {raw!r}")
    default = _spec(raw, where)
    overrides: dict[str, QuantSpec | None] = {}
    for key, value in raw.items():
        if key in ("bits", "group_size", "mode"):
            continue
        if value is False:
            overrides[key] = None
        elif value is True:
            overrides[key] = default
        else:
            overrides[key] = _spec(value, f"{where}[{key!r}]")
    return QuantRecipe(default, overrides, str(raw.get("mode", "affine")))


NO_CLAIM = object()  # the config says nothing about this file


def recipe_for_file(raw_config: dict, file_name: str, source: str = "config") -> QuantRecipe | None | object:
    """What the config says about the weight file called `file_name`.

    Returns a QuantRecipe, None (the config says the file is float), or NO_CLAIM.
    """
    files = raw_config.get("model_files")
    if files is not None:
        if not isinstance(files, dict):
            raise ConfigError(f'{source}: "model_files" must map file names to quantization (or null)')
        if file_name in files:
            entry = files[file_name]
            return None if entry is None else recipe_from_json(entry, f"{source} model_files[{file_name!r}]")
    if "quantization" in raw_config and raw_config.get("moshi_name", file_name) == file_name:
        entry = raw_config["quantization"]
        return None if entry is None else recipe_from_json(entry, source)
    return NO_CLAIM


def _describe(spec: QuantSpec | None) -> str:
    return "float" if spec is None else str(spec)


def check_matches(
    claimed: QuantRecipe | None, model: nn.Module, stored: dict[str, QuantSpec], source: str, config: str
) -> None:
    """CheckpointError naming each module whose stored quantization differs from the config's record.

    Args:
        claimed: the config's recipe for this file (None: the config says float).
        model: the float skeleton (quantizable modules by path).
        stored: per-module specs read from the file's shapes (`quant.specs_from_header`).
    """
    modules = quantizable_modules(model)
    expected = {} if claimed is None else claimed.resolve(model)
    wrong = [
        f"{path}: config {_describe(expected.get(path))}, file {_describe(stored.get(path))}"
        for path in modules
        if expected.get(path) != stored.get(path)
    ]
    if not wrong:
        return
    shown = "\n".join(f"    {w}" for w in wrong[:_MAX_LISTED])
    more = f"\n    ... and {len(wrong) - _MAX_LISTED} more" if len(wrong) > _MAX_LISTED else ""
    raise CheckpointError(
        f"{source} is not stored as {config} says ({len(wrong)} modules differ):\n{shown}{more}\n"
        "The weight file and the config belong to different conversions: pass the config.json written "
        "next to this file, or convert again with `python -m quantize`."
    )


def check_file(
    config_path: str | os.PathLike, weights_name: str, model: nn.Module, stored: dict[str, QuantSpec], source: str
) -> None:
    """Check a weight file against what the config.json at `config_path` records for it (if anything)."""
    claimed = recipe_for_file(read_json_object(config_path), weights_name, str(config_path))
    if claimed is not NO_CLAIM:
        check_matches(claimed, model, stored, source, str(config_path))  # type: ignore[arg-type]
