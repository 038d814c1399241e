"""CPU lanes: quantized Linears split over one stream per core give bit-identical results."""

from __future__ import annotations

import threading

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest

from moshi_mlx.cpu import lanes
from moshi_mlx.cpu.lanes import SpreadLinear, SpreadQuantizedLinear
from moshi_mlx.cpu.swap import use_cpu_variants
from moshi_mlx.errors import ConfigError


@pytest.fixture
def three_lanes(monkeypatch):
    """Three lanes on any machine (uneven row blocks), fresh for this thread."""
    monkeypatch.setenv(lanes.ENV, "3")
    monkeypatch.setattr(lanes, "_local", threading.local())
    yield
    monkeypatch.setattr(lanes, "_local", threading.local())


def _layer(out_dims: int, in_dims: int, bits: int, group: int, bias: bool) -> nn.QuantizedLinear:
    mx.random.seed(0)
    layer = nn.Linear(in_dims, out_dims, bias=bias)
    return nn.QuantizedLinear.from_linear(layer, group, bits)


@pytest.mark.parametrize("bits,group", [(4, 32), (8, 64)])
@pytest.mark.parametrize("dtype", [mx.float32, mx.bfloat16])
def test_spread_matmul_is_bit_identical(three_lanes, bits, group, dtype):
    base = _layer(1000, 256, bits, group, bias=True)  # 1000 rows: blocks of 333, 333, 334
    spread = SpreadQuantizedLinear.like(base)
    assert len(lanes.lane_streams()) == 3
    x = mx.random.normal((2, 5, 256)).astype(dtype)
    want, got = base(x), spread(x)
    assert got.dtype == want.dtype and got.shape == (2, 5, 1000)
    assert mx.array_equal(got, want).item()


def test_small_layers_and_single_lane_are_not_split(monkeypatch):
    monkeypatch.setattr(lanes, "_local", threading.local())
    monkeypatch.setenv(lanes.ENV, "1")
    assert lanes.lane_streams() == ()
    spread = SpreadQuantizedLinear.like(_layer(1024, 64, 4, 32, bias=False))
    x = mx.ones((1, 64))
    assert mx.array_equal(spread(x), nn.QuantizedLinear.__call__(spread, x)).item()
    monkeypatch.setenv(lanes.ENV, "lots")
    monkeypatch.setattr(lanes, "_local", threading.local())
    with pytest.raises(ConfigError, match="MOSHI_MLX_CPU_LANES must be a whole number"):
        use_cpu_variants(nn.Sequential(nn.Linear(4, 4)))


def test_each_thread_gets_its_own_lanes(three_lanes):
    spread = SpreadQuantizedLinear.like(_layer(768, 128, 4, 32, bias=False))
    x = mx.random.normal((1, 128))
    want = np.array(spread(x))
    seen = {}

    def work():  # what the dialog's model thread does: build and evaluate on its own streams
        seen["streams"] = lanes.lane_streams()
        seen["y"] = np.array(spread(x))

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert len(seen["streams"]) == 3 and set(seen["streams"]).isdisjoint(lanes.lane_streams())
    np.testing.assert_array_equal(seen["y"], want)


def test_quantized_models_spread_every_linear_and_keep_their_names(three_lanes, monkeypatch):
    from mlx.utils import tree_flatten

    from moshi_mlx.loading.lm import load_lm
    from support.lm import CONFIG, FILES, teacher_codes

    lm = load_lm(FILES["mlx_q4"], CONFIG)
    linears = [m for _, m in lm.named_modules() if isinstance(m, nn.QuantizedLinear)]
    assert linears and all(type(m) is SpreadQuantizedLinear for m in linears)
    names = {k for k, _ in tree_flatten(lm.parameters())}
    assert "transformer.layers.0.self_attn.in_proj.scales" in names and "text_linear.biases" in names
    # the small LM's layers are narrower than MIN_ROWS per lane: force splitting to compare whole runs
    codes = mx.array(teacher_codes())
    whole = [np.array(x) for x in lm.teacher_forced(codes)]
    monkeypatch.setattr(lanes, "MIN_ROWS", 16)
    split = [np.array(x) for x in lm.teacher_forced(codes)]
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bias", [False, True])
def test_spread_bf16_linear_is_bit_identical_and_float32_goes_to_blas_whole(three_lanes, bias, monkeypatch):
    mx.random.seed(1)
    base = nn.Linear(192, 1000, bias=bias)
    base.set_dtype(mx.bfloat16)
    spread = SpreadLinear.like(base)
    x = mx.random.normal((3, 192)).astype(mx.bfloat16)
    assert mx.array_equal(spread(x), base(x)).item()
    calls = []
    monkeypatch.setattr(lanes, "_spread", lambda *a: calls.append(a) or None)
    spread(x.astype(mx.float32))
    assert calls == []  # float32: BLAS has threads of its own


def test_the_cpu_swap_spreads_only_plain_linears():
    from moshi_mlx.cpu.contiguous import ContiguousLinear
    from moshi_mlx.modules.embedding import ScaledEmbedding

    bf16 = nn.Linear(64, 512)
    bf16.set_dtype(mx.bfloat16)
    model = nn.Sequential(
        bf16,
        nn.QuantizedLinear(64, 512, group_size=32, bits=4),
        ScaledEmbedding(10, 64),
        nn.RMSNorm(64),
        nn.Linear(64, 512),  # float32: BLAS, by the weight's contiguous transpose (not spread)
    )
    use_cpu_variants(model)
    kinds = [SpreadLinear, SpreadQuantizedLinear, ScaledEmbedding, nn.RMSNorm, ContiguousLinear]
    assert [type(m) for m in model.layers] == kinds


def test_a_bf16_lm_spreads_too_with_identical_logits(three_lanes, monkeypatch):
    from moshi_mlx.loading.lm import load_lm
    from support.lm import CONFIG, FILES, teacher_codes

    lm = load_lm(FILES["mlx_bf16"], CONFIG)
    lm.set_compute_dtype(mx.bfloat16)  # what the GPU default would be; here it exercises SpreadLinear
    assert type(lm.text_linear) is SpreadLinear
    codes = mx.array(teacher_codes()[:, :, :12])
    whole = [np.array(x) for x in lm.teacher_forced(codes)]
    monkeypatch.setattr(lanes, "MIN_ROWS", 16)
    split = [np.array(x) for x in lm.teacher_forced(codes)]
    for a, b in zip(whole, split):
        np.testing.assert_array_equal(a, b)


def test_limit_lanes_for_benchmarks(three_lanes):
    assert len(lanes.lane_streams()) == 3
    lanes.limit_lanes(2)
    assert len(lanes.lane_streams()) == 2
    lanes.limit_lanes(1)
    assert lanes.lane_streams() == ()
    lanes.limit_lanes(None)
    assert len(lanes.lane_streams()) == 3
