"""A tiny, self-consistent model folder for end-to-end tests (pipeline, run, app).

Laid out like a Kyutai MLX release repository, so the same code path loads it:
    tests/assets/e2e/model.q4.safetensors                         the small LM (Kyutai MLX layout, 4-bit g32)
    tests/assets/e2e/tokenizer-e351c8d8-checkpoint125.safetensors  the tiny Mimi (PyTorch layout), 32 bins
    tests/assets/e2e/tokenizer_spm_32k_3.model                     a tiny sentencepiece model (48 pieces)
    tests/assets/e2e/config.json                                   the LM config (Kyutai schema) + file names
    tests/assets/e2e/mimi_config.json                              the tiny Mimi config (Kyutai schema)

No torch needed: it reuses the reference fixtures (tests/assets/lm, tests/assets/mimi_tiny*). The Mimi
codebooks are cut to the LM's cardinality (32) so its codes are valid LM inputs.
    python tests/reference/make_e2e_fixtures.py
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlx.core as mx
import sentencepiece

ASSETS = Path(__file__).resolve().parents[1] / "assets"
OUT = ASSETS / "e2e"

SENTENCES = [
    "hello there how are you doing today",
    "i am moshi and i can listen and speak at the same time",
    "the weather is nice and the sun is out",
    "tell me a story about a cat and a dog",
    "what time is it where you are",
] * 40


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    lm_cfg = json.loads((ASSETS / "lm" / "lm_small.json").read_text())
    card = lm_cfg["card"]

    mimi_cfg = json.loads((ASSETS / "mimi_tiny_config.json").read_text())
    mimi_cfg["quantizer"]["bins"] = card
    (OUT / "mimi_config.json").write_text(json.dumps(mimi_cfg, indent=2) + "\n")
    mimi = mx.load(str(ASSETS / "mimi_tiny.safetensors"))
    for name, value in list(mimi.items()):
        if "._codebook." in name and value.shape[0] > card:
            mimi[name] = value[:card]
    mx.save_safetensors(str(OUT / "tokenizer-e351c8d8-checkpoint125.safetensors"), mimi)

    shutil.copyfile(ASSETS / "lm" / "lm_small_mlx_q4.safetensors", OUT / "model.q4.safetensors")
    config = dict(
        lm_cfg,
        moshi_name="model.q4.safetensors",
        mimi_name="tokenizer-e351c8d8-checkpoint125.safetensors",
        tokenizer_name="tokenizer_spm_32k_3.model",
        mimi_config_name="mimi_config.json",
    )
    (OUT / "config.json").write_text(json.dumps(config, indent=2) + "\n")

    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_prefix=str(OUT / "tokenizer_spm_32k_3"),
        vocab_size=lm_cfg["text_card"],
        model_type="unigram",
        hard_vocab_limit=False,
        pad_id=3,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        minloglevel=2,
    )
    (OUT / "tokenizer_spm_32k_3.vocab").unlink()
    print("wrote", sorted(p.name for p in OUT.iterdir()))


if __name__ == "__main__":
    main()
