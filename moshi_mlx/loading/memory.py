"""Will a model fit? The memory budget, and the LM's estimates from safetensors headers (or, before a
download, from the release's config), checked before any tensor is read."""

from __future__ import annotations

import os
import sys
from typing import Final, Literal

import mlx.core as mx

from ..config import LmConfig
from ..config.family import RUNS
from ..dtypes import SAFETENSORS_FLOATS
from ..errors import ConfigError, MemoryBudgetError, Setting
from ..modules.kv_cache import kv_group_size
from ..release import GROUP_SIZE, precision_label
from ..weights.formats import is_quantized, quant_bits, quantized_bytes, quantized_columns
from ..weights.lm_torch import torch_layout_shapes
from ..weights.safetensors_io import TensorInfo

GiB = 1024**3
HEADROOM = 0.5 * GiB  # activations, Mimi, Python, MLX's allocator slack
# What macOS keeps for itself and the apps around us. Its memory compression and swap make room for the
# rest, slowly, but nothing is killed: an 8 GiB Mac thus offers 6 GiB, what the 4-bit 7B needs.
SYSTEM_RESERVE = 2 * GiB
KV_AUTO: Final = "auto"  # load_lm(kv_bits=KV_AUTO): an 8-bit KV cache only where the unquantized one does not fit


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


def check_memory_fits(
    needed: int, what: str, advice: str, available: int | None = None, setting: Setting | None = None
) -> None:
    """Raise MemoryBudgetError (hinting at `setting`) when `needed` bytes (+ headroom) exceed what is available."""
    available = available_bytes() if available is None else available
    if available is not None and not fits(needed, available):
        raise MemoryBudgetError(
            f"{what} needs about {needed / GiB:.1f} GiB (+{HEADROOM / GiB:.1f} GiB headroom) but only "
            f"{available / GiB:.1f} GiB is available. {advice}",
            hint=setting,
        )


def keep_resident(model_bytes: int) -> str | None:
    """On Metal, wire MLX's working set so that macOS never pages the weights out in the middle of a
    conversation (a paged-in layer would cost far more than the 80 ms a frame has). Returns a note for
    the person when the model is close to what the GPU may wire (it may then still page)."""
    if not mx.metal.is_available():
        return None
    device_info = getattr(mx, "device_info", None) or mx.metal.device_info  # the latter before MLX 0.30
    limit = int(device_info().get("max_recommended_working_set_size", 0))
    if limit <= 0:
        return None
    mx.set_wired_limit(limit)
    if model_bytes > 0.9 * limit:
        return (
            f"The model takes {model_bytes / GiB:.1f} GiB of the {limit / GiB:.1f} GiB this GPU keeps "
            "resident: answers may stall while macOS pages weights in. Close other programs, or pick a smaller "
            "precision if this is not the 4-bit model."
        )
    return None


# -- the LM's estimates ----------------------------------------------------------------------------------------------


def estimate_bytes(
    header: dict[str, TensorInfo],
    cfg: LmConfig,
    dtype: mx.Dtype | None,
    batch: int | None = None,
    kv_bits: int | None = None,
) -> int:
    """Weights as they will sit in memory plus the full temporal KV cache (batch None: one conversation,
    two rows for a conditioned model, whose classifier-free guidance runs a negative row beside it)."""
    batch = (2 if cfg.conditioners else 1) if batch is None else batch
    total = 0
    for info in header.values():
        total += _count(info) * dtype.size if dtype is not None and info.dtype in SAFETENSORS_FLOATS else info.nbytes
    return total + kv_cache_bytes(cfg, dtype, batch, kv_bits)


def kv_cache_bytes(cfg: LmConfig, dtype: mx.Dtype | None, batch: int = 1, kv_bits: int | None = None) -> int:
    """The temporal transformer's KV caches over the whole context."""
    cache_dtype = dtype or mx.bfloat16  # the caches follow the weights' float dtype (see Lm.cache_dtype)
    t = cfg.transformer
    assert t.context is not None  # LmConfig requires the temporal transformer's context
    values = 2 * t.num_layers * t.context * t.d_model * batch
    if kv_bits is None:
        return values * cache_dtype.size
    # scales and biases in the compute dtype: at most float32
    return quantized_bytes(values, kv_bits, kv_group_size(t.head_dim), mx.float32.size)


