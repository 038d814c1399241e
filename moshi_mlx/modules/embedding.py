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
