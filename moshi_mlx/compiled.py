"""Whether streaming steps are compiled: the one switch for LmGen's and Mimi's steps.

Steps are compiled with `mx.compile` by default; MOSHI_MLX_COMPILE=0 runs the same functions op by op,
for debugging and for the benchmarks' comparison.
"""

from __future__ import annotations

import os

COMPILE_ENV = "MOSHI_MLX_COMPILE"


def compile_by_default() -> bool:
    """Steps are compiled unless MOSHI_MLX_COMPILE is 0 (or false / no / off)."""
    return os.environ.get(COMPILE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")
