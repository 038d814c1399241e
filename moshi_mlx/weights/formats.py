"""Which released checkpoint layout a safetensors file holds, read from its header alone."""

from __future__ import annotations

from enum import Enum

from ..errors import CheckpointError
from .safetensors_io import TensorInfo


class CheckpointFormat(Enum):
    """Known layouts; the value is how error messages name them."""

    LM_KYUTAI_TORCH = "Kyutai PyTorch Moshi LM (kyutai/moshiko-pytorch-bf16 layout)"
    LM_KYUTAI_MLX = "Kyutai MLX Moshi LM (kyutai/moshiko-mlx-{bf16,q8,q4} layout)"
    MIMI_KYUTAI_TORCH = "Kyutai PyTorch Mimi codec (tokenizer-e351c8d8-checkpoint125 layout)"


def is_quantized(header: dict[str, TensorInfo]) -> bool:
    """True when some tensor is stored MLX-affine-quantized (`.scales` next to a packed uint32 `.weight`)."""
    return any(k.endswith(".scales") and header.get(k[: -len("scales")] + "weight", None) is not None
               and header[k[: -len("scales")] + "weight"].dtype == "U32" for k in header)


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
