"""Golden fixtures for the Moshi LM from Kyutai's PyTorch reference (`moshi` 0.2.13).

Run with the reference environment (torch), from the repository root:
    /work/refenv/bin/python tests/reference/make_lm_fixtures.py
then write the Kyutai-MLX-layout copies with Kyutai's own MLX package (see make_lm_mlx_fixtures.py).

Model: the 7B architecture shrunk (`tests/assets/lm/lm_small.json`): same delays, n_q 16, dep_q 8,
per-step depformer weights, widths 128 / 64 so every Linear and Embedding quantizes with groups of 32
and 64. Random weights from a fixed seed, made non-degenerate (norm weights perturbed, attention
sharpened) and rounded to bfloat16, so the bf16 file holds exactly the weights the float32 goldens used.

Writes under tests/assets/lm/:
  lm_small_torch.safetensors   Kyutai's PyTorch release layout (bf16): fused per-step depformer
                               projections, `*.alpha` norms of shape [1, 1, D], `emb.{i}`, ...
  lm_small_goldens.safetensors float32 goldens:
    tf_codes [1, 17, T]              teacher-forcing input (text + 16 audio streams, one -1 "zero" token)
    tf_text_logits [1, 1, T, 48]     LMModel.forward outputs (NaN where the reference masks)
    tf_audio_logits [1, 8, T, 32]
    user_codes [S, 8]                user frames fed to LMGen, one per step
    gen_tokens [S, 9]                LMGen.step output per step (text, 8 Moshi codes); -100 while None
    gen_text_logits [S, 48]          text logits of each step
    gen_audio_logits [S, 8, 32]      depformer logits of each step
    ctx16_* the same for lm_small_ctx16.json (context 16: the ring cache wraps at step 16)
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from moshi.models.lm import LMGen
from moshi.models.loaders import get_moshi_lm
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "tests" / "assets" / "lm"
SEED = 20240917
STEPS = 40
TF_STEPS = 10


def build(config_name: str) -> tuple[torch.nn.Module, dict]:
    raw = json.loads((ASSETS / config_name).read_text())
    model = get_moshi_lm(None, lm_kwargs=raw, dtype=torch.float32)
    return model.eval(), raw


def randomize(model: torch.nn.Module) -> None:
    """Fixed-seed weights that exercise every parameter: no constant norms, peaky attention."""
    gen = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".alpha"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif ".in_projs." in name:
                p.mul_(1.7)
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def torch_release_layout(model: torch.nn.Module, dep_q: int) -> dict[str, torch.Tensor]:
    """The state dict renamed as Kyutai's released PyTorch checkpoints store it (bf16)."""
    sd = model.state_dict()
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if ".self_attn.in_projs." in key or ".self_attn.out_projs." in key:
            continue
        out[key] = value
    layer_prefixes = sorted({k.split(".self_attn.")[0] for k in sd if ".self_attn." in k})
    for prefix in layer_prefixes:
        steps = dep_q if prefix.startswith("depformer.") else 1
        out[f"{prefix}.self_attn.in_proj_weight"] = torch.cat(
            [sd[f"{prefix}.self_attn.in_projs.{i}.weight"] for i in range(steps)], dim=0
        )
        out[f"{prefix}.self_attn.out_proj.weight"] = torch.cat(
            [sd[f"{prefix}.self_attn.out_projs.{i}.weight"] for i in range(steps)], dim=0
        )
    return {k: v.to(torch.bfloat16).contiguous() for k, v in out.items()}


@torch.no_grad()
def generate(model: torch.nn.Module, user_codes: torch.Tensor) -> dict[str, torch.Tensor]:
    """Greedy LMGen over the user frames; records every step's output and logits."""
    text_logits: list[torch.Tensor] = []
    audio_logits: list[torch.Tensor] = []
    forward_depformer = model.forward_depformer

    def record_depformer(cb_index, sequence, transformer_out):
        logits = forward_depformer(cb_index, sequence, transformer_out)
        audio_logits.append(logits[0, 0, 0].clone())
        return logits

    model.forward_depformer = record_depformer
    gen = LMGen(model, use_sampling=False, on_text_logits_hook=lambda x: text_logits.append(x[0, 0, 0].clone()))
    tokens = torch.full((user_codes.shape[0], 1 + model.dep_q), -100, dtype=torch.int32)
    with gen.streaming(1):
        for step in range(user_codes.shape[0]):
            out = gen.step(user_codes[step][None, :, None])
            if out is not None:
                tokens[step] = out[0, :, 0].to(torch.int32)
    del model.forward_depformer
    return {
        "gen_tokens": tokens,
        "gen_text_logits": torch.stack(text_logits),
        "gen_audio_logits": torch.stack(audio_logits).view(user_codes.shape[0], model.dep_q, -1),
    }


