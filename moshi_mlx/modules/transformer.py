"""The reference's StreamingTransformer in MLX: used by Mimi, the temporal transformer and the depformer.

Parameter names match Kyutai's MLX release (`self_attn.in_proj`, `norm1`, `gating.linear_in`, ...), so
those files load without renaming. Batch mode (`state=None`) sees positions 0..T-1 with a causal mask
limited to `context`; streaming mode appends to caller-owned RingKVCaches.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..config import TransformerConfig
from .kv_cache import KV_BITS, FrameKVCache, Offset, RingKVCache, first_slots

_ACTIVATIONS: dict[str, Callable[[mx.array], mx.array]] = {
    "silu": nn.silu,
    "gelu": nn.gelu,  # exact (erf) GELU, as torch's F.gelu default
    "relu": nn.relu,
    "sigmoid": mx.sigmoid,
    "tanh": mx.tanh,
    "elu": nn.elu,
    "leaky_relu": nn.leaky_relu,
    "mish": nn.mish,
    "softsign": nn.softsign,
    "identity": lambda x: x,
}


Cache = RingKVCache | FrameKVCache


class TransformerState(NamedTuple):
    """Streaming state of one transformer stack: one cache per layer (rings, or the depformer's frame
    caches), all at the same offset."""

    caches: tuple[RingKVCache, ...] | tuple[FrameKVCache, ...]

    @property
    def offset(self) -> Offset:
        """Steps consumed so far (the RoPE position of the next step)."""
        return self.caches[0].offset

    def arrays(self) -> list[mx.array]:
        return [a for c in self.caches for a in c.arrays()]

    @classmethod
    def from_arrays(cls, arrays: list[mx.array], offset: Offset, layers: int) -> TransformerState:
        """The state of `layers` caches holding `arrays` (as `arrays()` lists them) at `offset`."""
        n = len(arrays) // layers
        return cls(tuple(RingKVCache.from_arrays(arrays[i * n : (i + 1) * n], offset) for i in range(layers)))


class RMSNorm(nn.Module):
    """RMSNorm; with `float32=True` it computes in float32 whatever the input dtype (`rms_norm_f32`)."""

    def __init__(self, dim: int, eps: float, float32: bool):
        super().__init__()
        self.weight = mx.ones((dim,))
        self.eps = eps
        self.float32 = float32

    def __call__(self, x: mx.array) -> mx.array:
        if not self.float32:
            return mx.fast.rms_norm(x, self.weight, self.eps)
        y = mx.fast.rms_norm(x.astype(mx.float32), self.weight.astype(mx.float32), self.eps)
        return y.astype(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm with weight and bias; `float32=True` computes in float32 (`layer_norm_f32`)."""

    def __init__(self, dim: int, eps: float, float32: bool):
        super().__init__(dim, eps=eps)
        self.float32 = float32

    def __call__(self, x: mx.array) -> mx.array:
        if not self.float32:
            return super().__call__(x)
        y = mx.fast.layer_norm(
            x.astype(mx.float32), self.weight.astype(mx.float32), self.bias.astype(mx.float32), self.eps
        )
        return y.astype(x.dtype)


def make_norm(kind: str, dim: int) -> LayerNorm | RMSNorm:
    if kind == "layer_norm":
        return LayerNorm(dim, 1e-5, float32=False)
    if kind == "layer_norm_f32":
        return LayerNorm(dim, 1e-8, float32=True)
    if kind == "rms_norm":
        return RMSNorm(dim, 1e-5, float32=False)
    return RMSNorm(dim, 1e-8, float32=True)  # rms_norm_f32 (the config validates the name)


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float):
        super().__init__()
        self.scale = mx.full((dim,), init)

    def __call__(self, x: mx.array) -> mx.array:
        return self.scale * x


HEAD_TABLE_STEPS = 2  # chunks of at most this many steps rotate q, k and v at once (`Transformer.rope`)


class RotaryTable(NamedTuple):
    """A chunk's rotation as two per-element factors of x [..., T, D] (interleaved pairs (x0, x1), ...):
    rotated = x * cos + swap(x) * sin, where swap exchanges each pair's two members and `sin` carries the
    sign (-sin on a pair's first member, +sin on its second).

    A table over heads ([3H, T, D], `rope_table(heads=H)`) rotates a step's q, k and v heads at once: the
    factors of v's heads are 1 and 0, which leave every finite value as it is (v * 1 + swap(v) * 0 = v)."""

    cos: mx.array  # [T, D] (or [3H, T, D]) float32: each pair's cosine, twice
    sin: mx.array  # the same shape: -sin, +sin


