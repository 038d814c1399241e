"""Every CPU-only speed-up, and nothing else: column-blocked weights (blocked.py), matmuls spread over one
MLX stream per core (lanes.py), and re-running the process on OpenBLAS (blas.py). On Metal none applies.

Nothing is imported here: `blas` runs before MLX is loaded and must stay light."""
