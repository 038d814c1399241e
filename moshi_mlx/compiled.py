"""Whether streaming steps are compiled: the one switch for LmGen's and Mimi's steps.

Steps are compiled with `mx.compile` by default; MOSHI_MLX_COMPILE=0 runs the same functions op by op,
for debugging and for the benchmarks' comparison.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .lm import Lm

COMPILE_ENV = "MOSHI_MLX_COMPILE"


def compile_by_default() -> bool:
    """Steps are compiled unless MOSHI_MLX_COMPILE is 0 (or false / no / off)."""
    return os.environ.get(COMPILE_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def lm_setting(lm: Lm) -> tuple:
    """What a compiled step over `lm` was traced for: a step is traced again when this changes (a cast, a new
    compute dtype or KV width, quantization, replaced output layers); swapped modules need an explicit
    re-trace."""
    return (
        lm.compute_dtype,
        lm.cache_dtype,
        lm.kv_bits,
        lm.is_quantized,
        id(lm.text_linear),
        id(lm.out_norm.weight),
    )
