"""Kyutai's PyTorch Mimi checkpoint (tokenizer-e351c8d8-checkpoint125.safetensors) -> our names and layouts.

Our module tree mirrors the PyTorch one (lists where PyTorch has Sequential / ModuleList), so the mapping
is a handful of rules, not a table:
  * `X.conv.conv.weight` / `X.convtr.convtr.weight` (and biases): the reference wraps every conv twice
    (StreamingConv1d -> NormConv1d -> nn.Conv1d); here one module holds the weight -> `X.weight`.
  * conv weights [out, in / g, K] -> [K, in / g, out]; transposed-conv weights [in, out / g, K] ->
    [in / g, K, out], with g = channels for the depthwise upsampler (`upsample.*`), 1 elsewhere
    (output channels last: the layouts our unfold + matmul convolutions read directly).
  * quantizer 1x1 projections (convs [out, in, 1]) -> linear weights [out, in].
  * `_codebook` -> `codebook` (a leading underscore would hide it from MLX's parameters);
    `_initialized` is training bookkeeping and is dropped.
  * legacy fused attention `self_attn.in_proj_weight` -> `self_attn.in_proj.weight`; the split names
    of newer moshi versions (`in_projs.0.weight`, `out_projs.0.weight`) are read too.
Unknown names pass through unchanged so strict loading reports them.
"""

from __future__ import annotations

import re

import mlx.core as mx

_TRAINING_ONLY = re.compile(r"\._codebook\._initialized$")


def conv_weight_from_torch(w: mx.array) -> mx.array:
    """torch Conv1d [out, in / g, K] -> [K, in / g, out]."""
    return mx.contiguous(w.transpose(2, 1, 0))


def convtr_weight_from_torch(w: mx.array, groups: int) -> mx.array:
    """torch ConvTranspose1d [in, out / g, K] -> [in / g, K, out]."""
    c_in, out_g, k = w.shape
    in_g = c_in // groups
    return mx.contiguous(w.reshape(groups, in_g, out_g, k).transpose(1, 3, 0, 2).reshape(in_g, k, groups * out_g))


def _rename(key: str) -> str:
    key = key.replace(".conv.conv.", ".").replace(".convtr.convtr.", ".")
    key = key.replace("._codebook.", ".codebook.")
    key = key.replace(".self_attn.in_proj_weight", ".self_attn.in_proj.weight")
    key = key.replace(".self_attn.in_projs.0.weight", ".self_attn.in_proj.weight")
    key = key.replace(".self_attn.out_projs.0.weight", ".self_attn.out_proj.weight")
    return key


def map_mimi_torch(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Kyutai's PyTorch Mimi state dict -> {our parameter name: array in our layout}. Pure function."""
    out: dict[str, mx.array] = {}
    for key, w in weights.items():
        if _TRAINING_ONLY.search(key):
            continue
        if key.endswith(".conv.conv.weight"):
            w = conv_weight_from_torch(w)
        elif key.endswith(".convtr.convtr.weight"):
            w = convtr_weight_from_torch(w, groups=w.shape[0] if key.startswith("upsample.") else 1)
        elif key.startswith("quantizer.") and key.endswith(("input_proj.weight", "output_proj.weight")):
            w = w.squeeze(-1) if w.ndim == 3 else w
        out[_rename(key)] = w
    return out
