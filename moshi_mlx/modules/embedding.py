"""ScaledEmbedding: an embedding whose index -1 means "no input" and embeds to exactly zero.

The reference uses -1 (its `zero_token_id`) for a stream that gives the model nothing at a step; other
negative values are clamped to row 0. Quantizing must keep that rule, so the quantized variant has
its own class (a bare `nn.quantize` would turn this into a plain QuantizedEmbedding).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

ZERO_TOKEN = -1


def _masked(ids: mx.array, rows: mx.array) -> mx.array:
    return mask_zero_tokens(zero_tokens(ids), rows)


def zero_tokens(ids: mx.array) -> mx.array:
    """Where ids [...] say "no input": bool [..., 1], as `mask_zero_tokens` takes it."""
    return (ids == ZERO_TOKEN)[..., None]


def mask_zero_tokens(is_zero: mx.array, rows: mx.array) -> mx.array:
    """`rows` [..., dims] with those where `is_zero` [..., 1] holds set to exactly zero."""
    return mx.where(is_zero, mx.zeros((1,), rows.dtype), rows)


class ScaledEmbedding(nn.Embedding):
    """Token ids [...] -> [..., dims]; id -1 gives zeros."""

    def __call__(self, ids: mx.array) -> mx.array:
        return _masked(ids, self.rows(mx.maximum(ids, 0)))

    def rows(self, ids: mx.array) -> mx.array:
        """The rows of ids that are all >= 0 (no zero-token rule: a caller embedding many streams applies it
        once for all of them, see `Lm.embed`)."""
        return self.weight[ids]

    def to_quantized(self, group_size: int = 64, bits: int = 4, mode: str = "affine", **_: object):
        return QuantizedScaledEmbedding.from_embedding(self, group_size, bits, mode=mode)


class QuantizedScaledEmbedding(nn.QuantizedEmbedding):
    """ScaledEmbedding with affine-quantized rows (`weight`, `scales`, `biases`, as Kyutai's files)."""

    def __call__(self, ids: mx.array) -> mx.array:
        return _masked(ids, self.rows(mx.maximum(ids, 0)))

    def rows(self, ids: mx.array) -> mx.array:
        """As ScaledEmbedding.rows."""
        return super().__call__(ids)


_FLOAT_PARTS = ("weight",)
_QUANTIZED_PARTS = ("weight", "scales", "biases")


class StackedRows:
    """Several embedding tables (all ScaledEmbedding, or all QuantizedScaledEmbedding alike) stacked into one,
    each module's parameters becoming views of its rows: a step then looks up every stream's row in one gather
    (Moshi's 17 streams: 82 operations of a compiled step down to about 10). The modules keep their names and
    values; once any of their parameters is replaced (a cast, new weights), `valid` says so and the caller
    looks rows up table by table again. (An item assignment into a view changes the view, not the stack:
    replace the parameter instead.)"""

    def __init__(self, modules: list[nn.Module]):
        first = modules[0]
        self.quantized = isinstance(first, QuantizedScaledEmbedding)
        self._parts = _QUANTIZED_PARTS if self.quantized else _FLOAT_PARTS
        self._group_size, self._bits, self._mode = (
            (first.group_size, first.bits, first.mode or "affine") if self.quantized else (0, 0, "affine")
        )
        counts = [m["weight"].shape[0] for m in modules]
        self.offsets = [sum(counts[:i]) for i in range(len(counts))]
        self.tables = [mx.concatenate([m[p] for m in modules]) for p in self._parts]
        mx.eval(self.tables)
        self._views: list[list[mx.array]] = []
        for m, start, n in zip(modules, self.offsets, counts):
            views = [table[start : start + n] for table in self.tables]
            for p, view in zip(self._parts, views):
                m[p] = view
            self._views.append(views)

    @staticmethod
    def stackable(modules: list[nn.Module]) -> bool:
        """Whether `modules` are embeddings of one kind, width and dtype (and quantization)."""
        kinds = {type(m) for m in modules}
        if len(kinds) != 1 or kinds.pop() not in (ScaledEmbedding, QuantizedScaledEmbedding):
            return False
        first = modules[0]
        parts = _QUANTIZED_PARTS if isinstance(first, QuantizedScaledEmbedding) else _FLOAT_PARTS
        if any(p not in m for m in modules for p in parts):
            return False
        same = {(tuple(m[p].shape[1:]), m[p].dtype) for m in modules for p in parts[:1]}
        settings = {(getattr(m, "group_size", 0), getattr(m, "bits", 0), getattr(m, "mode", "")) for m in modules}
        return len(same) == 1 and len(settings) == 1

    def valid(self, modules: list[nn.Module]) -> bool:
        """Whether every module's parameters are still the views made here."""
        return len(modules) == len(self._views) and all(
            m[p] is view for m, views in zip(modules, self._views) for p, view in zip(self._parts, views)
        )

    def rows(self, ids: mx.array) -> mx.array:
        """ids [K, N] (>= 0; row k looks up module k's table) -> [K, N, dims]."""
        at = ids + mx.array(self.offsets, mx.int32)[:, None]
        if not self.quantized:
            return self.tables[0][at]
        weight, scales, biases = self.tables
        return mx.dequantize(
            weight[at],
            scales=scales[at],
            biases=biases[at],
            group_size=self._group_size,
            bits=self._bits,
            mode=self._mode,
        )
