"""RingKVCache: the only code that knows ring arithmetic.

A ring of exactly `capacity` steps, as the reference's streaming attention keeps: a conversation can
go on forever in constant memory. A cache is a value: `update` returns a new cache and leaves the one it
was given unchanged (a state kept to replay a step stays valid). MLX reuses the old buffer for the new
one when nothing else holds it, so the loop that drops its old state writes in place, without a copy.

Each call says which slots a query may attend to, following the reference's rules: a slot holds the key
of absolute position p; query position q attends to it when 0 <= q - p < capacity.

`offset` (steps written so far) is a Python int, or a scalar int32 mx.array inside a compiled step, where
a changing int would retrace the step every call; the arithmetic is the same for both.

With a chunk of T > 1 steps the oldest of those the first query would see has already been overwritten
by the chunk itself, so it sees one key fewer than in batch mode; the reference behaves the same way,
and matching it is the point.

With `bits=8` the cache stores keys and values MLX-affine-quantized along the head dimension
(packed weights, scales, biases, as `mx.quantize` makes them; scales and biases in `dtype`): with float32
scales an 8-bit cache takes 1.125 bytes per value instead of 2 for bfloat16, at the cost of ~1 % error in
the attention scores. Off by default.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import numpy as np

Stored = mx.array | tuple[mx.array, mx.array, mx.array]  # plain, or (packed, scales, biases) at 8 bits
Offset = int | mx.array

KV_BITS = 8  # the only quantized width offered: 4 bits fell to 0.82 (text) / 0.70 (audio) greedy agreement


def kv_group_size(head_dim: int) -> int:
    """Quantization group along the head dimension: 64 where it divides it (Moshi 7B: 128), else 32."""
    return 64 if head_dim % 64 == 0 else 32


class RingKVCache(NamedTuple):
    """Keys and values of the last `capacity` steps for one attention layer: [B, H, capacity, D] each, or
    (packed, scales, biases) at 8 bits."""

    keys: Stored
    values: Stored
    offset: Offset  # steps written so far = absolute position of the next step

    @classmethod
    def empty(
        cls,
        batch: int,
        heads: int,
        capacity: int,
        head_dim: int,
        dtype: mx.Dtype = mx.float32,
        bits: int | None = None,
    ) -> RingKVCache:
        """A cache with nothing written; `dtype` is the storage dtype (of the scales at 8 bits)."""
        if capacity <= 0:
            raise ValueError(f"RingKVCache capacity must be positive, got {capacity}")
        if bits is not None and (bits != KV_BITS or head_dim % kv_group_size(head_dim)):
            raise ValueError(
                f"a quantized KV cache needs {KV_BITS} bits and a head dimension divisible by 32; "
                f"got {bits} bits, head dimension {head_dim}"
            )
        shape = (batch, heads, capacity, head_dim)
        return cls(_zeros(shape, dtype, bits), _zeros(shape, dtype, bits), 0)

    # ---- what the arrays say ----

    @property
    def capacity(self) -> int:
        return _lead(self.keys).shape[2]

    @property
    def bits(self) -> int | None:
        return KV_BITS if isinstance(self.keys, tuple) else None

    @property
    def dtype(self) -> mx.Dtype:
        """Storage dtype (of the scales and biases at 8 bits)."""
        return self.keys[1].dtype if isinstance(self.keys, tuple) else self.keys.dtype

    @property
    def group_size(self) -> int:
        if not isinstance(self.keys, tuple):
            raise ValueError("an unquantized cache has no quantization group")
        packed, scales, _ = self.keys
        return packed.shape[-1] * 32 // KV_BITS // scales.shape[-1]

    # ---- ring arithmetic ----

    def window(self, t: int, bucket: int) -> int | None:
        """Slots the next `t` steps need to attend over while the ring has not wrapped: the written ones,
        rounded up to a multiple of `bucket` (few distinct shapes, each a compiled step's trace); None once
        every slot is needed. Attending over them gives the full masked attention's values."""
        offset = self.offset
        assert isinstance(offset, int)  # a host decision: the window's width is a shape
        needed = -(-(offset + t) // bucket) * bucket
        return needed if needed < self.capacity else None

    def slot_positions(self, end: Offset) -> mx.array:
        """Absolute position held by each slot once `end` steps have been written; -1 for empty slots."""
        return _slot_positions(mx, self.capacity, end)

    def mask(self, t: int) -> mx.array:
        """Which slots the next `t` steps may attend to once they are written: bool [T, capacity].

        It depends only on the offset and capacity, so caches that advance together (the layers of one
        transformer) share one mask. With an int offset it is made on the host: a constant of a compiled
        step (the depformer's), not operations evaluated at every call.
        """
        self._check_chunk(t)
        if isinstance(self.offset, int):
            return mx.array(_mask(np, self.capacity, self.offset, t))
        return _mask(mx, self.capacity, self.offset, t)

    def update(self, k: mx.array, v: mx.array) -> RingKVCache:
        """The cache with T more steps (k, v: [B, H, T, D], rotated at positions offset .. offset + T - 1)."""
        self._check_chunk(k.shape[2])
        keys = _map(self.keys, self._store(k), self._write)
        values = _map(self.values, self._store(v), self._write)
        return RingKVCache(keys, values, self.offset + k.shape[2])

    def update_and_fetch(self, k: mx.array, v: mx.array) -> tuple[RingKVCache, Stored, Stored, mx.array]:
        """`mask` for these T steps, then `update`: (new cache, its keys, its values, mask)."""
        mask = self.mask(k.shape[2])
        new = self.update(k, v)
        return new, new.keys, new.values, mask

    def arrays(self) -> list[mx.array]:
        """The stored arrays (what an evaluation must reach; mx.eval does not walk this object's offset)."""
        return [a for x in (self.keys, self.values) for a in (x if isinstance(x, tuple) else (x,))]

    @classmethod
    def from_arrays(cls, arrays: list[mx.array], offset: Offset) -> RingKVCache:
        """The cache holding `arrays` (as `arrays()` lists them: 2 plain, 6 quantized) at `offset`."""
        if len(arrays) == 2:
            return cls(arrays[0], arrays[1], offset)
        k0, k1, k2, v0, v1, v2 = arrays
        return cls((k0, k1, k2), (v0, v1, v2), offset)

    # ---- internals ----

    def _check_chunk(self, t: int) -> None:
        if t > self.capacity:
            raise ValueError(f"a streaming chunk of {t} steps does not fit a cache of {self.capacity} steps")

    def _store(self, x: mx.array) -> Stored:
        x = x.astype(self.dtype)
        if self.bits is None:
            return x
        packed, scales, biases = mx.quantize(x, group_size=self.group_size, bits=KV_BITS)
        return packed, scales, biases

    def _write(self, dst: mx.array, src: mx.array) -> mx.array:
        t, capacity = src.shape[2], dst.shape[2]
        if isinstance(self.offset, int):
            start = self.offset % capacity
            first = min(t, capacity - start)
            dst = mx.slice_update(dst, src[:, :, :first], mx.array([start]), axes=(2,))
            if first < t:  # wraps around the end of the ring
                dst = mx.slice_update(dst, src[:, :, first:], mx.array([0]), axes=(2,))
            return dst
        if t == 1:  # a traced offset: one step never straddles the end
            return mx.slice_update(dst, src, (self.offset % capacity).reshape(1), axes=(2,))
        slots = (self.offset + mx.arange(t)) % capacity
        index = mx.broadcast_to(slots[None, None, :, None], src.shape).astype(mx.int32)
        return mx.put_along_axis(dst, index, src, axis=2)


class FrameKVCache(NamedTuple):
    """Keys and values of a stream that never outgrows its context within its life: the depformer's dep_q
    codebooks of one frame (its context is dep_q). Each one-step update appends; every stored key is
    visible to the next query, so attention needs no mask, reads no unwritten slot and no ring arithmetic
    runs (3 operations fewer per layer and codebook than a RingKVCache, where a compiled step pays per
    operation). The same attention values, up to the order in which a softmax sums its terms."""

    keys: mx.array | None  # [B, H, offset, D]; None before the first step
    values: mx.array | None
    offset: int

    def mask(self, t: int) -> None:
        """No mask: a one-step query sees every key stored so far, its own included."""
        if t != 1:
            raise ValueError(f"a frame cache takes one step at a time, got a chunk of {t}")

    def update(self, k: mx.array, v: mx.array) -> FrameKVCache:
        """The cache with one more step (k, v: [B, H, 1, D])."""
        if self.keys is None or self.values is None:
            return FrameKVCache(k, v, self.offset + 1)
        keys = mx.concatenate([self.keys, k], axis=2)
        return FrameKVCache(keys, mx.concatenate([self.values, v], axis=2), self.offset + 1)

    def arrays(self) -> list[mx.array]:
        return [] if self.keys is None or self.values is None else [self.keys, self.values]


def _slot_positions(xp, capacity: int, end: Offset):
    """RingKVCache.slot_positions in numpy (xp = np, an int end) or MLX (xp = mx)."""
    slots = xp.arange(capacity)
    last = end - 1
    delta = slots - (last % capacity)
    pos = xp.where(delta <= 0, last + delta, last + delta - capacity)
    return xp.where(slots < end, pos, -1)


def _mask(xp, capacity: int, offset: Offset, t: int):
    """RingKVCache.mask in numpy or MLX, as `_slot_positions`."""
    pos_k = _slot_positions(xp, capacity, offset + t)[None, :]  # [1, C]
    pos_q = (offset + xp.arange(t))[:, None]  # [T, 1]
    delta = pos_q - pos_k
    return (pos_k >= 0) & (delta >= 0) & (delta < capacity)


def first_slots(x: Stored, n: int) -> Stored:
    """The first `n` slots of stored keys or values (all three arrays of a quantized cache)."""
    if isinstance(x, tuple):
        a, b, c = (y[:, :, :n] for y in x)
        return a, b, c
    return x[:, :, :n]


def _zeros(shape: tuple[int, ...], dtype: mx.Dtype, bits: int | None) -> Stored:
    if bits is None:
        return mx.zeros(shape, dtype)
    *lead, d = shape
    group = kv_group_size(d)
    return (
        mx.zeros((*lead, d * bits // 32), mx.uint32),
        mx.zeros((*lead, d // group), dtype),
        mx.zeros((*lead, d // group), dtype),
    )


def _lead(x: Stored) -> mx.array:
    return x[0] if isinstance(x, tuple) else x


def _map(dst: Stored, src: Stored, fn) -> Stored:
    if isinstance(dst, tuple):  # quantized: packed weights, scales and biases alike
        assert isinstance(src, tuple)
        a, b, c = (fn(d, s) for d, s in zip(dst, src))
        return a, b, c
    assert not isinstance(src, tuple)
    return fn(dst, src)