def rope_table(offset: int, steps: int, head_dim: int, max_period: float, heads: int | None = None) -> RotaryTable:
    """Rotation angles exactly as the reference forms them (float32 freqs times float32 positions);
    `heads`: a table over the q, k and v heads of that many heads each (see `RotaryTable`).

    The cosine and sine are taken on the host in float64 and rounded: MLX's float32 cos/sin drift from
    the correctly rounded values by up to ~1e-4 at position 3000, enough to flip close greedy choices.
    """
    half = head_dim // 2
    freqs = np.exp(np.arange(half, dtype=np.float32) * np.float32(-math.log(max_period) * 2 / head_dim))
    ts = np.float32(offset) + np.arange(steps, dtype=np.float32)
    angles = (ts[:, None] * freqs[None, :]).astype(np.float64)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    cos, sin = np.repeat(cos, 2, axis=-1), np.stack([-sin, sin], axis=-1).reshape(steps, -1)
    if heads is not None:  # q's and k's heads rotate; v's are left as they are
        cos = np.concatenate([np.broadcast_to(cos, (2 * heads, *cos.shape)), np.ones((heads, *cos.shape), np.float32)])
        sin = np.concatenate([np.broadcast_to(sin, (2 * heads, *sin.shape)), np.zeros((heads, *sin.shape), np.float32)])
    return RotaryTable(mx.array(cos), mx.array(sin))


def _pair_swap(shape: tuple[int, ...]) -> mx.array:
    """Indices along the last axis of an array of `shape` exchanging each interleaved pair (1, 0, 3, 2, ...),
    made whole on the host: one gather, no broadcast, in the step's graph."""
    swap = np.arange(shape[-1], dtype=np.int32).reshape(-1, 2)[:, ::-1].reshape(-1)
    return mx.array(np.ascontiguousarray(np.broadcast_to(swap, shape)))


def apply_rope(x: mx.array, table: RotaryTable) -> mx.array:
    """Rotate interleaved pairs (x0, x1), (x2, x3), ... of x [..., T, D], computing in float32.

    Written for few operations (a compiled step pays per operation): one gather and one fused elementwise
    operation. The values are the reference's: re cos - im sin = re cos + im (-sin) and re sin + im cos, each
    the same two products, added in IEEE arithmetic (exact sign flip, commutative sum)."""
    f = x.astype(mx.float32)
    swapped = mx.take_along_axis(f, _pair_swap(x.shape), axis=-1)
    return (f * table.cos + swapped * table.sin).astype(x.dtype)


def batch_mask(steps: int, context: int | None) -> mx.array:
    """Causal mask [T, T] for positions 0..T-1, limited to `context` steps when given."""
    pos = mx.arange(steps)
    delta = pos[:, None] - pos[None, :]
    mask = delta >= 0
    if context is not None:
        mask = mask & (delta < context)
    return mask


def quantized_attention(
    q: mx.array, k: tuple, v: tuple, mask: mx.array, scale: float, group_size: int, bits: int
) -> mx.array:
    """Attention of q [B, H, T, D] over keys and values stored quantized ((packed, scales, biases) each)."""
    dtype = k[1].dtype
    scores = mx.quantized_matmul((q * scale).astype(dtype), *k, transpose=True, group_size=group_size, bits=bits)
    scores = mx.where(mask, scores.astype(mx.float32), -mx.inf)
    weights = mx.softmax(scores, axis=-1).astype(dtype)
    return mx.quantized_matmul(weights, *v, transpose=False, group_size=group_size, bits=bits)


