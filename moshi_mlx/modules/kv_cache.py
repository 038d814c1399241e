"""RingKVCache: the only code that knows ring arithmetic.

A ring of exactly `capacity` steps, as the reference's streaming attention keeps: a conversation can
go on forever in constant memory. Entries are written in place (no per-step copy of the cache), and
each call returns which slots a query may attend to, following the reference's rules: a slot holds the
key of absolute position p; query position q attends to it when 0 <= q - p < capacity.

With a chunk of T > 1 steps the oldest of those the first query would see has already been overwritten
by the chunk itself, so it sees one key fewer than in batch mode; the reference behaves the same way,
and matching it is the point.
"""

from __future__ import annotations

import mlx.core as mx


class RingKVCache:
    """Keys and values of the last `capacity` steps for one attention layer.

    Args:
        batch: batch size.
        heads: number of key/value heads.
        capacity: steps kept (the attention context).
        head_dim: dimension of one head.
        dtype: storage dtype (the compute dtype of the layer).
    """

    def __init__(self, batch: int, heads: int, capacity: int, head_dim: int, dtype: mx.Dtype = mx.float32):
        if capacity <= 0:
            raise ValueError(f"RingKVCache capacity must be positive, got {capacity}")
        self.capacity = capacity
        self.keys = mx.zeros((batch, heads, capacity, head_dim), dtype)
        self.values = mx.zeros((batch, heads, capacity, head_dim), dtype)
        self.offset = 0  # absolute number of steps written = position of the next step

    def _write(self, dst: mx.array, src: mx.array) -> mx.array:
        t = src.shape[2]
        start = self.offset % self.capacity
        first = min(t, self.capacity - start)
        dst[:, :, start : start + first] = src[:, :, :first]
        if first < t:  # wraps around the end of the ring
            dst[:, :, : t - first] = src[:, :, first:]
        return dst

    def slot_positions(self, end: int) -> mx.array:
        """Absolute position held by each slot once `end` steps have been written; -1 for empty slots."""
        slots = mx.arange(self.capacity)
        last = end - 1
        delta = slots - (last % self.capacity)
        pos = mx.where(delta <= 0, last + delta, last + delta - self.capacity)
        return mx.where(slots < end, pos, -1)

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[mx.array, mx.array, mx.array]:
        """Append T steps and return (keys, values, mask).

        Args:
            k, v: [B, H, T, D], already rotated at positions offset .. offset + T - 1.

        Returns:
            keys, values: [B, H, capacity, D]; mask: bool [T, capacity], True where attention is allowed.
        """
        t = k.shape[2]
        if t > self.capacity:
            raise ValueError(f"a streaming chunk of {t} steps does not fit a cache of {self.capacity} steps")
        self.keys = self._write(self.keys, k)
        self.values = self._write(self.values, v)
        pos_k = self.slot_positions(self.offset + t)[None, :]           # [1, C]
        pos_q = (self.offset + mx.arange(t))[:, None]                    # [T, 1]
        delta = pos_q - pos_k
        mask = (pos_k >= 0) & (delta >= 0) & (delta < self.capacity)
        self.offset += t
        return self.keys, self.values, mask

    def state_arrays(self) -> list[mx.array]:
        """Arrays to evaluate when the caller syncs (mx.eval does not walk this object)."""
        return [self.keys, self.values]
