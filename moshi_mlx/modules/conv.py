"""Causal streaming convolutions, channels-last ([B, T, C]), as the reference's StreamingConv1d and
StreamingConvTranspose1d compute them.

Batch mode is streaming mode started from a fresh state, exactly as in the reference, so the two agree
by construction. The arithmetic is unfold + one matmul (MLX's CPU conv1d is a naive loop); depthwise
convolutions are K multiply-adds. Weights are stored ready for that matmul, with the output channels
last and contiguous (a transposed operand makes the CPU BLAS ~2.4x slower):
  convolution            [K, C_in / groups, C_out]
  transposed convolution [C_in / groups, K, C_out]
Only groups == 1 and depthwise (groups == C_in == C_out) exist in Mimi, and only those are supported.
"""

from __future__ import annotations

from typing import NamedTuple

import mlx.core as mx
import mlx.nn as nn


class ConvState(NamedTuple):
    prev: mx.array  # [B, left_context, C_in]: the input tail the next chunk's first outputs still need
    first: mx.array  # [B] bool: nothing seen yet (replicate padding copies the first sample then)


class ConvTrState(NamedTuple):
    partial: mx.array  # [B, K - S, C_out]: overlap of the last chunk's outputs with the next chunk's (no bias)


def _check_groups(c_in: int, c_out: int, groups: int) -> None:
    if groups != 1 and not groups == c_in == c_out:
        raise ValueError(
            f"only groups=1 or depthwise (groups = channels) are supported, got {groups} for {c_in}->{c_out} channels"
        )


def _check_input(x: mx.array, channels: int, multiple: int, what: str) -> None:
    if x.ndim != 3 or x.shape[2] != channels:
        raise ValueError(f"{what} expects [B, T, {channels}] (channels last), got {tuple(x.shape)}")
    if x.shape[1] == 0 or x.shape[1] % multiple:
        raise ValueError(f"{what}: length {x.shape[1]} must be a positive multiple of the stride {multiple}")


class _ConvBase(nn.Module):
    """What both convolutions share: their weight as one [K, N] matmul operand."""

    in_channels: int
    out_channels: int
    groups: int
    weight: mx.array

    def _weight_kn(self) -> mx.array:
        raise NotImplementedError

    def _matmul(self, x: mx.array) -> mx.array:
        """x [..., K] @ the weight as a [K, N] matrix."""
        return x @ self._weight_kn()


