"""Will a model fit? Estimates from safetensors headers, checked before any tensor is read."""

from __future__ import annotations

import os
import sys

from ..errors import MemoryBudgetError

GiB = 1024**3
HEADROOM = 0.5 * GiB  # activations, Mimi, Python, MLX's allocator slack
# What macOS keeps for itself and the apps around us. Its memory compression and swap make room for the
# rest, slowly, but nothing is killed: an 8 GiB Mac thus offers 6 GiB, what the 4-bit 7B needs.
SYSTEM_RESERVE = 2 * GiB
KV_AUTO = "auto"  # load_lm(kv_bits=KV_AUTO): an 8-bit KV cache only where the unquantized one does not fit


def available_bytes() -> int | None:
    """Memory a model may use: MemAvailable on Linux (past it the OOM killer strikes); elsewhere physical
    memory less SYSTEM_RESERVE, as what other programs hold there is compressed or swapped out."""
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            return None
    try:
        return max(0, int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")) - SYSTEM_RESERVE)
    except (ValueError, OSError, AttributeError):
        return None


def fits(needed: int, available: int | None = None) -> bool:
    """Whether `needed` bytes (+ headroom) fit in what is available (True when that is unknown)."""
    available = available_bytes() if available is None else available
    return available is None or needed + HEADROOM <= available


def check_fits(needed: int, what: str, advice: str, available: int | None = None) -> None:
    """Raise MemoryBudgetError when `needed` bytes (+ headroom) exceed what is available."""
    available = available_bytes() if available is None else available
    if not fits(needed, available):
        raise MemoryBudgetError(
            f"{what} needs about {needed / GiB:.1f} GiB (+{HEADROOM / GiB:.1f} GiB headroom) but only "
            f"{available / GiB:.1f} GiB is available. {advice}"
        )


def keep_resident(model_bytes: int) -> str | None:
    """On Metal, wire MLX's working set so that macOS never pages the weights out in the middle of a
    conversation (a paged-in layer would cost far more than the 80 ms a frame has). Returns a note for
    the person when the model is close to what the GPU may wire (it may then still page)."""
    import mlx.core as mx

    if not mx.metal.is_available():
        return None
    device_info = getattr(mx, "device_info", None) or mx.metal.device_info  # the latter before MLX 0.30
    limit = int(device_info().get("max_recommended_working_set_size", 0))
    if limit <= 0:
        return None
    mx.set_wired_limit(limit)
    if model_bytes > 0.9 * limit:
        return (f"The model takes {model_bytes / GiB:.1f} GiB of the {limit / GiB:.1f} GiB this GPU keeps "
                "resident: answers may stall while macOS pages weights in. Close other programs, or pick a smaller "
                "precision if this is not the 4-bit model.")
    return None
