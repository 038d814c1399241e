"""Model folders made at test time, for the tests that run our programs as a user does.

`make_lanes_repo`: an LM big enough that its matmuls are spread over the CPU lanes (moshi_mlx.cpu.lanes
splits Linears of >= 2 * MIN_ROWS output rows; here the attention projection has 768 and the
feed-forward input 512), small enough to run in seconds: the e2e model's config at dim 256, random
weights, written in Kyutai's PyTorch layout and converted to 4 bits by `quantize` (Kyutai's MLX
layout), with the e2e Mimi and tokenizer. Laid out like a Kyutai MLX release repository, so
`python -m moshi_mlx.run --hf-repo FOLDER` loads it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .cli import E2E

LANES_DIM = 256


def make_lanes_repo(folder: Path) -> Path:
    """Writes the folder (see the module docstring) and returns it; about 1 s."""
    from moshi_mlx.config import LmConfig
    from quantize.__main__ import run
    from quantize.convert import Options
    from quantize.memcheck import write_random_checkpoint

    raw = json.loads((E2E / "config.json").read_text())
    raw |= {"dim": LANES_DIM, "num_heads": 4, "moshi_name": "model.safetensors"}
    src = folder / "pytorch"
    src.mkdir(parents=True)
    (src / "config.json").write_text(json.dumps(raw))
    for name in (raw["mimi_name"], raw["tokenizer_name"], raw["mimi_config_name"]):
        shutil.copyfile(E2E / name, src / name)
    write_random_checkpoint(src / "model.safetensors", LmConfig.from_kyutai(raw))
    out = folder / "mlx-q4"
    run(str(src), out, opts=Options(bits=4, progress=False), report_steps=0, echo=lambda *_: None)
    return out