class StreamingConv1d(_ConvBase):
    """Causal 1-D convolution: left context kept in a ConvState, output length T / stride.

    Args:
        in_channels, out_channels, kernel_size, stride, dilation, groups: as torch.nn.Conv1d.
        bias: whether there is a bias.
        pad_mode: "constant" (zeros before the first sample) or "replicate" (copies of the first sample).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        bias: bool = True,
        pad_mode: str = "constant",
    ):
        super().__init__()
        if pad_mode not in ("constant", "replicate"):
            raise ValueError(f"pad_mode must be 'constant' or 'replicate', got {pad_mode!r}")
        _check_groups(in_channels, out_channels, groups)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.dilation, self.groups = kernel_size, stride, dilation, groups
        self.pad_mode = pad_mode
        scale = (1.0 / (in_channels // groups * kernel_size)) ** 0.5
        self.weight = mx.random.uniform(-scale, scale, (kernel_size, in_channels // groups, out_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))
        effective = (kernel_size - 1) * dilation + 1
        if effective < stride:
            raise ValueError(f"kernel {kernel_size} (dilation {dilation}) is shorter than the stride {stride}")
        self.left_context = effective - stride

    def init_state(self, batch: int = 1) -> ConvState:
        dtype = self.weight.dtype
        return ConvState(mx.zeros((batch, self.left_context, self.in_channels), dtype), mx.ones((batch,), mx.bool_))

    def __call__(self, x: mx.array) -> mx.array:
        """Batch mode: x [B, T, C_in] with T a multiple of the stride -> [B, T / stride, C_out]."""
        return self.step(x, self.init_state(x.shape[0]))[0]

    def step(self, x: mx.array, state: ConvState) -> tuple[mx.array, ConvState]:
        """Streaming: the next chunk x [B, T, C_in] (T a multiple of the stride) -> (y, new state)."""
        _check_input(x, self.in_channels, self.stride, "StreamingConv1d")
        prev = state.prev
        if self.pad_mode == "replicate" and self.left_context:
            prev = mx.where(state.first[:, None, None], x[:, :1], prev)
        padded = mx.concatenate([prev, x], axis=1) if self.left_context else x
        y = self._valid_conv(padded)
        tail = padded[:, padded.shape[1] - self.left_context :]
        return y, ConvState(tail, mx.zeros_like(state.first))

    def _valid_conv(self, x: mx.array) -> mx.array:
        """Unpadded convolution of x [B, T_in, C_in] -> [B, T_out, C_out]."""
        k, s, d = self.kernel_size, self.stride, self.dilation
        b, t_in, c = x.shape
        t_out = (t_in - (k - 1) * d - 1) // s + 1
        if self.groups > 1:  # depthwise: K multiply-adds
            y = None
            for j in range(k):
                tap = x[:, j * d : j * d + (t_out - 1) * s + 1 : s] * self.weight[j, 0]
                y = tap if y is None else y + tap
            assert y is not None  # k >= 1
        else:
            y = self._matmul(_unfold(x, k, s, d, t_out))
        if "bias" in self:
            y = y + self.bias
        return y

    def _weight_kn(self) -> mx.array:
        k, cin, cout = self.weight.shape
        return self.weight.reshape(k * cin, cout)


def _unfold(x: mx.array, k: int, s: int, d: int, t_out: int) -> mx.array:
    """[B, T_in, C] -> [B, T_out, K * C], row t holding taps t*s, t*s + d, ... (kernel-major, as the weight)."""
    b, t_in, c = x.shape
    if k == 1:
        return x[:, : (t_out - 1) * s + 1 : s]
    if d == 1 and s > 1 and k % s == 0 and t_in % s == 0:
        # Kernel = m whole strides: view the input as frames of s samples, concatenate m neighbours.
        frames = x.reshape(b, t_in // s, s * c)
        return mx.concatenate([frames[:, i : i + t_out] for i in range(k // s)], axis=-1)
    return mx.concatenate([x[:, j * d : j * d + (t_out - 1) * s + 1 : s] for j in range(k)], axis=-1)


class StreamingConvTranspose1d(_ConvBase):
    """Causal transposed convolution: T steps in, T * stride samples out; the K - stride samples that
    overlap the next chunk are carried in a ConvTrState (the reference trims them all on the right).

    Args:
        in_channels, out_channels, kernel_size, stride, groups: as torch.nn.ConvTranspose1d.
        bias: whether there is a bias.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = True,
    ):
        super().__init__()
        _check_groups(in_channels, out_channels, groups)
        if kernel_size < stride:
            raise ValueError(f"kernel {kernel_size} is shorter than the stride {stride}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.groups = kernel_size, stride, groups
        scale = (1.0 / (out_channels // groups * kernel_size)) ** 0.5
        self.weight = mx.random.uniform(-scale, scale, (in_channels // groups, kernel_size, out_channels))
        if bias:
            self.bias = mx.zeros((out_channels,))

    def init_state(self, batch: int = 1) -> ConvTrState:
        k, s = self.kernel_size, self.stride
        return ConvTrState(mx.zeros((batch, k - s, self.out_channels), self.weight.dtype))

    def __call__(self, x: mx.array) -> mx.array:
        """Batch mode: x [B, T, C_in] -> [B, T * stride, C_out]."""
        return self.step(x, self.init_state(x.shape[0]))[0]

    def step(self, x: mx.array, state: ConvTrState) -> tuple[mx.array, ConvTrState]:
        """Streaming: the next chunk x [B, T, C_in] -> (y [B, T * stride, C_out], new state)."""
        _check_input(x, self.in_channels, 1, "StreamingConvTranspose1d")
        k, s = self.kernel_size, self.stride
        n = x.shape[1] * s
        full = self._full(x)  # [B, (T - 1) * s + k, C_out], no bias
        if k > s:
            head = full[:, : k - s] + state.partial
            full = mx.concatenate([head, full[:, k - s :]], axis=1)
        y = full[:, :n]
        if "bias" in self:
            y = y + self.bias
        return y, ConvTrState(full[:, n:])

    def _full(self, x: mx.array) -> mx.array:
        k, s = self.kernel_size, self.stride
        b, t, c = x.shape
        co = self.out_channels
        # [B, T, K, C]: depthwise (groups > 1) scales each channel by its own taps
        taps = x[:, :, None, :] * self.weight[0] if self.groups > 1 else self._matmul(x).reshape(b, t, k, co)
        # Overlap-add: tap j of step i lands on sample i * s + j. Split the kernel into m blocks of s.
        m = -(-k // s)
        if m * s != k:
            taps = mx.pad(taps, [(0, 0), (0, 0), (0, m * s - k), (0, 0)])
        out = None
        for i in range(m):
            block = taps[:, :, i * s : (i + 1) * s].reshape(b, t * s, co)
            block = mx.pad(block, [(0, 0), (i * s, (m - 1 - i) * s), (0, 0)]) if m > 1 else block
            out = block if out is None else out + block
        assert out is not None  # m >= 1
        return out[:, : (t - 1) * s + k]

    def _weight_kn(self) -> mx.array:
        cin, k, cout = self.weight.shape
        return self.weight.reshape(cin, k * cout)
