"""`python -m moshi_mlx` is the local dialog (`python -m moshi_mlx.run`)."""

import sys

from ._cpu_blas import maybe_reexec
from .run import main

maybe_reexec()  # Linux: rerun on the system OpenBLAS when mlx carries the slow reference BLAS
sys.exit(main())
