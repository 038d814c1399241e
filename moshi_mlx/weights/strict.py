"""Strict loading: every parameter set, every tensor consumed, or a CheckpointError naming them."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten, tree_unflatten

from ..errors import CheckpointError, Setting

_MAX_LISTED = 8  # names shown per kind of mismatch (the error is one line)


def _floating(dtype: mx.Dtype) -> bool:
    return mx.issubdtype(dtype, mx.floating)


def _name(dtype: mx.Dtype) -> str:
    return str(dtype).removeprefix("mlx.core.")


def _listing(title: str, items: list[str]) -> str:
    shown = items[:_MAX_LISTED]
    more = f" and {len(items) - len(shown)} more" if len(items) > len(shown) else ""
    return f"{title} ({len(items)}): " + ", ".join(shown) + more


def check_tensors_match(
    model: nn.Module,
    weights: dict[str, mx.array],
    source: str,
    advice: str = "",
    setting: Setting | None = Setting.CONFIG,
) -> None:
    """Raise CheckpointError (hinting at `setting`) listing missing, unexpected, mis-shaped and mistyped tensors.

    Mistyped: integers where the model holds floats (an int32 weight would load, be cast and silently
    change the output), or floats where it holds integers (packed quantized weights).
    """
    params = dict(tree_flatten(model.parameters()))
    expected = {k: v.shape for k, v in params.items()}
    missing = sorted(k for k in expected if k not in weights)
    extra = sorted(k for k in weights if k not in expected)
    misshaped = sorted(
        f"{k} (file {tuple(weights[k].shape)}, model {tuple(expected[k])})"
        for k in expected
        if k in weights and tuple(weights[k].shape) != tuple(expected[k])
    )
    mistyped = sorted(
        f"{k} (file {_name(weights[k].dtype)}, model {_name(params[k].dtype)})"
        for k in expected
        if k in weights and _floating(weights[k].dtype) != _floating(params[k].dtype)
    )
    if not (missing or extra or misshaped or mistyped):
        return
    found = [
        _listing(title, items)
        for title, items in (
            ("missing tensors", missing),
            ("unexpected tensors", extra),
            ("tensors of the wrong shape", misshaped),
            ("tensors of the wrong type (integer where float belongs, or the reverse)", mistyped),
        )
        if items
    ]
    advice = advice or "Check that the weights and the config belong to the same model."
    raise CheckpointError(f"{source} does not fit the model configuration: {'; '.join(found)}. {advice}", hint=setting)


def load_strict(
    model: nn.Module,
    weights: dict[str, mx.array],
    source: str,
    advice: str = "",
    setting: Setting | None = Setting.CONFIG,
) -> None:
    """Set every parameter of `model` from `weights` (names already in our layout)."""
    check_tensors_match(model, weights, source, advice, setting)
    model.update(tree_unflatten(list(weights.items())))
