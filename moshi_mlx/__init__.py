"""Kyutai's Moshi and its Mimi codec, in MLX."""

from .config import DepformerConfig, LmConfig
from .lm import Lm
from .lm_gen import LmGen
from .loading_lm import load_lm

__version__ = "0.1.0"

__all__ = ["DepformerConfig", "Lm", "LmConfig", "LmGen", "load_lm", "__version__"]