def release_header(bits: int | None, cfg: LmConfig) -> dict[str, TensorInfo]:
    """What Kyutai's release of `cfg` at `bits` (4, 8, None: bf16) holds, from the config alone: every
    matrix quantized as `nn.quantize` does (packed weights, bf16 scales and biases), the rest bf16."""
    header = {}
    group = None if bits is None else GROUP_SIZE.get(bits)
    for name, shape in torch_layout_shapes(cfg).items():
        if bits is not None and group and len(shape) == 2 and shape[1] % group == 0:  # norms ([1, 1, D]) stay bf16
            rows, cols = shape
            packed, groups = quantized_columns(cols, bits, group)
            header[name] = TensorInfo("U32", (rows, packed))
            header[name + ".scales"] = header[name + ".biases"] = TensorInfo("BF16", (rows, groups))
        else:
            header[name] = TensorInfo("BF16", shape)
    return header


def check_download_fits(bits: int | None, config: str | os.PathLike | None = None) -> None:
    """Before downloading Kyutai's release at `bits`: refuse (MemoryBudgetError) a model this machine
    could not load even with an 8-bit KV cache, instead of after gigabytes of download."""
    try:
        cfg = LmConfig.preset() if config is None else LmConfig.from_json(config)
    except ConfigError:  # load_lm will say what is wrong with it; this check only spares a download
        return
    needed = estimate_bytes(release_header(bits, cfg), cfg, None, kv_bits=8)
    label = precision_label(bits)
    advice, setting = _advice(bits == 4, cast=False)
    name = RUNS[cfg.model_type].split(" (")[0]
    check_memory_fits(needed, f"The {label} {name} model", advice + " Nothing was downloaded.", setting=setting)


def resolve_kv_bits(
    kv_bits: int | Literal["auto"] | None,
    header: dict[str, TensorInfo],
    cfg: LmConfig,
    dtype: mx.Dtype | None,
    available: int | None,
) -> int | None:
    """KV_AUTO -> None where the unquantized cache fits in `available` bytes, else 8; others unchanged."""
    if kv_bits != KV_AUTO:
        return kv_bits
    return None if fits(estimate_bytes(header, cfg, dtype), available) else 8


def preflight(
    header: dict[str, TensorInfo],
    cfg: LmConfig,
    dtype: mx.Dtype | None,
    kv_bits: int | Literal["auto"] | None,
    what: str,
) -> int | None:
    """Resolve KV_AUTO, then refuse with advice a model that would not fit in memory; returns kv_bits."""
    available = available_bytes()
    kv_bits = resolve_kv_bits(kv_bits, header, cfg, dtype, available)

    def needed(bits: int | None) -> int:
        return estimate_bytes(header, cfg, dtype, kv_bits=bits)

    lin = header.get("text_linear.weight")
    four_bit = is_quantized(header) and lin is not None and quant_bits(lin.shape[-1], cfg.dim) <= 4
    advice, setting = _advice(four_bit, cast=dtype is not None)
    if kv_bits is None and fits(needed(8), available):
        advice = "It would fit with its attention cache stored at 8 bits. " + advice
    check_memory_fits(needed(kv_bits), what, advice, available, setting)
    return kv_bits


def _advice(four_bit: bool, cast: bool) -> tuple[str, Setting | None]:
    """What to do about a model too large, and the setting that would do it."""
    if four_bit and not cast:
        return "This is already the 4-bit model: close other programs or use a machine with more memory.", None
    if four_bit:
        return "Do not cast the 4-bit weights (leave dtype unset), or close other programs.", None
    return "Use the 4-bit weights, or close other programs.", Setting.PRECISION


def _count(info: TensorInfo) -> int:
    n = 1
    for d in info.shape:
        n *= d
    return n
