"""Column-blocked weights: the layout rule, exactness of the layout, fallbacks when weights change."""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn
import pytest

from moshi_mlx.cpu.blocked import BlockedLinear, blocked_matmul, choose_block, from_blocks, to_blocks
from moshi_mlx.modules.conv import StreamingConv1d, StreamingConvTranspose1d
from support.arrays import assert_close


@pytest.mark.parametrize(
    ("rows", "k", "n", "want"),
    [
        (2, 512, 2048, 64),  # Mimi transformer, 2 steps per frame
        (2, 2048, 512, 64),
        (2, 8192, 1024, 32),  # 64-wide blocks would be over the small-product limit
        (16, 3072, 512, 16),
        (1, 256, 2048, None),  # the whole product is already small
        (96, 1280, 256, None),  # no block small enough: keep the plain layout
        (1920, 192, 32, None),
        (250, 512, 2048, None),
    ],
)
def test_choose_block(rows: int, k: int, n: int, want: int | None) -> None:
    got = choose_block(rows, k, n)
    if mx.default_device() == mx.cpu:  # elsewhere blocking is never chosen
        assert got == want
    if got is not None:
        assert n % got == 0 and rows * k * got <= 1_000_000


def test_blocks_round_trip_and_matmul() -> None:
    w = mx.random.normal((48, 96))
    blocks = to_blocks(w, 16)
    assert blocks.shape == (6, 48, 16)
    assert mx.array_equal(from_blocks(blocks), w).item()
    assert mx.array_equal(blocks[2], w[:, 32:48]).item()
    x = mx.random.normal((3, 5, 48))
    assert_close(blocked_matmul(x, blocks), x @ w, atol=1e-5, rtol=1e-5)


def test_blocked_linear_equals_linear_and_falls_back_when_replaced() -> None:
    lin = nn.Linear(64, 128, bias=True)
    lin.bias = mx.random.normal((128,))
    bl = BlockedLinear(lin, 32)
    x = mx.random.normal((2, 3, 64))
    assert_close(bl(x), lin(x), atol=1e-5, rtol=1e-5)
    assert bl.weight.shape == (128, 64) and mx.array_equal(bl.weight, lin.weight).item()
    new = mx.random.normal((128, 64))
    bl.update({"weight": new})  # e.g. load_weights after post_load
    assert_close(bl(x), x @ new.T + lin.bias, atol=1e-5, rtol=1e-5)


def test_maybe_keeps_small_linears() -> None:
    lin = nn.Linear(16, 16, bias=False)
    assert BlockedLinear.maybe(lin, 2) is lin


@pytest.mark.parametrize("cls", ["conv", "convtr"])
def test_blocked_conv_streams_as_plain_and_falls_back(cls: str, monkeypatch) -> None:
    from moshi_mlx.cpu import blocked as blocked_mod

    plain = StreamingConv1d(8, 32, 4, stride=2) if cls == "conv" else StreamingConvTranspose1d(8, 16, 4, stride=2)
    plain.bias = mx.random.normal(plain.bias.shape)
    monkeypatch.setattr(blocked_mod, "choose_block", lambda rows, k, n: 8)
    blocked = blocked_mod.blocked_variant(plain, 4)
    assert isinstance(blocked, (blocked_mod.BlockedConv1d, blocked_mod.BlockedConvTranspose1d))
    assert blocked.weight.shape == plain.weight.shape
    assert mx.array_equal(blocked.weight, plain.weight).item()
    x = mx.random.normal((2, 12, 8))
    s_plain, s_blocked = plain.init_state(2), blocked.init_state(2)
    for chunk in mx.split(x, 3, axis=1):
        y_plain, s_plain = plain.step(chunk, s_plain)
        y_blocked, s_blocked = blocked.step(chunk, s_blocked)
        assert_close(y_blocked, y_plain, atol=1e-5, rtol=1e-5)
    other = mx.random.normal(plain.weight.shape)
    blocked.update({"weight": other})
    plain.update({"weight": other})
    assert_close(blocked(x), plain(x), atol=1e-5, rtol=1e-5)
