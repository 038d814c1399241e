"""The float dtypes this port computes and stores in: MLX's, by the names flags use, and safetensors' names."""

from __future__ import annotations

import mlx.core as mx

FLOATS: dict[str, mx.Dtype] = {"bfloat16": mx.bfloat16, "float16": mx.float16, "float32": mx.float32}
SAFETENSORS_FLOATS = ("BF16", "F16", "F32")  # the same, as a safetensors header names them
