"""CPU lanes: the output rows of a large Linear spread over one MLX stream per core.

MLX runs the work of each CPU stream on one thread, and its CPU kernels for quantized and bfloat16
matmuls are single-threaded, so a 7B step used one core however many the machine has. Different streams
run at the same time: cutting a large matmul into row blocks, one per stream, measured 30.2 -> 16.1 ms
for a 8192x4096 4-bit matmul on 2 cores. Each output element is computed exactly as before (same kernel,
same reduction), so results are bit-identical. float32 matmuls are left to BLAS, which has threads of
its own; off the CPU (Metal, CUDA) kernels are parallel already and nothing is split.

Streams belong to the thread that makes them: each thread gets its own lanes on first use, and one
started by `mlx_thread.start_owner_thread` (the model loop) destroys them as its last act.
`MOSHI_MLX_CPU_LANES=N` overrides the number of lanes (1 turns spreading off).
"""

from __future__ import annotations

import os
import threading

import mlx.core as mx
import mlx.nn as nn

from ..errors import ConfigError
from ..weights.formats import unpacked_columns

ENV = "MOSHI_MLX_CPU_LANES"
MIN_ROWS = 256  # below this a block costs more in scheduling than it gains
_local = threading.local()


def lane_count() -> int:
    """Lanes to use: MOSHI_MLX_CPU_LANES, else the cores this process may run on."""
    value = os.environ.get(ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ConfigError(f"{ENV} must be a whole number of lanes (1 turns spreading off), got {value!r}") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS: no affinity API
        return max(1, os.cpu_count() or 1)


def lane_streams() -> tuple[mx.Stream, ...]:
    """This thread's CPU streams, one per lane (empty when there is a single lane)."""
    streams = getattr(_local, "streams", None)
    if streams is None:
        n = lane_count()
        streams = _local.streams = tuple(mx.new_stream(mx.cpu) for _ in range(n)) if n > 1 else ()
    limit = getattr(_local, "limit", None)
    if limit is not None and limit < len(streams):
        streams = streams[:limit] if limit > 1 else ()
    return streams


def limit_lanes(n: int | None) -> None:
    """Use at most n of this thread's lanes from now on (None: all of them); for benchmarks."""
    _local.limit = n


def _spread(x: mx.array, rows: int, block) -> mx.array | None:
    """concat(block(x, a, b, stream) for each lane's rows [a, b)), or None when not worth splitting."""
    streams = lane_streams() if mx.default_device() == mx.cpu else ()
    lanes = min(len(streams), rows // MIN_ROWS)
    if lanes < 2:
        return None
    edges = [rows * i // lanes for i in range(lanes + 1)]
    return mx.concatenate([block(a, b, s) for a, b, s in zip(edges, edges[1:], streams)], axis=-1)


class SpreadQuantizedLinear(nn.QuantizedLinear):
    """nn.QuantizedLinear (same parameters, same names) whose CPU matmul runs in row blocks on all lanes."""

    @classmethod
    def like(cls, layer: nn.QuantizedLinear) -> SpreadQuantizedLinear:
        out_dims = layer.weight.shape[0]
        in_dims = unpacked_columns(layer.weight.shape[1], layer.bits)
        new = cls(in_dims, out_dims, "bias" in layer, layer.group_size, layer.bits, mode=layer.mode)
        new.update(layer.parameters())  # the constructor's random weights are lazy and never evaluated
        return new

    def __call__(self, x: mx.array) -> mx.array:
        w, scales, biases = self["weight"], self["scales"], self.get("biases")

        def block(a: int, b: int, s: mx.Stream) -> mx.array:
            return mx.quantized_matmul(
                x,
                w[a:b],
                scales=scales[a:b],
                biases=None if biases is None else biases[a:b],
                transpose=True,
                group_size=self.group_size,
                bits=self.bits,
                mode=self.mode,
                stream=s,
            )

        y = _spread(x, w.shape[0], block)
        if y is None:
            return super().__call__(x)
        return y + self["bias"] if "bias" in self else y


class SpreadLinear(nn.Linear):
    """nn.Linear whose bfloat16 / float16 CPU matmul (MLX's own single-threaded kernel) runs on all lanes.
    float32 goes to BLAS whole: BLAS has threads of its own."""

    @classmethod
    def like(cls, layer: nn.Linear) -> SpreadLinear:
        out_dims, in_dims = layer.weight.shape
        new = cls(in_dims, out_dims, bias="bias" in layer)
        new.update(layer.parameters())  # as above: the random init is never evaluated
        return new

    def __call__(self, x: mx.array) -> mx.array:
        w, bias = self["weight"], self.get("bias")

        def block(a: int, b: int, s: mx.Stream) -> mx.array:  # as nn.Linear: addmm when there is a bias
            return mx.matmul(x, w[a:b].T, stream=s) if bias is None else mx.addmm(bias[a:b], x, w[a:b].T, stream=s)

        y = None if x.dtype == mx.float32 else _spread(x, w.shape[0], block)
        return super().__call__(x) if y is None else y


def spread_variant(module: nn.Module) -> nn.Module:
    """The spreading form of a plain nn.QuantizedLinear or nn.Linear (same parameters), else `module`."""
    kinds = {nn.QuantizedLinear: SpreadQuantizedLinear, nn.Linear: SpreadLinear}
    return kinds[type(module)].like(module) if type(module) in kinds else module
