"""Streaming convolutions: reference goldens, MLX's own conv as an oracle, streaming == batch."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.modules.conv import StreamingConv1d, StreamingConvTranspose1d
from moshi_mlx.weights.mimi_torch import conv_weight_from_torch, convtr_weight_from_torch
from support import ASSETS
from support.arrays import assert_close


def _cases() -> tuple[dict[str, mx.array], dict[str, dict]]:
    path = ASSETS / "conv_ref.safetensors"
    tensors, meta = mx.load(str(path), return_metadata=True)
    return tensors, json.loads(meta["cases"])


TENSORS, CASES = _cases()


def _build(name: str):
    c = {
        k: (v if k in ("kind", "pad") else (v == "True" if v in ("True", "False") else int(v)))
        for k, v in CASES[name].items()
    }
    t = TENSORS
    if c["kind"] == "conv":
        m = StreamingConv1d(
            c["cin"], c["cout"], c["k"], c["s"], dilation=c["d"], groups=c["groups"], bias=c["bias"], pad_mode=c["pad"]
        )
        m.weight = conv_weight_from_torch(t[f"{name}.weight"])
    else:
        m = StreamingConvTranspose1d(c["cin"], c["cout"], c["k"], c["s"], groups=c["groups"], bias=c["bias"])
        m.weight = convtr_weight_from_torch(t[f"{name}.weight"], c["groups"])
    if c["bias"]:
        m.bias = t[f"{name}.bias"]
    return m, c


def _channels_last(x: mx.array) -> mx.array:
    return x.transpose(0, 2, 1)


@pytest.mark.parametrize("name", sorted(CASES))
def test_batch_matches_reference(name: str) -> None:
    m, _ = _build(name)
    x = _channels_last(TENSORS[f"{name}.input"])
    assert_close(m(x), _channels_last(TENSORS[f"{name}.output"]), atol=2e-5, rtol=1e-5, what=name)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("chunk", [1, 3, 4])
def test_streaming_matches_reference_and_batch(name: str, chunk: int) -> None:
    """Streamed in chunks of `chunk` output steps (the reference streamed 3): same samples as batch mode."""
    m, c = _build(name)
    x = _channels_last(TENSORS[f"{name}.input"])
    step_in = chunk * (c["s"] if c["kind"] == "conv" else 1)
    state, outs = m.init_state(x.shape[0]), []
    for i in range(0, x.shape[1], step_in):
        y, state = m.step(x[:, i : i + step_in], state)
        outs.append(y)
    got = mx.concatenate(outs, axis=1)
    assert_close(got, _channels_last(TENSORS[f"{name}.stream_output"]), atol=2e-5, rtol=1e-5, what=name)
    assert_close(got, m(x), atol=1e-5, rtol=1e-5, what=f"{name} streaming vs batch")


@pytest.mark.parametrize(
    "cin,cout,k,s,d,groups",
    [
        (3, 5, 7, 1, 1, 1),
        (4, 6, 8, 4, 1, 1),
        (4, 4, 3, 1, 2, 1),
        (2, 3, 5, 3, 1, 1),
        (6, 6, 4, 2, 1, 6),
        (8, 4, 10, 5, 1, 1),
        (3, 3, 1, 1, 1, 1),
        (5, 5, 3, 1, 2, 5),
    ],
)
def test_conv_matches_mlx_conv1d(cin: int, cout: int, k: int, s: int, d: int, groups: int) -> None:
    """Our unfold + matmul equals MLX's own conv1d on the zero-padded input."""
    m = StreamingConv1d(cin, cout, k, s, dilation=d, groups=groups)
    m.bias = mx.random.normal((cout,))
    x = mx.random.normal((2, 6 * s, cin))
    padded = mx.pad(x, [(0, 0), (m.left_context, 0), (0, 0)])
    mlx_layout = m.weight.transpose(2, 0, 1)  # ours [K, C_in/g, C_out] -> [C_out, K, C_in/g]
    want = mx.conv1d(padded, mlx_layout, stride=s, dilation=d, groups=groups) + m.bias
    assert_close(m(x), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize(
    "cin,cout,k,s,groups", [(6, 3, 8, 4, 1), (3, 2, 5, 3, 1), (5, 5, 4, 2, 5), (4, 4, 3, 1, 1), (4, 4, 2, 2, 1)]
)
def test_convtr_matches_mlx_conv_transpose1d(cin: int, cout: int, k: int, s: int, groups: int) -> None:
    """Batch output = MLX's conv_transpose1d trimmed of its K - stride last samples."""
    m = StreamingConvTranspose1d(cin, cout, k, s, groups=groups)
    m.bias = mx.random.normal((cout,))
    x = mx.random.normal((2, 7, cin))
    mlx_layout = m.weight.transpose(2, 1, 0)  # ours [C_in/g, K, C_out] -> [C_out, K, C_in/g]
    full = mx.conv_transpose1d(x, mlx_layout, stride=s, groups=groups) + m.bias
    assert_close(m(x), full[:, : 7 * s], atol=1e-5, rtol=1e-5)


def test_replicate_padding_uses_first_sample_once() -> None:
    m = StreamingConv1d(1, 1, 4, 2, bias=False, pad_mode="replicate")
    m.weight = mx.ones((4, 1, 1))
    x = mx.full((1, 4, 1), 3.0)
    y, state = m.step(x, m.init_state(1))
    assert np.allclose(np.array(y)[0, :, 0], 12.0)  # padding replicates 3.0, not zeros
    y2, _ = m.step(mx.zeros((1, 2, 1)), state)  # second chunk: real history, no replication
    assert np.allclose(np.array(y2)[0, :, 0], 6.0)


def test_bad_inputs_raise_clear_errors() -> None:
    conv = StreamingConv1d(3, 4, 4, 2)
    with pytest.raises(ValueError, match="channels last"):
        conv(mx.zeros((1, 3, 8)))
    with pytest.raises(ValueError, match="multiple of the stride"):
        conv(mx.zeros((1, 5, 3)))
    convtr = StreamingConvTranspose1d(3, 4, 4, 2)
    with pytest.raises(ValueError, match=r"\[B, T, 3\]"):
        convtr(mx.zeros((1, 5)))
    with pytest.raises(ValueError, match="depthwise"):
        StreamingConv1d(4, 6, 3, groups=2)
