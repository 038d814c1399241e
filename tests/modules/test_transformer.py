"""The shared transformer against the reference StreamingTransformer (goldens in tests/assets)."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.config import TransformerConfig
from moshi_mlx.modules.kv_cache import RingKVCache
from moshi_mlx.modules.transformer import (
    ProjectedTransformer,
    RotaryTable,
    Transformer,
    TransformerState,
    apply_rope,
    rope_table,
)
from moshi_mlx.weights.strict import load_strict
from support import ASSETS
from support.arrays import assert_close


def torch_names_to_ours(w: dict[str, mx.array]) -> dict[str, mx.array]:
    out = {}
    for k, v in w.items():
        k = k.replace("self_attn.in_proj_weight", "self_attn.in_proj.weight")
        if k.endswith(".alpha"):
            k, v = k[: -len("alpha")] + "weight", v.reshape(-1)
        out[k] = v
    return out


def load_case(name: str):
    path = ASSETS / f"transformer_{name}.safetensors"
    tensors, meta = mx.load(str(path), return_metadata=True)
    cfg = TransformerConfig(**json.loads(meta["config"]))
    model = Transformer(cfg)
    weights = {k[2:]: v for k, v in tensors.items() if k.startswith("w.")}
    load_strict(model, torch_names_to_ours(weights), str(path))
    return model, tensors, int(meta["chunk"])


@pytest.mark.parametrize("name", ["mimi_like", "lm_like"])
def test_batch_matches_reference(name):
    model, t, _ = load_case(name)
    assert_close(model(t["x"]), t["batch"], atol=2e-5, what=name)


@pytest.mark.parametrize("name", ["mimi_like", "lm_like"])
def test_streaming_matches_reference_past_cache_wrap(name):
    model, t, chunk = load_case(name)
    steps = t["x"].shape[1]
    assert steps > 2 * model.cfg.context, "the fixture must wrap the ring cache"
    state = model.init_state(batch=1)
    outs = []
    for i in range(0, steps, chunk):
        y, state = model.step(t["x"][:, i : i + chunk], state)
        outs.append(y)
    assert state.offset == steps
    assert_close(mx.concatenate(outs, axis=1), t["stream"], atol=2e-5, what=name)


@pytest.mark.parametrize("name", ["mimi_like", "lm_like"])
def test_a_compiled_step_with_a_traced_offset_equals_the_plain_step(name):
    """What a compiled frame does: the offset an int32 array, the RoPE table made on the host and passed
    in; one trace serves every step, past the ring's wrap, and gives the plain step's values."""
    model, t, chunk = load_case(name)
    steps = t["x"].shape[1]

    def step(x, offset, rope, arrays):
        state = TransformerState.from_arrays(arrays, offset, len(model.layers))
        y, state = model.step(x, state, RotaryTable(*rope) if rope else None)
        return y, state.arrays()

    compiled = mx.compile(step)
    plain = traced = model.init_state(batch=1)
    for i in range(0, steps, chunk):
        x = t["x"][:, i : i + chunk]
        table = model.rope(i, chunk)
        y, arrays = compiled(x, mx.array(i, mx.int32), [] if table is None else list(table), traced.arrays())
        traced = TransformerState.from_arrays(arrays, i + chunk, len(model.layers))
        want, plain = model.step(x, plain)
        np.testing.assert_array_equal(np.array(y), np.array(want))
    for a, b in zip(traced.arrays(), plain.arrays()):
        np.testing.assert_array_equal(np.array(a), np.array(b))


def test_a_streaming_step_leaves_its_state_unchanged():
    model, t, _ = load_case("lm_like")
    state = model.init_state()
    y, state = model.step(t["x"][:, :3], state)
    kept = [np.array(a) for a in state.arrays()]
    again, after = model.step(t["x"][:, 3:4], state)
    for a, b in zip(kept, state.arrays()):
        np.testing.assert_array_equal(a, np.array(b))
    assert state.offset == 3 and after.offset == 4
    replay, _ = model.step(t["x"][:, 3:4], state)
    np.testing.assert_array_equal(np.array(again), np.array(replay))


def test_streaming_one_step_equals_batch_within_context():
    model, t, _ = load_case("lm_like")
    x = t["x"][:, : model.cfg.context]
    state = model.init_state()
    outs = []
    for i in range(x.shape[1]):
        y, state = model.step(x[:, i : i + 1], state)
        outs.append(y)
    assert_close(mx.concatenate(outs, axis=1), model(x), atol=2e-5)


def test_a_frame_cache_streams_as_the_ring_within_its_context():
    """The depformer's FrameKVCache (keys appended, no mask) gives the ring's values for `context` one-step
    updates, and refuses a chunk."""
    model, t, _ = load_case("lm_like")
    x = t["x"][:, : model.cfg.context]
    ring, frame = model.init_state(), model.init_state(frame=True)
    for i in range(x.shape[1]):
        want, ring = model.step(x[:, i : i + 1], ring)
        got, frame = model.step(x[:, i : i + 1], frame)
        assert_close(got, want, atol=1e-6, what=f"step {i}")
        if i == 0:  # its own key alone: the values as they are, no attention computed (exactly the ring's)
            np.testing.assert_array_equal(np.array(got), np.array(want))
    assert frame.offset == x.shape[1] and frame.caches[0].keys.shape[2] == x.shape[1]
    with pytest.raises(ValueError, match="one step at a time"):
        model.step(x[:, :2], model.init_state(frame=True))


def test_dtype_preserved_and_bf16_close():
    model, t, _ = load_case("lm_like")
    model.set_dtype(mx.bfloat16)
    y = model(t["x"].astype(mx.bfloat16))
    assert y.dtype == mx.bfloat16
    ref = np.array(t["batch"])
    err = np.abs(np.array(y.astype(mx.float32)) - ref).max() / np.abs(ref).max()
    assert err < 0.05, f"bf16 relative error {err}"


def test_ring_cache_positions_and_mask():
    cache = RingKVCache.empty(1, 1, 4, 2)
    for step in range(10):
        k = mx.full((1, 1, 1, 2), float(step))
        cache, keys, _, mask = cache.update_and_fetch(k, k)
        held = sorted(int(v) for v in np.array(keys[0, 0, :, 0])[np.array(mask[0])])
        assert held == list(range(max(0, step - 3), step + 1))
    assert cache.offset == 10
    assert np.array(cache.slot_positions(10)).tolist() == [8, 9, 6, 7]


def test_ring_cache_chunk_wrapping_end():
    cache = RingKVCache.empty(1, 1, 4, 1)
    cache = cache.update(mx.zeros((1, 1, 3, 1)), mx.zeros((1, 1, 3, 1)))
    k = mx.array([3.0, 4.0]).reshape(1, 1, 2, 1)
    traced = cache._replace(offset=mx.array(cache.offset, mx.int32))
    cache, keys, _, mask = cache.update_and_fetch(k, k)  # writes slots 3 and 0
    _, traced_keys, _, traced_mask = traced.update_and_fetch(k, k)  # the same with a traced offset
    assert np.array(traced_keys).tolist() == np.array(keys).tolist()
    assert np.array(traced_mask).tolist() == np.array(mask).tolist()
    assert np.array(keys[0, 0, :, 0]).tolist() == [4.0, 0.0, 0.0, 3.0]
    # query at position 3 sees 0..3 except the slot overwritten by position 4: slots 1, 2, 3
    assert np.array(mask).tolist() == [[False, True, True, True], [True, True, True, True]]


def test_chunk_larger_than_cache_is_an_error():
    cache = RingKVCache.empty(1, 1, 2, 1)
    with pytest.raises(ValueError, match="does not fit"):
        cache.update_and_fetch(mx.zeros((1, 1, 3, 1)), mx.zeros((1, 1, 3, 1)))


def test_rope_table_is_exact_at_long_positions():
    table = rope_table(100_000, 1, 8, 10_000.0)
    freqs = np.exp(np.arange(4, dtype=np.float32) * np.float32(-np.log(10_000.0) * 2 / 8))
    angles = (np.float32(100_000) * freqs).astype(np.float64)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    # each pair's factors: (cos, cos) and (-sin, +sin), interleaved as the pairs are
    np.testing.assert_array_equal(np.array(table.cos[0]), np.repeat(cos, 2))
    np.testing.assert_array_equal(np.array(table.sin[0]), np.stack([-sin, sin], axis=-1).reshape(-1))


def test_rope_rotates_interleaved_pairs_as_the_reference_computes_them():
    """re cos - im sin, re sin + im cos in float32, bit for bit (the reference's complex rotation)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 3, 5, 8)).astype(np.float32)
    table = rope_table(2999, 5, 8, 10_000.0)
    freqs = np.exp(np.arange(4, dtype=np.float32) * np.float32(-np.log(10_000.0) * 2 / 8))
    angles = ((np.float32(2999) + np.arange(5, dtype=np.float32))[:, None] * freqs).astype(np.float64)
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    re, im = x[..., 0::2], x[..., 1::2]
    expected = np.stack([re * cos - im * sin, re * sin + im * cos], axis=-1).reshape(x.shape)
    np.testing.assert_array_equal(np.array(apply_rope(mx.array(x), table)), expected)


def test_a_table_over_heads_rotates_q_and_k_and_leaves_v_as_it_is():
    """A one-step table over the q, k and v heads (one rotation and one split per layer) gives q and k bit
    for bit as the per-position table does, and v untouched; a streaming step with it (what `rope` makes
    for one step) equals the step with the per-position table, bit for bit."""
    rng = np.random.default_rng(1)
    heads, dim = 3, 8
    x = mx.array(rng.standard_normal((2, 3 * heads, 1, dim)).astype(np.float32))
    over_heads, per_position = rope_table(41, 1, dim, 10_000.0, heads), rope_table(41, 1, dim, 10_000.0)
    assert over_heads.cos.shape == (3 * heads, 1, dim)
    rotated = np.array(apply_rope(x, over_heads))
    np.testing.assert_array_equal(rotated[:, : 2 * heads], np.array(apply_rope(x[:, : 2 * heads], per_position)))
    np.testing.assert_array_equal(rotated[:, 2 * heads :], np.array(x[:, 2 * heads :]))

    model, t, _ = load_case("lm_like")
    assert model.rope(5, 2).cos.ndim == 3 and model.rope(5, 3).cos.ndim == 2  # a chunk of two: over the heads
    for chunk in (1, 2):
        state = model.init_state()
        for i in range(0, 6, chunk):
            x_i = t["x"][:, i : i + chunk]
            want, _ = model.step(x_i, state, rope_table(i, chunk, model.cfg.head_dim, model.cfg.max_period))
            got, state = model.step(x_i, state)
            np.testing.assert_array_equal(np.array(got), np.array(want))


def test_projected_transformer_projections():
    cfg = TransformerConfig(d_model=16, num_heads=2, num_layers=1, dim_feedforward=32, context=4)
    pt = ProjectedTransformer(cfg, input_dim=8, output_dims=(16, 12))
    names = {k for k, _ in __import__("mlx.utils", fromlist=["tree_flatten"]).tree_flatten(pt.parameters())}
    assert "input_proj.weight" in names and "output_projs.1.weight" in names
    assert not any(n.startswith("output_projs.0") for n in names)
    ys = pt(mx.zeros((2, 3, 8)))
    assert [y.shape for y in ys] == [(2, 3, 16), (2, 3, 12)]


def test_quantized_ring_cache_keeps_positions_and_values():
    """An 8-bit cache holds the same slots as the float one, each value within one quantization step."""
    plain, quant = RingKVCache.empty(1, 2, 4, 32), RingKVCache.empty(1, 2, 4, 32, bits=8)
    for _ in range(7):  # wraps
        k, v = mx.random.normal((1, 2, 1, 32)), mx.random.normal((1, 2, 1, 32))
        plain, kf, vf, mask_f = plain.update_and_fetch(k, v)
        quant, kq, vq, mask_q = quant.update_and_fetch(k, v)
        assert np.array_equal(np.array(mask_f), np.array(mask_q))
        for full, packed in ((kf, kq), (vf, vq)):
            back = mx.dequantize(*packed, group_size=quant.group_size, bits=8)
            step = (mx.max(full, axis=-1, keepdims=True) - mx.min(full, axis=-1, keepdims=True)) / 255
            assert mx.all(mx.abs(back - full) <= step + 1e-6).item()  # MLX rounds within one step
    assert len(quant.arrays()) == 6


def test_quantized_ring_cache_refuses_what_it_cannot_store():
    with pytest.raises(ValueError, match="8 bits"):
        RingKVCache.empty(1, 1, 4, 32, bits=4)
    with pytest.raises(ValueError, match="divisible by 32"):
        RingKVCache.empty(1, 1, 4, 16, bits=8)
