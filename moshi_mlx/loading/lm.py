"""load_lm: safetensors file -> detected layout -> quantized model skeleton -> strict load."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import mlx.core as mx

from ..config import LmConfig
from ..cpu.swap import use_cpu_variants
from ..errors import CheckpointError, Setting
from ..lm import Lm, check_kv_bits
from ..weights import quant, quant_config
from ..weights.formats import CheckpointFormat, detect_format
from ..weights.lm_mlx import map_lm_mlx
from ..weights.lm_torch import map_lm_torch
from ..weights.safetensors_io import load_tensors, read_header
from ..weights.strict import load_strict
from .memory import KV_AUTO, preflight

_MAPPINGS = {CheckpointFormat.LM_KYUTAI_TORCH: map_lm_torch, CheckpointFormat.LM_KYUTAI_MLX: map_lm_mlx}


def load_lm(
    weights: str | os.PathLike,
    config: str | os.PathLike | LmConfig | None = None,
    dtype: mx.Dtype | None = None,
    kv_bits: int | Literal["auto"] | None = None,
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
        raise CheckpointError(
            f"{source}: this is a {fmt.value}, not a Moshi LM; name the LM weights.", hint=Setting.MODEL_FILES
        )
    if isinstance(config, LmConfig):
        cfg = config
    else:
        cfg = LmConfig.preset() if config is None else LmConfig.from_json(config)

    kv_bits = preflight(header, cfg, dtype, kv_bits, f"{source} ({fmt.value})")

    model = Lm(cfg)
    specs = quant.specs_from_header(model, header, source) if fmt is CheckpointFormat.LM_KYUTAI_MLX else {}
    if config is not None and not isinstance(config, LmConfig):  # a recorded "quantization" must agree
        quant_config.check_file(config, path.name, model, specs, source)
    quant.apply(model, specs)
    tensors = _MAPPINGS[fmt](load_tensors(path), cfg, source)
    load_strict(model, tensors, f"{source} ({fmt.value})")
    if cfg.model_type == "hibiki":
        read_text_eos_as_padding(model)
    if dtype is not None:
        model.set_dtype(dtype)
    model.set_kv_bits(kv_bits)
    model.stack_embeddings()
    use_cpu_variants(model)
    mx.eval(model.parameters())
    return model


TEXT_EOS = 2  # the end-of-text token of Kyutai's tokenizers (sentencepiece eos_id)


def read_text_eos_as_padding(model: Lm) -> None:
    """Hibiki, as the reference loads it (CheckpointInfo.get_moshi): the text embedding of the end-of-text
    token becomes that of padding, "sometimes the model samples the EOS too early ... a way to implicitly
    replace early EOS with PAD". Row by row, so a quantized embedding (weight, scales, biases) too."""
    pad = model.cfg.text_padding_token_id
    for name, rows in model.text_emb.parameters().items():
        rows[TEXT_EOS] = rows[pad]
        model.text_emb[name] = rows
