"""Golden outputs of the reference StreamingTransformer, for tests/test_transformer.py.

Run with the reference environment (torch + Kyutai's `moshi` 0.2.13):
    python tests/reference/make_transformer_fixtures.py
Writes tests/assets/transformer_<name>.safetensors: the weights in the reference's own names (prefix
`w.`), an input `x` [1, T, D], the batch output `batch`, and the streaming output `stream` computed in
chunks of `chunk` steps. T exceeds the context so the streaming ring cache wraps.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from moshi.modules.transformer import StreamingTransformer
from safetensors.torch import save_file

ASSETS = Path(__file__).resolve().parents[1] / "assets"

CASES = {
    # Mimi-like: LayerNorm, GELU MLP, LayerScale, context 6, streamed two steps at a time.
    "mimi_like": dict(
        cfg=dict(
            d_model=32,
            num_heads=4,
            num_layers=2,
            dim_feedforward=64,
            causal=True,
            context=6,
            max_period=10000,
            norm="layer_norm",
            gating="none",
            positional_embedding="rope",
            layer_scale=0.5,
        ),
        steps=20,
        chunk=2,
    ),
    # Helium-like: float32 RMSNorm, gated SiLU, no LayerScale, context 8, one step at a time.
    "lm_like": dict(
        cfg=dict(
            d_model=64,
            num_heads=4,
            num_layers=2,
            dim_feedforward=int(4.125 * 64),
            causal=True,
            context=8,
            max_period=10000,
            norm="rms_norm_f32",
            gating="silu",
            positional_embedding="rope",
            layer_scale=None,
        ),
        steps=21,
        chunk=1,
    ),
}


def perturb(model: torch.nn.Module, gen: torch.Generator) -> None:
    """Random weights at a healthy scale; norms and layer scales away from their constant init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("alpha") or name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=gen))
            elif name.endswith("scale"):
                p.copy_(0.5 + 0.3 * torch.rand(p.shape, generator=gen))
            else:
                p.copy_(torch.randn(p.shape, generator=gen) / p.shape[-1] ** 0.5)


def released_name(name: str) -> str:
    """The live module splits projections per step; released checkpoints keep the fused legacy names."""
    return name.replace("self_attn.in_projs.0.weight", "self_attn.in_proj_weight").replace(
        "self_attn.out_projs.0.weight", "self_attn.out_proj.weight"
    )


def main() -> None:
    ASSETS.mkdir(parents=True, exist_ok=True)
    for name, case in CASES.items():
        gen = torch.Generator().manual_seed(20241)
        model = StreamingTransformer(**case["cfg"]).eval()
        perturb(model, gen)
        x = torch.randn(1, case["steps"], case["cfg"]["d_model"], generator=gen)
        with torch.no_grad():
            batch = model(x)
            chunks = []
            with model.streaming(batch_size=1):
                for i in range(0, case["steps"], case["chunk"]):
                    chunks.append(model(x[:, i : i + case["chunk"]]))
            stream = torch.cat(chunks, dim=1)
        tensors = {f"w.{released_name(k)}": v.contiguous() for k, v in model.state_dict().items()}
        tensors.update(x=x, batch=batch, stream=stream)
        meta = {"config": json.dumps(case["cfg"]), "chunk": str(case["chunk"]), "reference": "moshi 0.2.13"}
        save_file(tensors, str(ASSETS / f"transformer_{name}.safetensors"), metadata=meta)
        print(name, "batch-vs-stream max diff", (batch - stream).abs().max().item())


if __name__ == "__main__":
    main()
