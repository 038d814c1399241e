"""List the parameter names, shapes and dtypes of Kyutai's MLX `Lm` (moshi_mlx 0.3.0), as released files hold them.

Run with a separate venv holding Kyutai's package (it also imports as `moshi_mlx`, so never in the dev venv):
    python3 -m venv /work/kyutaienv && /work/kyutaienv/bin/pip install moshi_mlx==0.3.0 "mlx[cpu]==0.26.5"
    /work/kyutaienv/bin/python tests/reference/list_kyutai_mlx_keys.py
Writes tests/assets/lm/kyutai_mlx_keys_{7b,small}.json: {"bf16"|"q8"|"q4": {name: [shape, dtype]}}.
The 7B model is built lazily (MLX never materialises the random init), so this needs little memory.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

HERE = Path(__file__).resolve().parent
ASSETS = HERE.parent / "assets" / "lm"
sys.path = [p for p in sys.path if Path(p or ".").resolve() != HERE.parent.parent]  # never our own package

from moshi_mlx import models  # noqa: E402  (Kyutai's package)

CONFIGS = {
    "7b": HERE.parent.parent / "moshi_mlx" / "presets" / "moshi_7b_202409.json",
    "small": ASSETS / "lm_small.json",
}
PRECISIONS = {"bf16": None, "q8": (8, 64), "q4": (4, 32)}


def kyutai_config(raw: dict):
    """Kyutai's LmConfig for a JSON config, with the temporal feed-forward size the reference uses.

    Kyutai's `from_config_dict` never reads `hidden_scale` (it assumes 4 * dim, which its MLP special-cases
    to 11/4 * dim, the 7B value); the reference uses int(hidden_scale * dim). Setting that here changes
    nothing for the 7B config and makes small test configs build the reference's architecture.
    """
    cfg = models.LmConfig.from_config_dict(raw)
    cfg.transformer.dim_feedforward = int(raw["hidden_scale"] * raw["dim"])
    return cfg


def build(raw: dict, precision: tuple[int, int] | None):
    model = models.Lm(kyutai_config(raw))
    model.set_dtype(mx.bfloat16)
    if precision is not None:
        nn.quantize(model, bits=precision[0], group_size=precision[1])
    return model


def listing(config_path: Path, precision: tuple[int, int] | None) -> dict[str, list]:
    model = build(json.loads(config_path.read_text()), precision)
    return {k: [list(v.shape), str(v.dtype).removeprefix("mlx.core.")] for k, v in tree_flatten(model.parameters())}


def main() -> None:
    for name, path in CONFIGS.items():
        out = {p: listing(path, q) for p, q in PRECISIONS.items()}
        dest = ASSETS / f"kyutai_mlx_keys_{name}.json"
        lines = [
            f"{json.dumps(p)}: {{\n"
            + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(t.items()))
            + "}"
            for p, t in out.items()
        ]
        dest.write_text("{\n" + ",\n".join(lines) + "\n}\n")
        print(f"{dest}: {len(out['bf16'])} bf16 tensors, {len(out['q4'])} q4 tensors")


if __name__ == "__main__":
    main()
