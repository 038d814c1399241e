"""Kyutai's PyTorch Moshi LM layout (kyutai/moshiko-pytorch-bf16 `model.safetensors`) -> our names.

Differences from ours (which are Kyutai's MLX release names):
  emb.{i}                  -> audio_embs.{i}
  *.alpha [1, 1, D]        -> *.weight [D]                     (RMSNorm)
  self_attn.in_proj_weight -> self_attn.in_proj.weight
  depformer_in.{k}, linears.{k}, depformer_text_emb, depformer_emb.{k-1}
                           -> depformer.slices.{k}.{linear_in, linear_out, emb}
  depformer.layers.{l}.self_attn.{in_proj_weight, out_proj.weight}: the dep_q per-step projections
      concatenated along dim 0 -> chunk k goes to slice k
  depformer.layers.{l}.gating.{k}.* -> slice k; depformer norms are shared: copied into every slice.
A speech-to-text model (dep_q 0) has no depformer; its `extra_heads.{i}` keep their names.
Tensors this function does not know are passed through under their own name, so strict loading names them.
"""

from __future__ import annotations

import re

import mlx.core as mx

from ..config import LmConfig
from ..errors import CheckpointError, Setting

_TEMPORAL = re.compile(r"transformer\.layers\.(\d+)\.(.+)")


def _norm(v: mx.array) -> mx.array:
    return v.reshape(-1)


def map_lm_torch(tensors: dict[str, mx.array], cfg: LmConfig, source: str = "checkpoint") -> dict[str, mx.array]:
    w = dict(tensors)
    out: dict[str, mx.array] = {}

    def move(src: str, dst: str, fn=None) -> None:
        if src in w:
            v = w.pop(src)
            out[dst] = v if fn is None else fn(v)

    move("text_emb.weight", "text_emb.weight")
    move("text_linear.weight", "text_linear.weight")
    move("out_norm.alpha", "out_norm.weight", _norm)
    for i in range(cfg.n_q):
        move(f"emb.{i}.weight", f"audio_embs.{i}.weight")
    for key in [k for k in w if _TEMPORAL.fullmatch(k)]:
        layer, rest = _TEMPORAL.fullmatch(key).groups()  # type: ignore[union-attr]
        if rest.endswith(".alpha"):
            move(key, f"transformer.layers.{layer}.{rest[: -len('alpha')]}weight", _norm)
        else:
            move(key, f"transformer.layers.{layer}.{rest.replace('in_proj_weight', 'in_proj.weight')}")

    # slices the file holds (PersonaPlex: 16, more than it generates; STT: none)
    dep_q = 0 if cfg.depformer is None else cfg.depformer.num_slices
    multi_linear = cfg.depformer is not None and cfg.depformer.multi_linear
    for k in range(dep_q):
        s = f"depformer.slices.{k}"
        src_in = k if multi_linear else 0
        if f"depformer_in.{src_in}.weight" in w:
            out[f"{s}.linear_in.weight"] = w[f"depformer_in.{src_in}.weight"]
        move(f"linears.{k}.weight", f"{s}.linear_out.weight")
        move("depformer_text_emb.weight" if k == 0 else f"depformer_emb.{k - 1}.weight", f"{s}.emb.weight")
    if cfg.depformer is None:  # dep_q 0: without multi_linear the reference still makes (and saves) one input
        w.pop("depformer_in.0.weight", None)
        return _pass_unknown(out, w)
    for i in range(dep_q if cfg.depformer.multi_linear else 1):
        w.pop(f"depformer_in.{i}.weight", None)

    for layer in range(cfg.depformer.transformer.num_layers):
        p = f"depformer.layers.{layer}"
        fused = {}
        for name in ("self_attn.in_proj_weight", "self_attn.out_proj.weight"):
            if f"{p}.{name}" in w:
                v = w.pop(f"{p}.{name}")
                if v.shape[0] % dep_q:
                    raise CheckpointError(
                        f"{source}: {p}.{name} has {v.shape[0]} rows, not a multiple of dep_q={dep_q}: "
                        "the file and the config do not belong together.",
                        hint=Setting.CONFIG,
                    )
                fused[name] = mx.split(v, dep_q, axis=0)
        norms = {n: w.pop(f"{p}.{n}.alpha") for n in ("norm1", "norm2") if f"{p}.{n}.alpha" in w}
        for k in range(dep_q):
            q = f"depformer.slices.{k}.transformer.layers.{layer}"
            if "self_attn.in_proj_weight" in fused:
                out[f"{q}.self_attn.in_proj.weight"] = fused["self_attn.in_proj_weight"][k]
            if "self_attn.out_proj.weight" in fused:
                out[f"{q}.self_attn.out_proj.weight"] = fused["self_attn.out_proj.weight"][k]
            for n, v in norms.items():
                out[f"{q}.{n}.weight"] = _norm(v)
            for lin in ("linear_in", "linear_out"):
                move(f"{p}.gating.{k}.{lin}.weight", f"{q}.gating.{lin}.weight")

    return _pass_unknown(out, w)


