"""Lookup-table conditioners (Hibiki's "description"): a value -> a vector added to the LM's input.

As the reference's LUTConditioner + ConditionFuser "sum": `output_proj(embed[index(value)])`, one vector
[dim] per conversation, added to the summed token embeddings at every step. Parameter names are the
reference's (`condition_provider.conditioners.{name}.{embed.weight, output_proj.weight, learnt_padding}`),
in both of Kyutai's layouts. The reference keeps these weights in float32 whatever the LM's dtype.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..config.conditioner import LutConditionerConfig


class LutConditioner(nn.Module):
    def __init__(self, cfg: LutConditionerConfig, output_dim: int):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.n_bins + 1, cfg.dim)  # the last row: no value (never used here)
        self.output_proj = nn.Linear(cfg.dim, output_dim, bias=False)
        if cfg.learn_padding:  # what the reference uses for a missing value; kept so the file loads strictly
            self.learnt_padding = mx.zeros((1, 1, output_dim))

    def __call__(self, values: list[str]) -> mx.array:
        """One value per batch row -> [B, output_dim] float32."""
        rows = mx.array([self.cfg.index(v) for v in values])
        e = self.embed(rows).astype(mx.float32)
        return e @ self.output_proj.weight.astype(mx.float32).T


class ConditionProvider(nn.Module):
    """The LM's conditioners by name; `__call__` sums those the config fuses into the input."""

    def __init__(self, cfgs: tuple[LutConditionerConfig, ...], output_dim: int):
        super().__init__()
        self.conditioners = {c.name: LutConditioner(c, output_dim) for c in cfgs}

    def __call__(self, values: dict[str, list[str]]) -> mx.array:
        """{conditioner name: one value per batch row} -> the summed condition [B, output_dim] float32."""
        missing = sorted(set(self.conditioners) - set(values))
        if missing:
            raise ValueError(f"no value given for the conditioners {missing}")
        out = [c(values[name]) for name, c in self.conditioners.items()]
        total = out[0]
        for x in out[1:]:
            total = total + x
        return total
