"""Which released checkpoint layout a safetensors file holds, read from its header alone."""

from __future__ import annotations

from enum import Enum

from ..dtypes import SAFETENSORS_FLOATS
from ..errors import CheckpointError
from ..release import MIMI_FILE, TORCH_REPO
from .safetensors_io import TensorInfo


class CheckpointFormat(Enum):
    """Known layouts; the value is how error messages name them."""

    LM_KYUTAI_TORCH = f"Kyutai PyTorch Moshi LM ({TORCH_REPO} layout)"
    LM_KYUTAI_MLX = "Kyutai MLX Moshi LM (kyutai/moshiko-mlx-{bf16,q8,q4} layout)"
    MIMI_KYUTAI_TORCH = f"Kyutai PyTorch Mimi codec ({MIMI_FILE.removesuffix('.safetensors')} layout)"


def quant_bits_group(weight: TensorInfo, scales: TensorInfo, in_dim: int) -> tuple[int, int]:
    """(bits, group size) of an MLX-affine-quantized matrix with `in_dim` inputs, from its stored shapes:
    packed uint32 columns = in_dim * bits / 32, scale columns = in_dim / group (see `quantized_columns`)."""
    return quant_bits(weight.shape[-1], in_dim), in_dim // max(scales.shape[-1], 1)


def quantized_columns(in_dim: int, bits: int, group: int) -> tuple[int, int]:
    """(packed uint32 columns, scale columns) of a matrix with `in_dim` inputs quantized at `bits`, `group`."""
    return in_dim * bits // 32, in_dim // group


def quantized_bytes(n: int, bits: int, group: int, scale_bytes: int) -> int:
    """Bytes of `n` values (a multiple of `group`) quantized at `bits`: packed values, a scale and a bias per group."""
    return n * bits // 8 + 2 * (n // group) * scale_bytes


def quant_bits(packed: int, in_dim: int) -> int:
    """Bits per weight of a matrix with `in_dim` inputs stored in `packed` uint32 columns."""
    return 32 * packed // in_dim


def unpacked_columns(packed: int, bits: int) -> int:
    """Inputs of a matrix stored in `packed` uint32 columns at `bits` per weight."""
    return packed * 32 // bits


def describe_precision(header: dict[str, TensorInfo]) -> str:
    """'4-bit', '8-bit', 'bf16', ... for display, read from an LM file's header (never its name)."""
    if not is_quantized(header):
        floats = [t for t in SAFETENSORS_FLOATS if any(i.dtype == t for i in header.values())]
        return floats[0].lower() if floats else "unknown"
    name = "transformer.layers.0.self_attn.in_proj"
    weight, scales, norm = header.get(f"{name}.weight"), header.get(f"{name}.scales"), header.get("out_norm.weight")
    if weight is None or scales is None or norm is None or not norm.shape:
        return "quantized"
    return f"{quant_bits_group(weight, scales, norm.shape[-1])[0]}-bit"


def is_quantized(header: dict[str, TensorInfo]) -> bool:
    """True when some tensor is stored MLX-affine-quantized (`.scales` next to a packed uint32 `.weight`)."""
    return any(
        k.endswith(".scales")
        and header.get(k[: -len("scales")] + "weight") is not None
        and header[k[: -len("scales")] + "weight"].dtype == "U32"
        for k in header
    )


def detect_format(header: dict[str, TensorInfo], source: str = "checkpoint") -> CheckpointFormat:
    """Name the layout of a checkpoint from its tensor names; CheckpointError if it is none we know."""
    names = set(header)
    if "out_norm.alpha" in names or any(k.startswith(("emb.0.", "depformer_in.")) for k in names):
        return CheckpointFormat.LM_KYUTAI_TORCH
    if "out_norm.weight" in names or any(k.startswith(("audio_embs.", "depformer.slices.")) for k in names):
        return CheckpointFormat.LM_KYUTAI_MLX
    if any(k.startswith(("encoder.", "quantizer.rvq_first.")) for k in names):
        return CheckpointFormat.MIMI_KYUTAI_TORCH
    sample = sorted(names)[:5]
    raise CheckpointError(
        f"{source}: unrecognised checkpoint layout (first tensors: {sample}). Expected one of: "
        + "; ".join(f.value for f in CheckpointFormat)
        + ". Pass a file released by Kyutai or written by `python -m quantize`."
    )
