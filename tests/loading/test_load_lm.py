"""LM checkpoint formats: detection, both released layouts, quantization read from shapes, errors."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings

import mlx.core as mx
import numpy as np
import pytest
from mlx.utils import tree_flatten

from moshi_mlx.config import LmConfig
from moshi_mlx.errors import CheckpointError, ConfigError, MemoryBudgetError
from moshi_mlx.lm import Lm
from moshi_mlx.loading import memory
from moshi_mlx.loading.lm import load_lm
from moshi_mlx.loading.memory import KV_AUTO, check_memory_fits, estimate_bytes, resolve_kv_bits
from moshi_mlx.modules.embedding import QuantizedScaledEmbedding, ScaledEmbedding
from moshi_mlx.weights import quant
from moshi_mlx.weights.formats import CheckpointFormat, detect_format
from moshi_mlx.weights.lm_torch import map_lm_torch
from moshi_mlx.weights.safetensors_io import TensorInfo, read_header
from support.lm import CONFIG, FILES, LM


def kyutai_keys(which: str) -> dict[str, dict[str, list]]:
    return json.loads((LM / f"kyutai_mlx_keys_{which}.json").read_text())


def shapes(model) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in tree_flatten(model.parameters())}


@pytest.mark.parametrize("which", ["small", "7b"])
@pytest.mark.parametrize("precision", ["bf16", "q8", "q4"])
def test_parameter_names_are_kyutai_mlx_release_names(which, precision):
    cfg = LmConfig.from_json(CONFIG) if which == "small" else LmConfig.preset()
    model = Lm(cfg)  # lazily initialised: the 7B weights are never materialised
    spec = {"q8": quant.QuantSpec(8, 64), "q4": quant.QuantSpec(4, 32)}.get(precision)
    if spec is not None:
        quant.apply(model, {p: spec for p, m in quant.quantizable_modules(model).items()})
    expected = {k: tuple(v[0]) for k, v in kyutai_keys(which)[precision].items()}
    ours = shapes(model)
    assert sorted(set(expected) ^ set(ours)) == []
    assert {k: v for k, v in ours.items() if expected[k] != v} == {}


def test_7b_preset_sizes():
    cfg = LmConfig.preset()
    assert cfg.transformer.gating_hidden == 11264 and cfg.depformer.transformer.gating_hidden == 2816
    assert cfg.delays == (0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1, 1, 1, 1, 1)
    assert (cfg.user_codebooks, cfg.dep_q, cfg.max_delay, cfg.transformer.context) == (8, 8, 1, 3000)
    assert cfg.depformer.transformer.positional_embedding == "none"
    assert cfg.depformer.transformer.context == 8


@pytest.mark.parametrize(
    "name,fmt",
    [
        ("torch", CheckpointFormat.LM_KYUTAI_TORCH),
        ("mlx_bf16", CheckpointFormat.LM_KYUTAI_MLX),
        ("mlx_q8", CheckpointFormat.LM_KYUTAI_MLX),
        ("mlx_q4", CheckpointFormat.LM_KYUTAI_MLX),
    ],
)
def test_detect_format(name, fmt):
    assert detect_format(read_header(FILES[name])) is fmt


def test_unknown_layout_is_named():
    with pytest.raises(CheckpointError, match="unrecognised checkpoint layout"):
        detect_format({"foo.weight": TensorInfo("F32", (2, 2))})


@pytest.mark.parametrize("name,spec", [("mlx_bf16", None), ("mlx_q8", (8, 64)), ("mlx_q4", (4, 32))])
def test_quantization_read_from_shapes(name, spec):
    specs = quant.specs_from_header(Lm(LmConfig.from_json(CONFIG)), read_header(FILES[name]), name)
    got = quant.uniform_spec(specs)
    assert (got.bits, got.group_size) == spec if spec else specs == {}
    if spec:  # every Linear and Embedding, as Kyutai's nn.quantize of the whole model
        assert len(specs) == len(quant.quantizable_modules(Lm(LmConfig.from_json(CONFIG))))


def test_both_layouts_map_to_the_same_tensors():
    cfg = LmConfig.from_json(CONFIG)
    ours = map_lm_torch(dict(mx.load(str(FILES["torch"]))), cfg)
    kyutai = dict(mx.load(str(FILES["mlx_bf16"])))
    assert sorted(ours) == sorted(kyutai)
    unequal = [k for k in ours if not mx.array_equal(ours[k], kyutai[k]).item()]
    assert unequal == []


def test_torch_mapping_routes_every_layer_and_step():
    # Two depformer layers, every tensor filled with its own id: each target must get its own source.
    raw = json.loads(CONFIG.read_text()) | {"depformer_num_layers": 2}
    cfg = LmConfig.from_kyutai(raw)
    dep, dq = cfg.depformer.transformer, cfg.dep_q
    src: dict[str, mx.array] = {}
    for layer in range(2):
        p = f"depformer.layers.{layer}"
        src[f"{p}.self_attn.in_proj_weight"] = mx.repeat(mx.arange(dq) + 100 * layer, 3 * dep.d_model)[:, None]
        src[f"{p}.self_attn.out_proj.weight"] = mx.repeat(mx.arange(dq) + 100 * layer + 50, dep.d_model)[:, None]
        src[f"{p}.norm1.alpha"] = mx.full((1, 1, 1), 1000 + layer)
        for k in range(dq):
            src[f"{p}.gating.{k}.linear_in.weight"] = mx.full((1,), 2000 + 100 * layer + k)
    for k in range(dq):
        src[f"depformer_in.{k}.weight"] = mx.full((1,), 3000 + k)
        src[f"linears.{k}.weight"] = mx.full((1,), 4000 + k)
    src["depformer_text_emb.weight"] = mx.full((1,), 5000)
    for k in range(dq - 1):
        src[f"depformer_emb.{k}.weight"] = mx.full((1,), 5001 + k)
    out = {k: v.reshape(-1) for k, v in map_lm_torch(src, cfg).items()}
    for layer in range(2):
        for k in range(dq):
            q = f"depformer.slices.{k}.transformer.layers.{layer}"
            assert (out[f"{q}.self_attn.in_proj.weight"] == k + 100 * layer).all()
            assert out[f"{q}.self_attn.in_proj.weight"].size == 3 * dep.d_model
            assert (out[f"{q}.self_attn.out_proj.weight"] == k + 100 * layer + 50).all()
            assert out[f"{q}.norm1.weight"].item() == 1000 + layer
            assert out[f"{q}.gating.linear_in.weight"].item() == 2000 + 100 * layer + k
    for k in range(dq):
        s = f"depformer.slices.{k}"
        assert out[f"{s}.linear_in.weight"].item() == 3000 + k
        assert out[f"{s}.linear_out.weight"].item() == 4000 + k
        assert out[f"{s}.emb.weight"].item() == 5000 + k


def test_single_depformer_in_is_shared_when_not_multi_linear():
    raw = json.loads(CONFIG.read_text()) | {"depformer_multi_linear": False}
    cfg = LmConfig.from_kyutai(raw)
    out = map_lm_torch({"depformer_in.0.weight": mx.ones((1,))}, cfg)
    assert sorted(k for k in out if "linear_in" in k) == [f"depformer.slices.{k}.linear_in.weight" for k in range(8)]


def test_missing_and_extra_tensors_are_named(tmp_path):
    w = dict(mx.load(str(FILES["torch"])))
    del w["transformer.layers.1.gating.linear_out.weight"]
    w["transformer.layers.9.norm1.alpha"] = mx.ones((1, 1, 128))
    path = tmp_path / "broken.safetensors"
    mx.save_safetensors(str(path), w)
    with pytest.raises(CheckpointError) as e:
        load_lm(path, CONFIG)
    msg = str(e.value)
    assert "transformer.layers.1.gating.linear_out.weight" in msg and "transformer.layers.9.norm1.weight" in msg


@pytest.mark.parametrize("name", ["torch", "mlx_q4"])
def test_wrong_config_is_a_checkpoint_error(name, tmp_path):
    raw = json.loads(CONFIG.read_text()) | {"dim": 192, "num_heads": 3}
    cfg = tmp_path / "other.json"
    cfg.write_text(json.dumps(raw))
    with pytest.raises(CheckpointError, match="config"):
        load_lm(FILES[name], cfg)


def test_truncated_file(tmp_path):
    data = FILES["mlx_q4"].read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_lm(path, CONFIG)


def test_mimi_file_is_refused_as_lm(tmp_path):
    path = tmp_path / "mimi.safetensors"
    mx.save_safetensors(str(path), {"encoder.model.0.conv.conv.weight": mx.zeros((2, 1, 3))})
    with pytest.raises(CheckpointError, match="not a Moshi LM"):
        load_lm(path, CONFIG)


def test_memory_estimate_and_refusal():
    cfg = LmConfig.preset()
    bf16 = {"w": TensorInfo("BF16", (7_000_000_000,))}
    q4 = {"w.weight": TensorInfo("U32", (1000, 100)), "w.scales": TensorInfo("BF16", (1000, 10))}
    cache = 2 * 32 * 3000 * 4096
    assert estimate_bytes(bf16, cfg, None) == 14_000_000_000 + cache * 2
    assert estimate_bytes(bf16, cfg, mx.float32) == 28_000_000_000 + cache * 4
    assert estimate_bytes(q4, cfg, None) == 400_000 + 20_000 + cache * 2  # bf16 caches
    with pytest.raises(MemoryBudgetError, match="4-bit"):
        check_memory_fits(estimate_bytes(bf16, cfg, None), "7B bf16", "Use the 4-bit weights.", available=8 * 2**30)
    check_memory_fits(1 << 20, "tiny", "", available=8 * 2**30)


def test_scaled_embedding_zero_token_survives_quantization():
    emb = ScaledEmbedding(33, 64)
    ids = mx.array([[0, -1, 5, -2]])
    for layer in (emb, emb.to_quantized(group_size=32, bits=4)):
        y = layer(ids)
        assert (y[0, 1] == 0).all() and not (y[0, 0] == 0).all()
        assert mx.allclose(y[0, 3], y[0, 0]).item()  # other negatives read row 0, as the reference
    assert isinstance(emb.to_quantized(group_size=64, bits=8), QuantizedScaledEmbedding)


def test_config_unknown_keys_and_unsupported_refused():
    raw = json.loads(CONFIG.read_text())
    with pytest.raises(ConfigError, match=r"unknown keys \['frobnicate'\]: not a moshi config"):
        LmConfig.from_kyutai(raw | {"frobnicate": 1})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LmConfig.from_kyutai(raw | {"depformer_causal": True, "existing_text_end_padding_id": 0})
    with pytest.raises(ConfigError, match="fuser sum .* must name each conditioner"):  # conditioners need a fuser
        LmConfig.from_kyutai(raw | {"conditioners": {"x": {}}})
    # keys of Kyutai's hub repositories (moshi.models.loaders): other model kinds, LoRA adapters
    for extra, match in (
        ({"model_type": "stt"}, "model_type 'stt' makes it Kyutai's STT"),
        ({"lora_name": "lora.safetensors"}, "lora_name"),
        ({"tts_config": {"audio_delay": 2}}, "tts_config"),
    ):
        with pytest.raises(ConfigError, match=match):
            LmConfig.from_kyutai(raw | extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        LmConfig.from_kyutai(raw | {"model_type": "moshi", "lm_gen_config": {"temp": 0.8}, "lora_name": None})
    with pytest.raises(ConfigError, match="missing required key 'card'"):
        LmConfig.from_kyutai({k: v for k, v in raw.items() if k != "card"})
    with pytest.raises(ConfigError, match="delays"):
        LmConfig.from_kyutai(raw | {"delays": [0, 1]})
    assert np.isclose(LmConfig.from_kyutai(raw).transformer.dim_feedforward, 192)


@pytest.mark.parametrize(
    "change,words",
    [
        ({"delays": [0, 10**9] + [1] * 15}, "delays entry = 1000000000 is out of range: use a value from 0 to 1000"),
        ({"num_heads": 0}, "num_heads = 0 is out of range"),
        ({"num_heads": 3}, "not a multiple of num_heads 3"),
        ({"context": 0}, "context = 0"),
        ({"context": None}, "context must be an integer"),
        ({"hidden_scale": 0}, "hidden_scale = 0 is out of range: use a value above 0"),
        ({"dim": 128.5}, "dim must be an integer"),
        ({"dep_q": 0}, "dep_q = 0"),
        ({"n_q": 10**6}, "n_q = 1000000"),
        ({"card": 0}, "card = 0"),
        ({"causal": "yes"}, "causal must be true or false"),
        ({"depformer_multi_linear": 1}, "true or false"),
        ({"norm": "batch"}, "norm = 'batch' is not supported: use one of layer_norm"),
        ({"depformer_gating": "none"}, "depformer_gating = 'none'"),
        ({"layer_scale": -1.0}, "layer_scale = -1.0"),
        ({"max_period": 0}, "max_period = 0"),
        ({"depformer_num_heads": 5}, "depformer transformer"),
        ({"existing_text_padding_id": 48}, "existing_text_padding_id = 48"),
    ],
)
def test_config_values_are_checked_when_read(change, words):
    """Each absurd value: one ConfigError naming the key, the value and what is allowed, before any build."""
    with pytest.raises(ConfigError, match=re.escape(words)):
        LmConfig.from_kyutai(json.loads(CONFIG.read_text()) | change, "config.json")


def test_json_that_no_config_holds_is_refused(tmp_path):
    for text, words in (
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"dim": NaN}', "NaN"),
        ("{", "not valid"),
    ):
        (tmp_path / "c.json").write_text(text)
        with pytest.raises(ConfigError, match=words):
            LmConfig.from_json(tmp_path / "c.json")
    header = b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    (tmp_path / "m.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)
    with pytest.raises(CheckpointError, match="nested too deeply"):
        read_header(tmp_path / "m.safetensors")


@pytest.mark.parametrize("name,advice", [("torch", "Use the 4-bit"), ("mlx_q4", "already the 4-bit")])
def test_load_refuses_what_does_not_fit(name, advice, monkeypatch):
    import moshi_mlx.loading.memory

    monkeypatch.setattr(moshi_mlx.loading.memory, "available_bytes", lambda: 100 * 2**20)
    with pytest.raises(MemoryBudgetError, match=advice):
        load_lm(FILES[name], CONFIG)


def test_describe_precision_from_headers_alone():
    from moshi_mlx.weights.formats import describe_precision
    from moshi_mlx.weights.safetensors_io import read_header
    from support.lm import LM as lm

    assert describe_precision(read_header(lm / "lm_small_mlx_q4.safetensors")) == "4-bit"
    assert describe_precision(read_header(lm / "lm_small_mlx_q8.safetensors")) == "8-bit"
    assert describe_precision(read_header(lm / "lm_small_mlx_bf16.safetensors")) == "bf16"
    assert describe_precision(read_header(lm / "lm_small_torch.safetensors")) == "bf16"


def test_memory_estimate_counts_an_8_bit_cache():
    from moshi_mlx.config import LmConfig
    from moshi_mlx.weights.safetensors_io import TensorInfo

    cfg = LmConfig.preset()
    header = {"w": TensorInfo("U32", (1000, 100))}
    values = 2 * 32 * 3000 * 4096
    assert estimate_bytes(header, cfg, None) == 400_000 + values * 2
    # f32 scales at most
    assert estimate_bytes(header, cfg, None, kv_bits=8) == 400_000 + values + 2 * (values // 64) * 4


def header_7b(precision: str) -> dict[str, TensorInfo]:
    """The released 7B file's header (names, shapes, dtypes), without its 4-15 GB of data."""
    dtypes = {"bfloat16": "BF16", "uint32": "U32", "float32": "F32"}
    return {k: TensorInfo(dtypes[v[1]], tuple(v[0])) for k, v in kyutai_keys("7b")[precision].items()}


