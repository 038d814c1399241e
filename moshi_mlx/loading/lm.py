"""load_lm: safetensors file -> detected layout -> quantized model skeleton -> strict load."""

from __future__ import annotations

import os
from pathlib import Path

import mlx.core as mx

from . import memory
from ..config import LmConfig
from ..errors import CheckpointError, ConfigError
from ..lm import Lm, check_kv_bits
from .memory import KV_AUTO
from ..modules.kv_cache import kv_group_size
from ..cpu.swap import use_cpu_variants
from ..weights import quant, quant_config
from ..weights.formats import CheckpointFormat, detect_format, is_quantized
from ..weights.lm_mlx import map_lm_mlx
from ..weights.lm_torch import map_lm_torch, torch_layout_shapes
from ..weights.safetensors_io import TensorInfo, load_tensors, read_header
from ..weights.strict import load_strict

_MAPPINGS = {CheckpointFormat.LM_KYUTAI_TORCH: map_lm_torch, CheckpointFormat.LM_KYUTAI_MLX: map_lm_mlx}
_FLOAT = {"F32", "F16", "BF16"}


def estimate_bytes(header: dict[str, TensorInfo], cfg: LmConfig, dtype: mx.Dtype | None, batch: int = 1,
                   kv_bits: int | None = None) -> int:  # fmt: skip
    """Weights as they will sit in memory plus the full temporal KV cache."""
    total = 0
    for info in header.values():
        total += _count(info) * dtype.size if dtype is not None and info.dtype in _FLOAT else info.nbytes
    return total + kv_cache_bytes(cfg, dtype, batch, kv_bits)


def kv_cache_bytes(cfg: LmConfig, dtype: mx.Dtype | None, batch: int = 1, kv_bits: int | None = None) -> int:
    """The temporal transformer's KV caches over the whole context."""
    cache_dtype = dtype or mx.bfloat16  # the caches follow the weights' float dtype (see Lm.cache_dtype)
    t = cfg.transformer
    values = 2 * t.num_layers * t.context * t.d_model * batch
    if kv_bits is None:
        return values * cache_dtype.size
    group = kv_group_size(t.head_dim)  # packed values plus a scale and a bias per group, in the compute
    return values * kv_bits // 8 + 2 * (values // group) * mx.float32.size  # dtype: at most float32