def _pass_unknown(out: dict[str, mx.array], rest: dict[str, mx.array]) -> dict[str, mx.array]:
    """Tensors not renamed keep their name: those our names share (`extra_heads.{i}`), and unknown ones,
    which the strict check then reports."""
    for key, v in rest.items():
        out.setdefault(key, v)
    return out


def torch_layout_shapes(cfg: LmConfig) -> dict[str, tuple[int, ...]]:
    """Names and shapes of a checkpoint in Kyutai's PyTorch release layout for `cfg`."""
    dim, t = cfg.dim, cfg.transformer
    shapes: dict[str, tuple[int, ...]] = {
        "text_emb.weight": (cfg.text_card + 1, dim),
        "text_linear.weight": (cfg.text_card, dim),
        "out_norm.alpha": (1, 1, dim),
    }
    for i in range(cfg.extra_heads_num_heads):
        shapes[f"extra_heads.{i}.weight"] = (cfg.extra_heads_dim, dim)
    for i in range(cfg.n_q):
        shapes[f"emb.{i}.weight"] = (cfg.card + 1, dim)
    for c in cfg.conditioners:  # same names in both layouts
        p = f"condition_provider.conditioners.{c.name}"
        shapes |= {f"{p}.embed.weight": (c.n_bins + 1, c.dim), f"{p}.output_proj.weight": (dim, c.dim)}
        if c.learn_padding:
            shapes[f"{p}.learnt_padding"] = (1, 1, dim)
    for layer in range(t.num_layers):
        p = f"transformer.layers.{layer}"
        shapes |= {
            f"{p}.self_attn.in_proj_weight": (3 * dim, dim),
            f"{p}.self_attn.out_proj.weight": (dim, dim),
            f"{p}.norm1.alpha": (1, 1, dim),
            f"{p}.norm2.alpha": (1, 1, dim),
            f"{p}.gating.linear_in.weight": (2 * t.gating_hidden, dim),
            f"{p}.gating.linear_out.weight": (dim, t.gating_hidden),
        }
    if cfg.depformer is None:
        return shapes
    dep = cfg.depformer.transformer
    shapes["depformer_text_emb.weight"] = (cfg.text_card + 1, dep.d_model)
    for k in range(cfg.depformer.num_slices if cfg.depformer.multi_linear else 1):
        shapes[f"depformer_in.{k}.weight"] = (dep.d_model, dim)
    for k in range(cfg.depformer.num_slices):
        shapes[f"linears.{k}.weight"] = (cfg.card, dep.d_model)
        if k:
            shapes[f"depformer_emb.{k - 1}.weight"] = (cfg.card + 1, dep.d_model)
    for layer in range(dep.num_layers):
        p = f"depformer.layers.{layer}"
        shapes |= {
            f"{p}.self_attn.in_proj_weight": (cfg.depformer.num_slices * 3 * dep.d_model, dep.d_model),
            f"{p}.self_attn.out_proj.weight": (cfg.depformer.num_slices * dep.d_model, dep.d_model),
            f"{p}.norm1.alpha": (1, 1, dep.d_model),
            f"{p}.norm2.alpha": (1, 1, dep.d_model),
        }
        for k in range(cfg.depformer.num_slices):
            shapes[f"{p}.gating.{k}.linear_in.weight"] = (2 * dep.gating_hidden, dep.d_model)
            shapes[f"{p}.gating.{k}.linear_out.weight"] = (dep.d_model, dep.gating_hidden)
    return shapes