def fake_mac(monkeypatch, gib: int) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    pages = {"SC_PHYS_PAGES": gib * 2**30 // 16384, "SC_PAGE_SIZE": 16384}
    monkeypatch.setattr(os, "sysconf", pages.__getitem__)


def test_an_8_gib_mac_holds_the_4_bit_7b_with_an_8_bit_cache(monkeypatch):
    cfg, q4, bf16 = LmConfig.preset(), header_7b("q4"), header_7b("bf16")
    # the estimate agrees with what `bench lm` measures (peak 5.99 GiB, 5.35 with the 8-bit cache)
    assert 5.9 < estimate_bytes(q4, cfg, None) / 2**30 < 6.0
    assert 5.2 < estimate_bytes(q4, cfg, None, kv_bits=8) / 2**30 < 5.35
    fake_mac(monkeypatch, 8)
    available = memory.available_bytes()
    assert available == 6 * 2**30  # physical memory less what macOS keeps
    assert resolve_kv_bits(KV_AUTO, q4, cfg, None, available) == 8
    check_memory_fits(estimate_bytes(q4, cfg, None, kv_bits=8), "7B q4", "", available)
    with pytest.raises(MemoryBudgetError, match="8 bits"):
        check_memory_fits(
            estimate_bytes(q4, cfg, None), "7B q4", "It would fit with its attention cache stored at 8 bits.", available
        )
    fake_mac(monkeypatch, 16)
    available = memory.available_bytes()
    assert resolve_kv_bits(KV_AUTO, q4, cfg, None, available) is None  # as the reference
    assert resolve_kv_bits(KV_AUTO, bf16, cfg, None, available) == 8
    with pytest.raises(MemoryBudgetError):  # bf16 7B: 15.4 GiB of weights alone
        check_memory_fits(estimate_bytes(bf16, cfg, None, kv_bits=8), "7B bf16", "", available)
    assert resolve_kv_bits(None, q4, cfg, None, 0) is None and resolve_kv_bits(8, q4, cfg, None, 2**40) == 8


def test_load_lm_auto_kv_bits_quantizes_the_cache_only_when_memory_is_tight(monkeypatch):
    cfg = LmConfig.from_json(CONFIG)
    header = read_header(FILES["mlx_q4"])
    full, eight = estimate_bytes(header, cfg, None), estimate_bytes(header, cfg, None, kv_bits=8)
    assert eight < full
    tight = memory.HEADROOM + (full + eight) // 2
    monkeypatch.setattr(memory, "available_bytes", lambda: tight)
    assert load_lm(FILES["mlx_q4"], CONFIG, kv_bits=KV_AUTO).kv_bits == 8
    with pytest.raises(MemoryBudgetError, match="would fit with its attention cache stored at 8 bits"):
        load_lm(FILES["mlx_q4"], CONFIG)  # the reference's unquantized cache, asked for explicitly
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.HEADROOM + full)
    assert load_lm(FILES["mlx_q4"], CONFIG, kv_bits=KV_AUTO).kv_bits is None
    with pytest.raises(ValueError, match="kv_bits must be None or 8, got 4"):
        load_lm(FILES["mlx_q4"], CONFIG, kv_bits=4)


