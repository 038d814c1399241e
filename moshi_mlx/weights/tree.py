"""`mlx.utils.tree_flatten` typed as what it returns here: its stubs say list or dict, as a caller may pass a
dict to fill."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from mlx.utils import tree_flatten


def flatten(tree: Any, is_leaf: Callable[[Any], bool] | None = None) -> list[tuple[str, Any]]:
    """(dotted path, leaf) pairs of `tree`, in order."""
    return cast("list[tuple[str, Any]]", tree_flatten(tree, is_leaf=is_leaf))
