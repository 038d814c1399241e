"""`python -m quantize`: MLX weights (bf16, q8, q4, mixed 4-bit) from PyTorch-layout Moshi checkpoints."""