def min_relative_gap(logits: torch.Tensor) -> float:
    top = logits.float().topk(2, dim=-1).values
    return float(((top[..., 0] - top[..., 1]) / top[..., 0].abs().clamp(min=1e-6)).min())


def main() -> None:
    torch.manual_seed(SEED)
    model, raw = build("lm_small.json")
    randomize(model)
    dep_q = raw["dep_q"]

    layout = torch_release_layout(model, dep_q)
    path = ASSETS / "lm_small_torch.safetensors"
    save_file(layout, str(path), metadata={"format": "pt"})
    # The file must load into the reference exactly (its load hook splits the fused projections).
    check, _ = build("lm_small.json")
    check.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
    for (name, a), (_, b) in zip(model.state_dict().items(), check.state_dict().items()):
        assert torch.equal(a, b), name

    gen = torch.Generator().manual_seed(SEED + 1)
    goldens: dict[str, torch.Tensor] = {}
    codes = torch.cat(
        [
            torch.randint(0, raw["text_card"], (1, 1, TF_STEPS), generator=gen),
            torch.randint(0, raw["card"], (1, raw["n_q"], TF_STEPS), generator=gen),
        ],
        dim=1,
    )
    codes[0, 12, 4] = -1  # a "zero" token: no input for that stream at that step
    with torch.no_grad():
        out = model(codes)
    goldens["tf_codes"] = codes.to(torch.int32)
    goldens["tf_text_logits"] = out.text_logits.float()
    goldens["tf_audio_logits"] = out.logits.float()

    user_codes = torch.randint(0, raw["card"], (STEPS, raw["n_q"] - dep_q), generator=gen)
    goldens["user_codes"] = user_codes.to(torch.int32)
    goldens.update(generate(model, user_codes))

    ctx_model, _ = build("lm_small_ctx16.json")
    ctx_model.load_state_dict(model.state_dict())
    goldens.update({f"ctx16_{k}": v for k, v in generate(ctx_model, user_codes).items()})

    # Sensitivity: the goldens must depend on the inputs, the context and every stream.
    tok, ctx_tok = goldens["gen_tokens"], goldens["ctx16_gen_tokens"]
    assert not torch.equal(tok[16:], ctx_tok[16:]), "context 16 must change generation after the wrap"
    assert torch.equal(tok[:16], ctx_tok[:16]), "before the wrap, context 16 must not matter"
    changed = user_codes.clone()
    changed[5, 3] = (changed[5, 3] + 1) % raw["card"]
    alt = generate(model, changed)["gen_tokens"]
    assert torch.equal(alt[:5], tok[:5]) and not torch.equal(alt[5:], tok[5:]), "one user code must matter"
    print("text tokens:", tok[:, 0].tolist())
    print("distinct audio tokens per codebook:", [len(set(tok[1:, k].tolist())) for k in range(1, 9)])
    print("steps where ctx16 differs:", (tok != ctx_tok).any(dim=1).nonzero().flatten().tolist())
    print(
        f"min relative top-2 gap: text {min_relative_gap(goldens['gen_text_logits']):.2e}, "
        f"audio {min_relative_gap(goldens['gen_audio_logits']):.2e}"
    )
    save_file(
        {k: v.contiguous() for k, v in goldens.items()},
        str(ASSETS / "lm_small_goldens.safetensors"),
        metadata={"reference": "moshi 0.2.13", "seed": str(SEED), "steps": str(STEPS)},
    )
    print(f"wrote {path.name} ({path.stat().st_size} B) and lm_small_goldens.safetensors")


if __name__ == "__main__":
    main()