def test_metal_keeps_the_weights_resident(monkeypatch):
    import mlx.core as mx

    assert memory.keep_resident(10 * 2**30) is None  # not on Metal: nothing to wire
    wired = []
    monkeypatch.setattr(mx.metal, "is_available", lambda: True)
    monkeypatch.setattr(mx, "device_info", lambda: {"max_recommended_working_set_size": 6 * 2**30})
    monkeypatch.setattr(mx, "set_wired_limit", lambda n: wired.append(n) or 0)
    assert memory.keep_resident(4 * 2**30) is None and wired == [6 * 2**30]
    note = memory.keep_resident(int(5.8 * 2**30))
    assert note is not None and "5.8 GiB of the 6.0 GiB" in note


def test_a_release_that_cannot_fit_is_refused_before_its_download(monkeypatch, tmp_path):
    from moshi_mlx.loading.memory import check_download_fits, release_header

    cfg = LmConfig.preset()
    for bits, precision in ((4, "q4"), (8, "q8"), (None, "bf16")):  # the config alone predicts the header
        predicted = estimate_bytes(release_header(bits, cfg), cfg, None)
        assert abs(predicted / estimate_bytes(header_7b(precision), cfg, None) - 1) < 1e-3
    fake_mac(monkeypatch, 16)
    check_download_fits(8)  # 9.1 GiB fits in 14
    with pytest.raises(
        MemoryBudgetError, match="The bf16 Moshi model needs about 15.1 GiB.*4-bit.*Nothing was downloaded"
    ):
        check_download_fits(None)
    fake_mac(monkeypatch, 8)
    check_download_fits(4)  # with the 8-bit cache it fits in 6 GiB
    with pytest.raises(MemoryBudgetError, match="8-bit"):
        check_download_fits(8)
    (tmp_path / "config.json").write_text('{"moshi_name": "model.safetensors"}')
    check_download_fits(None, tmp_path / "config.json")  # not an LM config: left to load_lm
