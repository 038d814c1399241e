"""A tiny PersonaPlex model folder laid out as nvidia/personaplex-7b-v1 (voices extracted), from the fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from support.cli import E2E

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "personaplex"


def personaplex_folder(folder: Path, voices: bool = True) -> Path:
    """model.safetensors (PyTorch layout), config.json, Mimi, tokenizer, and voices/NATF2.pt (the fixture preset)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(ASSETS / "model.safetensors", folder / "model.safetensors")
    for name in ("tokenizer-e351c8d8-checkpoint125.safetensors", "tokenizer_spm_32k_3.model", "mimi_config.json"):
        shutil.copy(E2E / name, folder / name)
    config = json.loads((ASSETS / "lm_config.json").read_text()) | {
        "moshi_name": "model.safetensors",
        "mimi_name": "tokenizer-e351c8d8-checkpoint125.safetensors",
        "tokenizer_name": "tokenizer_spm_32k_3.model",
        "mimi_config_name": "mimi_config.json",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    if voices:
        (folder / "voices").mkdir(exist_ok=True)
        shutil.copy(ASSETS / "voice.pt", folder / "voices" / "NATF2.pt")
    return folder
