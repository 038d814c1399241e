"""Every CPU-only speed-up, and nothing else: column-blocked weights (blocked.py), matmuls spread over one
MLX stream per core (lanes.py), re-running the process on OpenBLAS (blas.py), and the one function that
swaps a loaded model's modules for their CPU variants (swap.py's `use_cpu_variants`, which the loaders
call). Model code has no CPU special cases; on Metal none of this applies."""
