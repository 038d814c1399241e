"""Tiny random-weight repositories in the layouts of the Moshi family's PyTorch releases.

`kyutai/moshika-rl-seamless` and `kyutai/personaplex-rl-seamless` hold a bf16 `model.safetensors` in Kyutai's
PyTorch layout, Mimi, the text tokenizer and a Kyutai-schema `config.json` (file names, `model_type`,
`lm_gen_config`, `model_id`); `nvidia/personaplex-7b-v1` the same files with a config.json naming only its type.
The tiny model is tests/assets/e2e's architecture (Mimi and tokenizer copied from there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx

from moshi_mlx.config import LmConfig
from moshi_mlx.weights.lm_torch import torch_layout_shapes
from support.cli import E2E

_E2E_FILES = ("tokenizer-e351c8d8-checkpoint125.safetensors", "tokenizer_spm_32k_3.model", "mimi_config.json")
_HUB_KEYS = {
    "moshi_name": "model.safetensors",
    "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
    "tokenizer_name": "tokenizer_spm_32k_3.model",
    "mimi_config_name": "mimi_config.json",
}


def tiny_lm_config(personaplex: bool = False) -> dict:
    """tests/assets/e2e's LM config (Kyutai schema, no file names); PersonaPlex: 16 depformer slices."""
    raw = {k: v for k, v in json.loads((E2E / "config.json").read_text()).items() if k not in _HUB_KEYS}
    if personaplex:
        raw = {"model_type": "personaplex"} | raw | {"dep_q": 16}
    return raw


def torch_weights(cfg: LmConfig, seed: int = 0) -> dict[str, mx.array]:
    """Random bf16 weights in Kyutai's PyTorch layout for `cfg` (norms near 1, matrices ~ N(0, 1/in))."""
    key = mx.random.key(seed)
    out: dict[str, mx.array] = {}
    for i, (name, shape) in enumerate(sorted(torch_layout_shapes(cfg).items())):
        k = mx.random.split(key, i + 1)[i]
        if name.endswith(".alpha"):
            v = 1.0 + 0.1 * mx.random.normal(shape, key=k)
        else:
            v = mx.random.normal(shape, key=k) / (shape[-1] ** 0.5)
        out[name] = v.astype(mx.bfloat16)
    return out


def make_repo(folder: Path, *, personaplex: bool = False, seed: int = 0) -> Path:
    """A repository folder in the rl-seamless releases' layout (see the module docstring); returns it."""
    folder.mkdir(parents=True, exist_ok=True)
    raw = tiny_lm_config(personaplex)
    cfg = LmConfig.from_kyutai(raw)
    mx.save_safetensors(str(folder / "model.safetensors"), torch_weights(cfg, seed))
    for name in _E2E_FILES:
        shutil.copy(E2E / name, folder / name)
    config = (
        raw
        | _HUB_KEYS
        | {
            "model_type": raw.get("model_type", "moshi"),
            "lm_gen_config": {"temp": 0.8, "temp_text": 0.7, "top_k": 250, "top_k_text": 25},
            "model_id": {"sig": "0123abcd", "epoch": 1},
        }
    )
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
