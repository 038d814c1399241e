"""Strict loading: every parameter set, every tensor consumed, or a CheckpointError naming them."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..errors import CheckpointError

_MAX_LISTED = 12


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f"\n    ... and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"  {title} ({len(items)}):\n" + "\n".join(f"    {s}" for s in shown) + more


def check_fits(model: nn.Module, weights: dict[str, mx.array], source: str, hint: str = "") -> None:
    """Raise CheckpointError listing missing, unexpected and mis-shaped tensors."""
    expected = {k: v.shape for k, v in tree_flatten(model.parameters())}
    missing = sorted(k for k in expected if k not in weights)
    extra = sorted(k for k in weights if k not in expected)
    misshaped = sorted(
        f"{k}: file {tuple(weights[k].shape)}, model {tuple(expected[k])}"
        for k in expected
        if k in weights and tuple(weights[k].shape) != tuple(expected[k])
    )
    if not (missing or extra or misshaped):
        return
    parts = [f"{source} does not fit the model configuration:"]
    if missing:
        parts.append(_listing("missing tensors", missing))
    if extra:
        parts.append(_listing("unexpected tensors", extra))
    if misshaped:
        parts.append(_listing("tensors of the wrong shape", misshaped))
    parts.append(hint or "Check that the weights and the config (--config) belong to the same model.")
    raise CheckpointError("\n".join(parts))


def load_strict(model: nn.Module, weights: dict[str, mx.array], source: str, hint: str = "") -> None:
    """Set every parameter of `model` from `weights` (names already in our layout)."""
    check_fits(model, weights, source, hint)
    model.update(tree_unflatten(list(weights.items())))
