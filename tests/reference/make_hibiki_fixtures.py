"""Golden fixtures for Hibiki from Kyutai's PyTorch reference (`moshi` 0.2.13).

Run with the reference environment (torch), from the repository root:
    /work/refenv/bin/python tests/reference/make_hibiki_fixtures.py

Model: `tests/assets/hibiki/hibiki_small.json`, Hibiki 1B's schema shrunk (model_type hibiki, the
"description" lookup-table conditioner summed into the input, acoustic delays of 2, 8 + 8 codebooks),
widths 128 / 64 so every Linear and Embedding quantizes with groups of 32 and 64. Random weights from a
fixed seed made non-degenerate as in make_lm_fixtures.py (norms perturbed, attention sharpened, the
conditioner's projection enlarged so that the description matters) and rounded to bfloat16.

The model is loaded from the written file by the reference's own `CheckpointInfo.get_moshi` (model_type
hibiki: it copies the text embedding of EOS (2) onto that of PAD (3)), and run by `LMGen` with the
condition tensors of `run_inference.get_condition_tensors` ("very_good", and "very_bad" for the negative
half of classifier-free guidance), greedy, float32.

Writes under tests/assets/hibiki/:
  hibiki_small_torch.safetensors    Kyutai's PyTorch release layout (bf16), the EOS row NOT yet copied
  hibiki_small_goldens.safetensors  float32 goldens:
    condition_very_good [dim], condition_very_bad [dim]   the conditioner's output for each value
    user_codes [S, 8]               source frames fed to LMGen, one per step
    cfg{c}_tokens [S, 9]            LMGen.step output per step for cfg_coef c in CFGS; -100 while None
    cfg{c}_text_logits [S, 48]      the text logits it sampled from (after guidance)
    file_source [N], file_text [F], file_pcm [F * 1920]   run_inference's file driver (see `file_mode`)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import sentencepiece
import torch
from moshi.models.lm import LMGen
from moshi.models.loaders import CheckpointInfo, get_mimi, get_moshi_lm
from moshi.run_inference import InferenceState, get_condition_tensors
from safetensors.torch import save_file

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from make_lm_fixtures import min_relative_gap, randomize, torch_release_layout  # noqa: E402

ROOT = HERE.parents[1]
ASSETS = ROOT / "tests" / "assets" / "hibiki"
CONFIG = ASSETS / "hibiki_small.json"
SEED = 20250205
STEPS = 24
CFGS = {"1": 1.0, "3": 3.0}
FILE_FRAMES = 14
EOS_GAIN = 64.0
E2E = ROOT / "tests" / "assets" / "e2e"  # the release's default (no guidance) and Hibiki's "typical" value


def build(raw: dict, weights: Path | None) -> torch.nn.Module:
    """As CheckpointInfo.from_hf_repo splits a repository's config: model_type out of the LM's keyword
    arguments (a deep copy: the reference's get_conditioner writes into its config)."""
    lm_config = json.loads(json.dumps(raw))
    kind = lm_config.pop("model_type")
    if weights is None:
        return get_moshi_lm(None, lm_kwargs=lm_config, dtype=torch.float32).eval()
    info = CheckpointInfo(weights, weights, weights, lm_config=lm_config, model_type=kind)
    return info.get_moshi(device="cpu", dtype=torch.float32).eval()


@torch.no_grad()
def generate(model: torch.nn.Module, user_codes: torch.Tensor, cfg_coef: float) -> dict[str, torch.Tensor]:
    text_logits: list[torch.Tensor] = []
    conditions = get_condition_tensors("hibiki", model, 1, cfg_coef)
    gen = LMGen(
        model,
        use_sampling=False,
        cfg_coef=cfg_coef,
        condition_tensors=conditions,
        on_text_logits_hook=lambda x: text_logits.append(x[0, 0, 0].clone()),
    )
    tokens = torch.full((user_codes.shape[0], 1 + model.dep_q), -100, dtype=torch.int32)
    with gen.streaming(1):
        for step in range(user_codes.shape[0]):
            out = gen.step(user_codes[step][None, :, None])
            if out is not None:
                tokens[step] = out[0, :, 0].to(torch.int32)
    return {"tokens": tokens, "text_logits": torch.stack(text_logits)}


@torch.no_grad()
def file_mode(raw: dict, weights: Path) -> dict[str, torch.Tensor]:
    """The reference's own file driver (run_inference.InferenceState.run, model_type hibiki, cfg_coef 3,
    greedy) over a source of FILE_FRAMES frames and a partial one, with the tiny Mimi and tokenizer of
    tests/assets/e2e. The LM says the end of text when told the source ended: the embedding rows of `card`
    on the source's streams are EOS_GAIN times the text head's EOS row (tests/support/hibiki.py, the same
    edit), as random weights otherwise never end a translation (and the reference would loop forever)."""
    lm = build(raw, weights)
    for i in range(raw["dep_q"], raw["n_q"]):
        lm.emb[i].weight[raw["card"]] = EOS_GAIN * lm.text_linear.weight[2]
    mimi_config = json.loads((E2E / "mimi_config.json").read_text())
    mimi = get_mimi(E2E / "tokenizer-e351c8d8-checkpoint125.safetensors", mimi_config)
    mimi.set_num_codebooks(max(raw["dep_q"], raw["n_q"] - raw["dep_q"]))
    tokenizer = sentencepiece.SentencePieceProcessor(str(E2E / "tokenizer_spm_32k_3.model"))  # type: ignore
    info = CheckpointInfo(weights, weights, weights, lm_config=raw, model_type="hibiki")
    state = InferenceState(info, mimi, tokenizer, lm, 1, 3.0, "cpu", use_sampling=False)
    pcm = source_pcm()
    ((text, out_pcm),) = state.run(torch.from_numpy(pcm)[None, None])
    return {"file_source": torch.from_numpy(pcm), "file_text": text.to(torch.int32), "file_pcm": out_pcm[0].float()}


def source_pcm():
    import numpy as np

    return (0.1 * np.random.default_rng(5).standard_normal(FILE_FRAMES * 1920 + 700)).astype(np.float32)


def main() -> None:
    torch.manual_seed(SEED)
    raw = json.loads(CONFIG.read_text())
    model = build(raw, None)
    randomize(model)
    with torch.no_grad():
        conditioner = model.condition_provider.conditioners["description"]
        conditioner.output_proj.weight.mul_(0.2)  # a description that matters without drowning the tokens
        conditioner.output_proj.weight.copy_(conditioner.output_proj.weight.bfloat16().float())
        model.text_linear.weight[2].mul_(2.5)  # EOS (2) sampled now and then: the copied row is exercised
        model.text_linear.weight.copy_(model.text_linear.weight.bfloat16().float())

    path = ASSETS / "hibiki_small_torch.safetensors"
    save_file(torch_release_layout(model, raw["dep_q"]), str(path), metadata={"format": "pt"})
    model = build(raw, path)  # as the reference loads a Hibiki repository (EOS row copied)
    assert torch.equal(model.text_emb.weight[2], model.text_emb.weight[3])

    gen = torch.Generator().manual_seed(SEED + 1)
    user_codes = torch.randint(0, raw["card"], (STEPS, raw["n_q"] - raw["dep_q"]), generator=gen)
    goldens: dict[str, torch.Tensor] = {"user_codes": user_codes.to(torch.int32)}
    for value in ("very_good", "very_bad"):
        cond = get_condition_tensors("hibiki", model, 1, 1.0) if value == "very_good" else None
        if cond is None:
            from moshi.conditioners import ConditionAttributes

            cond = model.condition_provider.prepare_and_provide(
                [ConditionAttributes(text={"description": value}, tensor={})]
            )
        goldens[f"condition_{value}"] = cond["description"][0][0, 0].float()
    for name, coef in CFGS.items():
        out = generate(model, user_codes, coef)
        goldens[f"cfg{name}_tokens"] = out["tokens"]
        goldens[f"cfg{name}_text_logits"] = out["text_logits"]

    # Sensitivity: guidance, the description and one source code must each change the output.
    t1, t3 = goldens["cfg1_tokens"], goldens["cfg3_tokens"]
    assert not torch.equal(t1, t3), "cfg_coef 3 must change generation"
    changed = user_codes.clone()
    changed[6, 2] = (changed[6, 2] + 1) % raw["card"]
    alt = generate(model, changed, 3.0)["tokens"]
    assert torch.equal(alt[:6], t3[:6]) and not torch.equal(alt[6:], t3[6:]), "one source code must matter"
    texts = t1[2:, 0].tolist() + t3[2:, 0].tolist()
    print("cfg 1 text:", t1[2:, 0].tolist())
    print("cfg 3 text:", texts, "(EOS 2 fed back" + (")" if 2 in texts[:-1] else " NEVER)"))
    print("distinct audio tokens per codebook (cfg 3):", [len(set(t3[2:, k].tolist())) for k in range(1, 9)])
    print("steps where cfg 3 differs from cfg 1:", (t1 != t3).any(dim=1).nonzero().flatten().tolist())
    for name in CFGS:
        print(f"cfg {name}: min relative top-2 text gap {min_relative_gap(goldens[f'cfg{name}_text_logits']):.2e}")
    goldens.update(file_mode(raw, path))
    text = goldens["file_text"].tolist()
    print(f"file mode: {len(text)} output frames for {FILE_FRAMES} source frames, text {text}")
    save_file(
        {k: v.contiguous() for k, v in goldens.items()},
        str(ASSETS / "hibiki_small_goldens.safetensors"),
        metadata={"reference": "moshi 0.2.13", "seed": str(SEED), "steps": str(STEPS)},
    )
    print(f"wrote {path.name} ({path.stat().st_size} B) and hibiki_small_goldens.safetensors")


if __name__ == "__main__":
    main()