def release_header(bits: int | None, cfg: LmConfig) -> dict[str, TensorInfo]:
    """What Kyutai's release of `cfg` at `bits` (4, 8, None: bf16) holds, from the config alone: every
    matrix quantized as `nn.quantize` does (packed weights, bf16 scales and biases), the rest bf16."""
    header = {}
    group = quant.RELEASE_GROUP.get(bits)
    for name, shape in torch_layout_shapes(cfg).items():
        if group and len(shape) == 2 and shape[1] % group == 0:  # norms ([1, 1, D]) stay bf16
            rows, cols = shape
            header[name] = TensorInfo("U32", (rows, cols * bits // 32))
            header[name + ".scales"] = header[name + ".biases"] = TensorInfo("BF16", (rows, cols // group))
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
    label = "bf16" if bits is None else f"{bits}-bit"
    memory.check_fits(needed, f"The {label} Moshi model", _advice(bits == 4, cast=False) + " Nothing was downloaded.")


def resolve_kv_bits(kv_bits: int | str | None, header: dict[str, TensorInfo], cfg: LmConfig,
                    dtype: mx.Dtype | None, available: int | None) -> int | None:  # fmt: skip
    """KV_AUTO -> None where the unquantized cache fits in `available` bytes, else 8; others unchanged."""
    if kv_bits != KV_AUTO:
        return kv_bits
    return None if memory.fits(estimate_bytes(header, cfg, dtype), available) else 8


def _preflight(header: dict[str, TensorInfo], cfg: LmConfig, dtype: mx.Dtype | None, kv_bits: int | str | None,
               what: str) -> int | None:  # fmt: skip
    """Resolve KV_AUTO, then refuse with advice a model that would not fit in memory; returns kv_bits."""
    available = memory.available_bytes()
    kv_bits = resolve_kv_bits(kv_bits, header, cfg, dtype, available)

    def needed(bits: int | None) -> int:
        return estimate_bytes(header, cfg, dtype, kv_bits=bits)

    lin = header.get("text_linear.weight")
    four_bit = is_quantized(header) and lin is not None and lin.shape[-1] * 32 // cfg.dim <= 4
    advice = _advice(four_bit, cast=dtype is not None)
    if kv_bits is None and memory.fits(needed(8), available):
        advice = "It would fit with its attention cache stored at 8 bits. " + advice
    memory.check_fits(needed(kv_bits), what, advice, available)
    return kv_bits


def _advice(four_bit: bool, cast: bool) -> str:
    if four_bit and not cast:
        return "This is already the 4-bit model: close other programs or use a machine with more memory."
    if four_bit:
        return "Do not cast the 4-bit weights (leave dtype unset), or close other programs."
    return "Use the 4-bit weights (kyutai/moshiko-mlx-q4, file model.q4.safetensors), or close other programs."


def _count(info: TensorInfo) -> int:
    n = 1
    for d in info.shape:
        n *= d
    return n


def load_lm(
    weights: str | os.PathLike,
    config: str | os.PathLike | LmConfig | None = None,
    dtype: mx.Dtype | None = None,
    kv_bits: int | str | None = None,
) -> Lm:
    """Load Moshi's LM from any released layout and precision.

    Args:
        weights: a .safetensors file in Kyutai's PyTorch layout (bf16) or Kyutai's MLX layout (bf16, q8,
            q4); the layout and quantization are read from the file, never guessed from its name.
        config: Kyutai-schema JSON path or an LmConfig; default: the released 7B config. A JSON written by
            `python -m quantize` records the file's quantization: it must agree with the file's shapes.
        dtype: cast float weights to this dtype and compute in it (mx.float32 for exact parity with the
            float32 reference). Default: keep the file's dtype; compute in float32 on CPU when quantized.
        kv_bits: 8 stores the temporal KV cache quantized: about half the cache memory, ~1 % error in
            attention scores. None (default): the cache in the weights' float dtype, as the reference.
            "auto": None if that fits in memory, else 8 (read the choice from `Lm.kv_bits`).

    Raises:
        CheckpointError: the file is unreadable or does not fit the config (names the tensors).
        MemoryBudgetError: the model would not fit in memory at this precision.
    """
    if kv_bits != KV_AUTO:
        check_kv_bits(kv_bits)
    path = Path(weights)
    source = str(path)
    header = read_header(path)
    fmt = detect_format(header, source)
    if fmt not in _MAPPINGS:
        raise CheckpointError(f"{source}: this is a {fmt.value}, not a Moshi LM; pass the LM weights.")
    if isinstance(config, LmConfig):
        cfg = config
    else:
        cfg = LmConfig.preset() if config is None else LmConfig.from_json(config)

    kv_bits = _preflight(header, cfg, dtype, kv_bits, f"{source} ({fmt.value})")

    model = Lm(cfg)
    specs = quant.specs_from_header(model, header, source) if fmt is CheckpointFormat.LM_KYUTAI_MLX else {}
    if config is not None and not isinstance(config, LmConfig):  # a recorded "quantization" must agree
        quant_config.check_file(config, path.name, model, specs, source)
    quant.apply(model, specs)
    tensors = _MAPPINGS[fmt](load_tensors(path), cfg, source)
    load_strict(model, tensors, f"{source} ({fmt.value})")
    if dtype is not None:
        model.set_dtype(dtype)
    model.set_kv_bits(kv_bits)
    use_cpu_variants(model)
    mx.eval(model.parameters())
    return model
