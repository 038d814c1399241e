"""Kyutai's Moshi and its Mimi codec, in MLX."""

__version__ = "0.1.0"
