"""The tiny STT model of tests/assets/stt (made by tests/reference/make_stt_fixtures.py): files, goldens,
and a model folder in the layout of Kyutai's PyTorch STT release (kyutai/stt-1b-en_fr)."""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import mlx.core as mx
import numpy as np

from . import ASSETS

STT = ASSETS / "stt"
CONFIG = STT / "config.json"
WEIGHTS = STT / "model.safetensors"
MIMI = STT / "mimi.safetensors"
MIMI_CONFIG = STT / "mimi_config.json"
TOKENIZER = ASSETS / "e2e" / "tokenizer_spm_32k_3.model"  # the config names it; shared with the e2e model


@cache
def goldens() -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(STT / "goldens.safetensors")).items()}


def make_repo(folder: Path) -> Path:
    """A complete model folder (config.json naming the LM, Mimi and tokenizer files) at `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for src in (CONFIG, WEIGHTS, MIMI, MIMI_CONFIG, TOKENIZER):
        shutil.copyfile(src, folder / src.name)
    return folder


def make_moshi_repo(folder: Path) -> Path:
    """The tiny e2e Moshi (tests/assets/e2e) with the STT fixture's Mimi: the same 32-entry codebooks, and the
    32 of them the STT model reads (the released Mimi holds 32 too; the e2e one only 10)."""
    from .cli import E2E

    shutil.copytree(E2E, folder)
    shutil.copyfile(MIMI, folder / "tokenizer-e351c8d8-checkpoint125.safetensors")
    shutil.copyfile(MIMI_CONFIG, folder / "mimi_config.json")
    return folder
