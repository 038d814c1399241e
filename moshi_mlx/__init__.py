"""Kyutai's Moshi and its Mimi codec, in MLX."""

__version__ = "0.1.0"

from .config import MimiConfig
from .loading_mimi import load_mimi
from .mimi import Mimi

__all__ = ["Mimi", "MimiConfig", "__version__", "load_mimi"]