class Attention(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.head_dim = cfg.head_dim
        self.in_proj = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.out_proj = nn.Linear(cfg.d_model, cfg.d_model, bias=False)

    def __call__(
        self, x: mx.array, batch: int, rope: RotaryTable | None, cache: Cache | None, mask: mx.array | None
    ) -> tuple[mx.array, Cache | None]:
        """x [B * T, D] (rows batch-major) -> (output [B * T, D], the cache with this chunk written; None
        without a cache)."""
        y, cache = self.attend(x, batch, rope, cache, mask)
        return self.out_proj(y), cache

    def attend(
        self, x: mx.array, batch: int, rope: RotaryTable | None, cache: Cache | None, mask: mx.array | None
    ) -> tuple[mx.array, Cache | None]:
        """`__call__` up to the output projection: the heads' values as rows [B * T, D] in x's dtype."""
        b, t, h = batch, x.shape[0] // batch, self.num_heads
        # [B, 3H, T, Dh]: the heads of q, then k, then v (in_proj's rows), split along the heads without a
        # leading axis to squeeze away (fewer operations for a compiled step, the same values)
        qkv = self.in_proj(x)
        if t == 1:  # [B, 1, 3H, Dh] and [B, 3H, 1, Dh] are the same layout: a reshape alone, no transpose
            qkv = qkv.reshape(b, 3 * h, 1, self.head_dim)
        else:
            qkv = qkv.reshape(b, t, 3 * h, self.head_dim).transpose(0, 2, 1, 3)
        if rope is None:
            q, k, v = mx.split(qkv, 3, axis=1)
        elif rope.cos.ndim == 3:  # a table over the q, k and v heads [3H, T, Dh]: one rotation, one split
            q, k, v = mx.split(apply_rope(qkv, rope), 3, axis=1)
        else:
            qk, v = mx.split(qkv, [2 * h], axis=1)
            q, k = mx.split(apply_rope(qk, rope), 2, axis=1)  # queries and keys rotated in one go
        scale = 1.0 / math.sqrt(self.head_dim)
        if isinstance(cache, FrameKVCache):  # every key it holds is visible: no mask
            if cache.keys is None:  # the first step attends to its own key alone: softmax 1.0, the output is v
                return _rows(v.astype(x.dtype)), cache.update(k, v)
            cache = cache.update(k, v)
            assert cache.keys is not None and cache.values is not None
            k, v = cache.keys, cache.values
        elif cache is not None:  # `mask` is the ring's, computed once for all layers (RingKVCache.mask)
            cache = cache.update(k, v)
            k, v = cache.keys, cache.values
            assert mask is not None  # a ring's streaming step always has its mask
            if mask.shape[-1] < cache.capacity:  # the written part of a ring that has not wrapped yet
                k, v = first_slots(k, mask.shape[-1]), first_slots(v, mask.shape[-1])
            if isinstance(k, tuple):
                assert isinstance(v, tuple)  # a quantized cache
                y = quantized_attention(q, k, v, mask, scale, cache.group_size, KV_BITS)
                return _rows(y.astype(x.dtype)), cache
            assert not isinstance(v, tuple)
            # A cache stored narrower than the activations (bf16 under float32 compute: the quantized LM on
            # CPU) is attended in its own dtype: no float32 copy of the whole cache per step (3x faster).
            q = q.astype(k.dtype)
        y = mx.fast.scaled_dot_product_attention(q, k, v, scale=scale, mask=mask)
        return _rows(y.astype(x.dtype)), cache


def add_projection(x: mx.array, linear: nn.Module, h: mx.array) -> mx.array:
    """x + linear(h) for a bias-free projection: one addmm for a float Linear (or the layer's own `add_to`,
    as a CPU variant keeps), an addition after the matmul otherwise (quantized weights)."""
    add_to = getattr(linear, "add_to", None)
    if add_to is not None:
        return add_to(x, h)
    if type(linear) is nn.Linear and "bias" not in linear:
        return mx.addmm(x, h, linear.weight.T)
    return x + linear(h)


def _rows(y: mx.array) -> mx.array:
    """Attention's output [B, H, T, Dh] as the layers' rows [B * T, H * Dh] (a reshape alone for one step)."""
    b, h, t, d = y.shape
    return y.reshape(b, h * d) if t == 1 else y.transpose(0, 2, 1, 3).reshape(b * t, h * d)


class Gating(nn.Module):
    """Gated feed-forward: act(x W_a) * (x W_b) -> linear_out, W_a and W_b fused in linear_in."""

    def __init__(self, dim: int, hidden: int, activation: str):
        super().__init__()
        self.linear_in = nn.Linear(dim, 2 * hidden, bias=False)
        self.linear_out = nn.Linear(hidden, dim, bias=False)
        self._act = _ACTIVATIONS[activation]

    def __call__(self, x: mx.array) -> mx.array:
        return self.linear_out(self.hidden(x))

    def hidden(self, x: mx.array) -> mx.array:
        """act(x W_a) * (x W_b): what linear_out projects."""
        a, g = mx.split(self.linear_in(x), 2, axis=-1)
        return self._act(a) * g


class TransformerLayer(nn.Module):
    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.self_attn = Attention(cfg)
        self.norm1 = make_norm(cfg.norm, cfg.d_model)
        self.norm2 = make_norm(cfg.norm, cfg.d_model)
        if cfg.gating == "none":
            self.mlp_kind = "mlp"
            self.linear1 = nn.Linear(cfg.d_model, cfg.dim_feedforward, bias=False)
            self.linear2 = nn.Linear(cfg.dim_feedforward, cfg.d_model, bias=False)
        else:
            self.mlp_kind = "gating"
            self.gating = Gating(cfg.d_model, cfg.gating_hidden, cfg.gating)
        if cfg.layer_scale is not None:
            self.layer_scale_1 = LayerScale(cfg.d_model, cfg.layer_scale)
            self.layer_scale_2 = LayerScale(cfg.d_model, cfg.layer_scale)

    def _feed_forward(self, x: mx.array) -> tuple[nn.Module, mx.array]:
        """(the feed-forward's output projection, what it projects)."""
        if self.mlp_kind == "gating":
            return self.gating.linear_out, self.gating.hidden(x)
        return self.linear2, nn.gelu(self.linear1(x))

    def __call__(
        self, x: mx.array, batch: int, rope: RotaryTable | None, cache: Cache | None, mask: mx.array | None
    ) -> tuple[mx.array, Cache | None]:
        """x [B * T, D]: the layers see 2-D activations (a 3-D matmul adds two reshaping operations). Without
        layer scales each residual sum is one addmm with its output projection (`add_projection`)."""
        attended, cache = self.self_attn.attend(self.norm1(x), batch, rope, cache, mask)
        x = self._residual(x, self.self_attn.out_proj, attended, "layer_scale_1")
        proj, hidden = self._feed_forward(self.norm2(x))
        return self._residual(x, proj, hidden, "layer_scale_2"), cache

    def _residual(self, x: mx.array, proj: nn.Module, h: mx.array, scale: str) -> mx.array:
        if scale in self:
            return x + self[scale](proj(h))
        return add_projection(x, proj, h)


class Transformer(nn.Module):
    """A stack of layers; batch mode without a state, streaming mode with one."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = [TransformerLayer(cfg) for _ in range(cfg.num_layers)]

    def init_state(
        self, batch: int = 1, dtype: mx.Dtype | None = None, kv_bits: int | None = None, frame: bool = False
    ) -> TransformerState:
        """Fresh streaming state; the cache dtype follows the layers' weights unless given; `kv_bits`
        stores the caches quantized (see RingKVCache); `frame`: FrameKVCaches, for a stream of at most
        `context` one-step updates (the depformer's frame)."""
        if self.cfg.context is None:
            raise ValueError("streaming needs a finite attention context (config `context`)")
        if dtype is None:
            dtype = self.layers[0].norm1.weight.dtype if self.layers else mx.float32
            if dtype not in (mx.float32, mx.float16, mx.bfloat16):
                dtype = mx.float32
        heads, head_dim = self.cfg.num_heads, self.cfg.head_dim
        if frame:
            return TransformerState(tuple(FrameKVCache(None, None, 0) for _ in self.layers))
        return TransformerState(
            tuple(RingKVCache.empty(batch, heads, self.cfg.context, head_dim, dtype, kv_bits) for _ in self.layers)
        )

    def rope(self, offset: int, steps: int) -> RotaryTable | None:
        """The rotation table of positions offset .. offset + steps - 1 (None without RoPE); for a streaming
        chunk of a few steps (the LM's one, Mimi's two), a table over the heads of q, k and v (one rotation
        and one split per layer, see `RotaryTable`); a longer chunk's would be three times as large as q."""
        if self.cfg.positional_embedding != "rope":
            return None
        heads = self.cfg.num_heads if steps <= HEAD_TABLE_STEPS else None
        return rope_table(offset, steps, self.cfg.head_dim, self.cfg.max_period, heads)

    def __call__(self, x: mx.array) -> mx.array:
        """Batch mode: x [B, T, D] at positions 0..T-1 -> [B, T, D] in x's dtype."""
        t = x.shape[1]
        mask = None
        if self.cfg.causal or self.cfg.context is not None:
            mask = batch_mask(t, self.cfg.context if self.cfg.causal else None)
        b, _, d = x.shape
        out, rope = x.reshape(b * t, d), self.rope(0, t)
        for layer in self.layers:
            out, _ = layer(out, b, rope, None, mask)
        return out.reshape(b, t, d).astype(x.dtype)

    def step(
        self, x: mx.array, state: TransformerState, rope: RotaryTable | None = None, window: int | None = None
    ) -> tuple[mx.array, TransformerState]:
        """Streaming: the next chunk x [B, T, D] -> (output [B, T, D] in x's dtype, the next state).

        `rope`: the rotation table of this chunk's positions, required when the state's offset is a traced
        array (a compiled step: the table is made on the host, see `rope_table`); else made here.
        `window`: attend over the first `window` slots only, which must hold every position written so far
        (the ring has not wrapped: see `RingKVCache.window`); the slots left out are masked anyway.
        """
        b, t, d = x.shape
        out, state = self.step_rows(x.reshape(b * t, d), b, state, rope, window)
        return out.reshape(b, t, d), state

    def step_rows(
        self,
        x: mx.array,
        batch: int,
        state: TransformerState,
        rope: RotaryTable | None = None,
        window: int | None = None,
    ) -> tuple[mx.array, TransformerState]:
        """`step` on the rows [B * T, D] the layers compute on (batch-major): for a caller whose activations
        are 2-D already (the depformer), no reshaping around the stack."""
        t = x.shape[0] // batch
        if rope is None and self.cfg.positional_embedding == "rope":
            if not isinstance(state.offset, int):
                raise ValueError("a traced streaming offset needs the chunk's rotation table (rope=...)")
            rope = self.rope(state.offset, t)
        mask = state.caches[0].mask(t)  # every layer's cache is at the same offset (a frame cache: None)
        if window is not None and mask is not None:
            mask = mask[:, :window]  # its width tells each layer how many slots to read
        out, caches = x, []
        for layer, cache in zip(self.layers, state.caches):
            out, cache = layer(out, batch, rope, cache, mask)
            assert cache is not None
            caches.append(cache)
        return out.astype(x.dtype), TransformerState(tuple(caches))


class ProjectedTransformer(nn.Module):
    """Transformer with optional input/output projections (Mimi's encoder and decoder transformers)."""

    def __init__(self, cfg: TransformerConfig, input_dim: int, output_dims: tuple[int, ...]):
        super().__init__()
        self.transformer = Transformer(cfg)
        if input_dim != cfg.d_model:
            self.input_proj = nn.Linear(input_dim, cfg.d_model, bias=False)
        self.output_projs = [
            nn.Identity() if d == cfg.d_model else nn.Linear(cfg.d_model, d, bias=False) for d in output_dims
        ]

    def init_state(self, batch: int = 1, dtype: mx.Dtype | None = None) -> TransformerState:
        return self.transformer.init_state(batch, dtype)

    def __call__(self, x: mx.array) -> list[mx.array]:
        """Batch mode: x [B, T, input_dim] -> one [B, T, d] per output dim."""
        if "input_proj" in self:
            x = self.input_proj(x)
        z = self.transformer(x)
        return [proj(z) for proj in self.output_projs]

    def step(self, x: mx.array, state: TransformerState) -> tuple[list[mx.array], TransformerState]:
        """Streaming: the next chunk -> (one [B, T, d] per output dim, the next state)."""
        z, state = self.transformer.step(self.input_step(x), state)
        return self.output_step(z), state

    def input_step(self, x: mx.array) -> mx.array:
        """The input projection alone (a caller streaming the inner transformer itself)."""
        return self.input_proj(x) if "input_proj" in self else x

    def output_step(self, z: mx.array) -> list[mx.array]:
        """The output projections alone."""
        return [proj(z) for proj in self.output_projs]
