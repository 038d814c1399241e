"""Mimi checkpoint mapping and strict loading; Mimi configs."""

from __future__ import annotations

import json
import warnings

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from moshi_mlx import Mimi, MimiConfig, load_mimi
from moshi_mlx.errors import CheckpointError, ConfigError
from moshi_mlx.weights.mimi_torch import map_mimi_torch
from moshi_mlx.weights.strict import check_tensors_match
from support import ASSETS
from support.arrays import to_numpy

TINY = ASSETS / "mimi_tiny.safetensors"
TINY_CONFIG = ASSETS / "mimi_tiny_config.json"


def test_real_checkpoint_layout_maps_onto_real_model() -> None:
    """Every key of the released checkpoint's layout is consumed, every parameter set, shapes agree."""
    listing = json.loads((ASSETS / "mimi_202407_keys.json").read_text())
    assert len(listing) == 318 and all(v["dtype"] == "F32" for v in listing.values())
    # zeros are lazy: only shapes matter, nothing of the real size is materialised
    fake = {k: mx.zeros(v["shape"], mx.float32) for k, v in listing.items()}
    mapped = map_mimi_torch(fake)
    model = Mimi(MimiConfig.preset("mimi_202407"))
    check_tensors_match(model, mapped, "mimi_202407 key listing")
    params = dict(tree_flatten(model.parameters()))
    assert set(params) == set(mapped)
    assert len(mapped) == len(listing) - 32  # only the 32 `_initialized` flags are dropped
    assert mapped["upsample.convtr.weight"].shape == (1, 4, 512)  # depthwise [C_in/g, K, C_out]
    assert mapped["downsample.conv.weight"].shape == (4, 512, 512)  # [K, C_in, C_out]
    assert mapped["decoder.model.2.weight"].shape == (1024, 16, 512)  # transposed [C_in, K, C_out]
    assert mapped["quantizer.rvq_rest.input_proj.weight"].shape == (256, 512)
    assert model.total_codebooks == 32 and model.frame_size == 1920


def test_mapping_layouts_on_values() -> None:
    w = {
        "encoder.model.0.conv.conv.weight": mx.arange(2 * 3 * 4).reshape(2, 3, 4),  # [out, in, K]
        "decoder.model.2.convtr.convtr.weight": mx.arange(3 * 2 * 4).reshape(3, 2, 4),  # [in, out, K]
        "upsample.convtr.convtr.convtr.weight": mx.arange(5 * 4).reshape(5, 1, 4),  # depthwise
        "quantizer.rvq_first.input_proj.weight": mx.arange(6).reshape(3, 2, 1),
        "quantizer.rvq_first.vq.layers.0._codebook._initialized": mx.ones((1,)),
        "quantizer.rvq_first.vq.layers.0._codebook.embedding_sum": mx.ones((4, 2)),
        "encoder_transformer.transformer.layers.0.self_attn.in_proj_weight": mx.ones((6, 2)),
    }
    before = {k: to_numpy(v).copy() for k, v in w.items()}
    m = map_mimi_torch(w)
    assert set(m) == {
        "encoder.model.0.weight",
        "decoder.model.2.weight",
        "upsample.convtr.weight",
        "quantizer.rvq_first.input_proj.weight",
        "quantizer.rvq_first.vq.layers.0.codebook.embedding_sum",
        "encoder_transformer.transformer.layers.0.self_attn.in_proj.weight",
    }
    np.testing.assert_array_equal(
        to_numpy(m["encoder.model.0.weight"]), before["encoder.model.0.conv.conv.weight"].transpose(2, 1, 0)
    )
    np.testing.assert_array_equal(
        to_numpy(m["decoder.model.2.weight"]), before["decoder.model.2.convtr.convtr.weight"].transpose(0, 2, 1)
    )
    np.testing.assert_array_equal(
        to_numpy(m["upsample.convtr.weight"]), before["upsample.convtr.convtr.convtr.weight"].transpose(1, 2, 0)
    )
    assert m["quantizer.rvq_first.input_proj.weight"].shape == (3, 2)
    for k, v in w.items():  # pure: inputs untouched
        np.testing.assert_array_equal(to_numpy(v), before[k])


def test_centroids_divide_by_clamped_usage() -> None:
    mimi = load_mimi(TINY, config=TINY_CONFIG)
    raw = mx.load(str(TINY))
    for name, rvq, k in (("rvq_first", mimi.quantizer.rvq_first, 0), ("rvq_rest", mimi.quantizer.rvq_rest, 3)):
        prefix = f"quantizer.{name}.vq.layers.{k}._codebook."
        usage = to_numpy(raw[prefix + "cluster_usage"])
        assert usage.min() < 1e-5 and not np.allclose(usage, 1)  # the fixture exercises the clamp
        want = to_numpy(raw[prefix + "embedding_sum"]) / np.maximum(usage, 1e-5)[:, None]
        np.testing.assert_allclose(to_numpy(rvq.vq.layers[k].codebook.centroids), want, rtol=1e-6)
    assert "_centroids" not in dict(tree_flatten(mimi.parameters()))


def _write(tmp_path, tensors: dict[str, mx.array]) -> str:
    path = tmp_path / "mimi.safetensors"
    mx.save_safetensors(str(path), tensors)
    return str(path)


