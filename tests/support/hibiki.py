"""A tiny random-weight Hibiki as Kyutai publishes kyutai/hibiki-1b-mlx-bf16: its file names, MLX layout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from . import ASSETS

HIBIKI = ASSETS / "hibiki"
CONFIG = HIBIKI / "hibiki_small.json"
TORCH = HIBIKI / "hibiki_small_torch.safetensors"
E2E = ASSETS / "e2e"  # the tiny Mimi (card 32, as the tiny Hibiki) and text tokenizer
EOS_GAIN = 64.0  # a power of two: the edited rows are exact in bf16, in the goldens and here

NAMES = {  # the release's names (config.json of kyutai/hibiki-1b-mlx-bf16)
    "moshi_name": "hibiki-mlx-dc2cf5a5@80.safetensors",
    "mimi_name": "mimi-dbaa9758@125.safetensors",
    "tokenizer_name": "tokenizer_spm_48k_multi6_2.model",
    "mimi_config_name": "mimi_config.json",  # not in the release (its Mimi is the default one): the tiny Mimi's
}


def make_hibiki_folder(folder: Path, says_eos_at_the_end: bool = False) -> Path:
    """Write the folder; the LM converted to Kyutai's MLX layout (bf16) by `python -m quantize`'s converter.

    says_eos_at_the_end: make the model answer the source-end codes (every user codebook at `card`, also its
    initial token) with the end of text, as a trained Hibiki does: those embedding rows are set to a large
    vector along the text head's EOS row. Random weights otherwise never end a translation.
    """
    import mlx.core as mx

    from quantize.__main__ import run
    from quantize.convert import Options

    staging = folder.parent / f"{folder.name}-converted"
    run(str(TORCH), staging, str(CONFIG), Options(progress=False), echo=lambda *_: None)
    folder.mkdir(parents=True)
    weights = dict(mx.load(str(staging / "model.safetensors")))  # type: ignore[arg-type]
    if says_eos_at_the_end:  # the same edit as make_hibiki_fixtures.py's file-mode goldens (exact in bf16)
        cfg = json.loads(CONFIG.read_text())
        for i in range(cfg["dep_q"], cfg["n_q"]):  # the source's streams
            rows = weights[f"audio_embs.{i}.weight"]
            rows[cfg["card"]] = EOS_GAIN * weights["text_linear.weight"][2]
    mx.save_safetensors(str(folder / NAMES["moshi_name"]), weights, metadata={"format": "mlx"})
    shutil.copyfile(E2E / "tokenizer-e351c8d8-checkpoint125.safetensors", folder / NAMES["mimi_name"])
    shutil.copyfile(E2E / "tokenizer_spm_32k_3.model", folder / NAMES["tokenizer_name"])
    shutil.copyfile(E2E / "mimi_config.json", folder / NAMES["mimi_config_name"])
    (folder / "config.json").write_text(json.dumps(json.loads(CONFIG.read_text()) | NAMES, indent=1))
    return folder
