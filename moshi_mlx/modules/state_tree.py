"""Streaming states as flat lists of arrays, for compiled steps.

A compiled step takes and returns arrays only, and must not see a Python int that changes every call
(each new value would trace it again). States are nested tuples (NamedTuples included) of arrays, None
and RingKVCaches; `arrays_of` lists their arrays in a fixed order, `rebuild` puts such a list back into
the same structure, with every ring cache at the offset given (a traced int32 array inside the step, the
host's int outside).
"""

from __future__ import annotations

from typing import Any, TypeVar

import mlx.core as mx

from .kv_cache import Offset, RingKVCache

T = TypeVar("T")


def arrays_of(tree: Any) -> list[mx.array]:
    """The arrays of a state, depth first (offsets and None left out)."""
    if isinstance(tree, mx.array):
        return [tree]
    if isinstance(tree, RingKVCache):
        return tree.arrays()
    if isinstance(tree, tuple):
        return [a for item in tree for a in arrays_of(item)]
    return []


def rebuild(template: T, arrays: list[mx.array], offset: Offset) -> T:
    """`template`'s structure holding `arrays` (as `arrays_of` lists them); ring caches at `offset`."""
    it = iter(arrays)
    out = _rebuild(template, it, offset)
    if next(it, None) is not None:
        raise ValueError("more arrays than the state holds")
    return out


def _rebuild(node: Any, it, offset: Offset) -> Any:
    if isinstance(node, mx.array):
        return next(it)
    if isinstance(node, RingKVCache):
        return RingKVCache.from_arrays([next(it) for _ in node.arrays()], offset)
    if isinstance(node, tuple):
        items = [_rebuild(item, it, offset) for item in node]
        return type(node)._make(items) if hasattr(node, "_fields") else tuple(items)  # type: ignore[attr-defined]
    return node
