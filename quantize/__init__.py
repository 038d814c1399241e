"""`python -m quantize`: MLX weights (bf16, q8, q4, mixed 4-bit) from PyTorch-layout Moshi checkpoints."""

from moshi_mlx.cli import start as _start  # noqa: F401 (first: a Ctrl-C while it starts ends it quietly)
