"""Will a model fit? Estimates from safetensors headers, checked before any tensor is read."""

from __future__ import annotations

import os
import sys

from .errors import MemoryBudgetError

GiB = 1024**3
_HEADROOM = 0.5 * GiB  # activations, Python, MLX's allocator slack


def available_bytes() -> int | None:
    """Memory the process can still use: MemAvailable on Linux, 3/4 of physical memory elsewhere."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * 3 // 4)
    except (ValueError, OSError, AttributeError):
        return None


def check_fits(needed: int, what: str, advice: str, available: int | None = None) -> None:
    """Raise MemoryBudgetError when `needed` bytes (+ headroom) exceed what is available."""
    available = available_bytes() if available is None else available
    if available is None:
        return
    if needed + _HEADROOM > available:
        raise MemoryBudgetError(
            f"{what} needs about {needed / GiB:.1f} GiB (+{_HEADROOM / GiB:.1f} GiB headroom) but only "
            f"{available / GiB:.1f} GiB is available. {advice}"
        )
