"""Kyutai's Moshi and its Mimi codec, in MLX.

The public names are imported on first use (PEP 562), so that `python -m moshi_mlx.run` reaches its own
Ctrl-C handling before the 0.3 s of numpy and MLX imports (a Ctrl-C during those printed a traceback); and
the first import here is cli/start.py, which makes a Ctrl-C before that quiet in a program of ours (and does
nothing in any other process).

The top level holds the models and what every layer shares; each folder's `__init__.py` says what it owns.
  mimi.py, lm.py, lm_gen.py, sampling.py, text.py  the models, their sampling, text pieces -> words
  pipeline.py      one 80 ms frame: Mimi encode -> LM step -> Mimi decode (the FrameModel the loop drives)
  errors.py        the errors every layer raises (config, weights, loading, audio, dialog, quantize)
  mlx_thread.py    threads that do MLX work; here as both dialog/'s loop and cli/'s exit rely on it
  outputs.py       files written via temp + rename; here as audio/, dialog/ and quantize all write so
  run.py           `python -m moshi_mlx.run`: flags and wiring only
"""

from __future__ import annotations

from .cli import start as _start  # noqa: F401 (first: a Ctrl-C while a program of ours starts ends it quietly)

# isort: split
import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # what a type checker sees of the names __getattr__ imports on first use
    from .config import DepformerConfig, LmConfig, MimiConfig
    from .lm import Lm
    from .lm_gen import LmGen
    from .loading.lm import load_lm
    from .loading.mimi import load_mimi
    from .mimi import Mimi

__version__ = "0.1.0"

_HOMES = {
    "DepformerConfig": "config",
    "LmConfig": "config",
    "MimiConfig": "config",
    "Lm": "lm",
    "LmGen": "lm_gen",
    "load_lm": "loading.lm",
    "load_mimi": "loading.mimi",
    "Mimi": "mimi",
}

__all__ = ["DepformerConfig", "Lm", "LmConfig", "LmGen", "Mimi", "MimiConfig", "__version__", "load_lm", "load_mimi"]


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