def test_mismatched_checkpoint_names_tensors(tmp_path) -> None:
    w = dict(mx.load(str(TINY)))
    w.pop("decoder.model.14.conv.conv.bias")
    w["encoder.model.99.conv.conv.weight"] = mx.zeros((1, 1, 1))
    w["downsample.conv.conv.conv.weight"] = mx.zeros((32, 32, 3))
    with pytest.raises(CheckpointError) as err:
        load_mimi(_write(tmp_path, w), config=TINY_CONFIG)
    msg = str(err.value)
    assert "missing tensors (1)" in msg and "decoder.model.14.bias" in msg
    assert "unexpected tensors (1)" in msg and "encoder.model.99.weight" in msg
    assert "downsample.conv.weight (file (3, 32, 32), model (4, 32, 32))" in msg
    assert "\n" not in msg  # one line


def test_checkpoint_for_another_config_is_rejected(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="does not fit"):
        load_mimi(TINY)  # tiny weights, real config


def test_not_a_checkpoint(tmp_path) -> None:
    bad = tmp_path / "x.safetensors"
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        load_mimi(bad, config=TINY_CONFIG)
    with pytest.raises(CheckpointError, match="no such file"):
        load_mimi(tmp_path / "missing.safetensors", config=TINY_CONFIG)


def test_bad_dtype_and_codebooks() -> None:
    with pytest.raises(ValueError, match="dtype"):
        load_mimi(TINY, dtype=mx.int32, config=TINY_CONFIG)
    with pytest.raises(ConfigError, match="num_codebooks 11"):
        load_mimi(TINY, num_codebooks=11, config=TINY_CONFIG)


def test_bfloat16_agrees_mostly() -> None:
    ref = mx.load(str(ASSETS / "mimi_tiny_ref.safetensors"))
    mimi = load_mimi(TINY, dtype=mx.bfloat16, config=TINY_CONFIG)
    assert mimi.encoder.model[0].weight.dtype == mx.bfloat16
    assert mimi.quantizer.rvq_rest.vq.layers[0].codebook.embedding_sum.dtype == mx.float32
    codes = to_numpy(mimi.encode(ref["input"]))
    agree = (codes[:, 0] == to_numpy(ref["codes"])[:, 0]).mean()
    assert agree >= 0.5, f"bfloat16 semantic codes agree on {agree:.0%}"
    assert mimi.decode(ref["codes"]).dtype == mx.float32


def test_preset_config() -> None:
    cfg = MimiConfig.preset("mimi_202407")
    assert cfg.frame_size == 1920 and cfg.resample_stride == 2 and cfg.encoder_frame_rate == 25.0
    assert cfg.seanet.hop_length == 960 and cfg.quantizer.n_q == 32 and cfg.num_codebooks == 8
    assert cfg.transformer.context == 250 and cfg.transformer.gating == "none" and cfg.transformer.num_layers == 8


def test_config_errors() -> None:
    raw = json.loads(TINY_CONFIG.read_text())
    with pytest.warns(UserWarning, match="unknown keys"):
        MimiConfig.from_kyutai({**raw, "seanet": {**raw["seanet"], "new_knob": 1}})
    with pytest.raises(ConfigError, match="causal"):
        MimiConfig.from_kyutai({**raw, "seanet": {**raw["seanet"], "causal": False}})
    with pytest.raises(ConfigError, match="integer multiple"):
        MimiConfig.from_kyutai({**raw, "frame_rate": 10.0})
    with pytest.raises(ConfigError, match="missing"):
        MimiConfig.from_kyutai({k: v for k, v in raw.items() if k != "quantizer"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        MimiConfig.from_kyutai(raw)  # the shipped schema has no unknown keys


def test_seanet_keys_left_out_take_the_released_mimi_values() -> None:
    from moshi_mlx.config import SeanetConfig

    # the released Mimi's last kernel is 3 (the reference's _seanet_kwargs), whichever way it is built
    assert SeanetConfig.from_kyutai({"dimension": 512, "n_filters": 64}) == SeanetConfig()
    assert SeanetConfig().last_kernel_size == MimiConfig.preset().seanet.last_kernel_size == 3


def test_config_values_are_checked_when_read() -> None:
    raw = json.loads(TINY_CONFIG.read_text())
    for section, key, value, words in [
        ("seanet", "ratios", [8, 0], "ratios entry = 0"),
        ("seanet", "kernel_size", 10**6, "kernel_size = 1000000"),
        ("seanet", "n_filters", "64", "must be an integer"),
        ("quantizer", "bins", 0, "bins = 0"),
        ("transformer", "num_heads", 0, "num_heads = 0"),
        ("transformer", "context", 0, "context = 0"),
        ("transformer", "causal", "yes", "true or false"),
        ("transformer", "norm", "batch_norm", "layer_norm"),
    ]:
        with pytest.raises(ConfigError, match=words):
            MimiConfig.from_kyutai({**raw, section: {**raw[section], key: value}})
    with pytest.raises(ConfigError, match="frame_rate = 0"):
        MimiConfig.from_kyutai({**raw, "frame_rate": 0})
