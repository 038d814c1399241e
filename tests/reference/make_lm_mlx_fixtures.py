"""Kyutai-MLX-layout copies of the LM fixture, made by Kyutai's own MLX package (moshi_mlx 0.3.0).

Run after make_lm_fixtures.py, with the separate venv holding Kyutai's package (see list_kyutai_mlx_keys.py):
    /work/kyutaienv/bin/python tests/reference/make_lm_mlx_fixtures.py
Kyutai's `Lm.load_pytorch_weights` reads lm_small_torch.safetensors; the model is cast to bf16 and saved,
then quantized exactly as Kyutai's releases are (`nn.quantize` of the whole model: 8 bits group 64,
4 bits group 32) and saved again:
    lm_small_mlx_bf16.safetensors, lm_small_mlx_q8.safetensors, lm_small_mlx_q4.safetensors
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlx.nn as nn

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from list_kyutai_mlx_keys import ASSETS, build, kyutai_config  # noqa: E402


def main() -> None:
    raw = json.loads((ASSETS / "lm_small.json").read_text())
    for name, precision in {"bf16": None, "q8": (8, 64), "q4": (4, 32)}.items():
        model = build(raw, None)
        model.load_pytorch_weights(str(ASSETS / "lm_small_torch.safetensors"), kyutai_config(raw), strict=True)
        if precision is not None:
            nn.quantize(model, bits=precision[0], group_size=precision[1])
        dest = ASSETS / f"lm_small_mlx_{name}.safetensors"
        model.save_weights(str(dest))
        print(f"{dest.name}: {dest.stat().st_size} B")


if __name__ == "__main__":
    main()
