"""Shared bits of the LM tests: fixture paths, cached model loads, golden replay."""

from __future__ import annotations

from functools import cache

import mlx.core as mx
import numpy as np

from moshi_mlx.lm_gen import LmGen
from moshi_mlx.loading.lm import load_lm

from . import ASSETS

LM = ASSETS / "lm"
CONFIG = LM / "lm_small.json"
CONFIG_CTX16 = LM / "lm_small_ctx16.json"
FILES = {name: LM / f"lm_small_{name}.safetensors" for name in ("torch", "mlx_bf16", "mlx_q8", "mlx_q4")}


@cache
def goldens() -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in mx.load(str(LM / "lm_small_goldens.safetensors")).items()}


@cache
def model(name: str, config: str = "lm_small.json", float32: bool = True):
    return load_lm(FILES[name], LM / config, dtype=mx.float32 if float32 else None)


def greedy_run(lm, user_codes: np.ndarray, compile: bool = True) -> np.ndarray:
    """LmGen greedy over the user frames -> [S, 1 + dep_q] tokens, -100 where step() gives nothing."""
    gen = LmGen(lm, temp=0.0, text_temp=0.0, compile=compile)
    rows = []
    for frame in user_codes:
        text, audio = gen.step(frame[None])
        rows.append(np.full(1 + lm.cfg.dep_q, -100) if text is None else np.concatenate([text, audio[0]]))
    return np.stack(rows)


def teacher_codes() -> np.ndarray:
    """The reference's greedy run as an undelayed code sequence [1, 17, S-1] (text, Moshi's, user's).

    Step t + 1 returns frame t (text and Moshi's audio); the user's frame given at step t + 1 is frame t.
    """
    g = goldens()
    return np.concatenate([g["gen_tokens"][1:].T, g["user_codes"][1:].T], axis=0)[None]
