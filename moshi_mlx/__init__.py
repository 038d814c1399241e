"""Kyutai's Moshi and its Mimi codec, in MLX."""

from .config import DepformerConfig, LmConfig, MimiConfig
from .lm import Lm
from .lm_gen import LmGen
from .loading.lm import load_lm
from .loading.mimi import load_mimi
from .mimi import Mimi

__version__ = "0.1.0"

__all__ = ["DepformerConfig", "Lm", "LmConfig", "LmGen", "Mimi", "MimiConfig", "__version__", "load_lm", "load_mimi"]
