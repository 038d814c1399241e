"""Column-blocked weights: fast CPU matmuls with few rows (streaming: 1 to 16 rows per frame).

MLX's CPU matmul is one sgemm call. OpenBLAS's sgemm packs the whole weight before multiplying, which
for a product with only a few rows costs ~3x the time of just reading the weight (Mimi streaming is
mostly such products: ~300 MB of weights read per 80 ms frame). Products with rows * K * N <= 1e6 take
OpenBLAS's small-matrix path instead (Skylake-X and later), which reads the operands in place. Storing a
[K, N] weight as N / b contiguous column blocks [N / b, K, b] turns x @ W into one batched matmul of
such small products: measured 2-3x faster for 1-16 rows, neutral with the reference BLAS, ~10% slower
for hundreds of rows (batch mode). Only worth it on the CPU; results equal the plain product to
float32 rounding (another summation order).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..modules.conv import StreamingConv1d, StreamingConvTranspose1d, _ConvBase

SMALL_GEMM_LIMIT = 1_000_000  # rows * K * N at or under which OpenBLAS multiplies without packing
_BLOCK_SIZES = (64, 32, 16)  # 64 measured best where allowed; narrower blocks pay more per call


def choose_block(rows: int, k: int, n: int) -> int | None:
    """Column block size for a [rows, k] @ [k, n] product, or None to keep the plain layout."""
    if mx.default_device() != mx.cpu or rows * k * n <= SMALL_GEMM_LIMIT:
        return None
    for b in _BLOCK_SIZES:
        if b < n and n % b == 0 and rows * k * b <= SMALL_GEMM_LIMIT:
            return b
    return None


def to_blocks(w_kn: mx.array, block: int) -> mx.array:
    """[K, N] -> contiguous [N / block, K, block]: block j holds columns j * block ... (j + 1) * block - 1."""
    k, n = w_kn.shape
    return mx.contiguous(w_kn.reshape(k, n // block, block).transpose(1, 0, 2))


def from_blocks(blocks: mx.array) -> mx.array:
    """Inverse of `to_blocks` ([K, N]); lazy, so it costs nothing unless evaluated."""
    nb, k, b = blocks.shape
    return blocks.transpose(1, 0, 2).reshape(k, nb * b)


def blocked_matmul(x: mx.array, blocks: mx.array) -> mx.array:
    """x [..., K] @ the [K, N] weight held as `blocks` -> [..., N]."""
    nb, k, b = blocks.shape
    lead = x.shape[:-1]
    y = x.reshape(-1, k) @ blocks  # [N / b, rows, b]
    return y.transpose(1, 0, 2).reshape(*lead, nb * b)


class BlockedLinear(nn.Module):
    """An nn.Linear (y = x W^T + b) whose weight is stored column-blocked for `rows`-row inputs.

    `weight` stays a parameter of the original [out, in] shape, as a lazy view of the blocks (no second
    copy unless something evaluates it). If it is replaced later, the plain weight is used again.
    """

    def __init__(self, linear: nn.Linear, block: int):
        super().__init__()
        self._blocks = to_blocks(linear.weight.T, block)  # [out / block, in, block]
        self.weight = from_blocks(self._blocks).T
        self._view = self.weight
        if "bias" in linear:
            self.bias = linear.bias
        mx.eval(self._blocks)

    @classmethod
    def maybe(cls, linear: nn.Linear, rows: int) -> nn.Module:
        """`linear` itself, or a BlockedLinear if blocking speeds up its products with `rows` rows."""
        out_dim, in_dim = linear.weight.shape
        block = choose_block(rows, in_dim, out_dim)
        return linear if block is None else cls(linear, block)

    def __call__(self, x: mx.array) -> mx.array:
        y = blocked_matmul(x, self._blocks) if self.weight is self._view else x @ self.weight.T
        return y + self.bias if "bias" in self else y


class _BlockedConv(_ConvBase):
    """Mixin for the two streaming convolutions: their [K, N] matmul weight held column-blocked.

    As in BlockedLinear, `weight` keeps its shape as a lazy view of the blocks, and if it is replaced
    later (load_weights, set_dtype) the plain weight is used again.
    """

    _blocks: mx.array
    _view: mx.array

    @classmethod
    def like(cls, conv, block: int):
        """A copy of `conv` (same parameters and settings, no new random weights) holding blocks of `block`."""
        new = cls.__new__(cls)
        dict.update(new, conv)  # parameters
        new.__dict__.update(conv.__dict__)  # settings: channels, kernel, stride, ...
        new._blocks = to_blocks(new._weight_kn(), block)
        new.weight = from_blocks(new._blocks).reshape(conv.weight.shape)
        new._view = new.weight
        mx.eval(new._blocks)
        return new

    def _matmul(self, x: mx.array) -> mx.array:
        if self.weight is self._view:
            return blocked_matmul(x, self._blocks)
        return super()._matmul(x)


class BlockedConv1d(_BlockedConv, StreamingConv1d):
    """StreamingConv1d whose matmul weight is column-blocked."""


class BlockedConvTranspose1d(_BlockedConv, StreamingConvTranspose1d):
    """StreamingConvTranspose1d whose matmul weight is column-blocked."""


def blocked_variant(module: nn.Module, rows: int) -> nn.Module:
    """`module`'s column-blocked variant for inputs of `rows` rows (a float Linear or a non-grouped
    streaming convolution), or `module` itself where blocking would not speed its products up."""
    if type(module) is nn.Linear:
        return BlockedLinear.maybe(module, rows)
    kinds = {StreamingConv1d: BlockedConv1d, StreamingConvTranspose1d: BlockedConvTranspose1d}
    if type(module) in kinds and isinstance(module, _ConvBase) and module.groups == 1:
        block = choose_block(rows, *module._weight_kn().shape)
        if block is not None:
            return kinds[type(module)].like(module, block)
    return module
