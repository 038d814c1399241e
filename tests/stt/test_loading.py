"""The STT release layouts through the common loaders, quantizer and memory estimates."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.config import LmConfig
from moshi_mlx.loading.lm import load_lm
from moshi_mlx.loading.memory import estimate_bytes, release_header
from moshi_mlx.stt.stream import Stt
from moshi_mlx.weights.lm_torch import torch_layout_shapes
from moshi_mlx.weights.safetensors_io import read_header
from support.cli import run_module
from support.stt import CONFIG, WEIGHTS, goldens, make_repo


def greedy_tokens(lm, codes: np.ndarray) -> np.ndarray:
    stt, out = Stt(lm), []
    state = stt.init_state()
    for frame in codes:
        step, state = stt.advance(state, mx.array(frame[None]))
        mx.eval(step, Stt.state_arrays(state))
        out.append(int(step.text_token[0]))
    return np.array(out)


def test_the_pytorch_release_layout_is_what_the_config_says():
    header = read_header(WEIGHTS)
    shapes = torch_layout_shapes(LmConfig.from_json(CONFIG))
    assert {k: tuple(v.shape) for k, v in header.items()} == shapes  # extra_heads.{i}, no depformer


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """`python -m quantize` over a PyTorch STT release folder -> bf16, q8, q4 in Kyutai's MLX layout."""
    src = make_repo(tmp_path_factory.mktemp("stt-torch"))
    out = tmp_path_factory.mktemp("stt-mlx") / "out"
    ran = run_module("quantize", src, "--out", out, "--no-progress")
    assert ran.code == 0, ran.why()
    assert "model.q4.safetensors" in ran.out and "text top-1" in ran.out
    return out


@pytest.mark.parametrize(
    "name,floor", [("model.safetensors", 0.9), ("model.q8.safetensors", 0.75), ("model.q4.safetensors", 0.5)]
)
def test_each_converted_precision_loads_and_agrees_with_the_reference(converted, name, floor):
    g = goldens()
    cfg = LmConfig.from_json(converted / "config.json")
    header = read_header(converted / name)
    bits = {"model.safetensors": None, "model.q8.safetensors": 8, "model.q4.safetensors": 4}[name]
    # the memory preflight's estimate of a release before download is the file's own
    assert estimate_bytes(release_header(bits, cfg), cfg, None) == estimate_bytes(header, cfg, None)
    lm = load_lm(converted / name, converted / "config.json")  # the file's precision, float32 activations if quantized
    agree = float((greedy_tokens(lm, g["codes"]) == g["text_tokens"]).mean())
    print(f"{name}: greedy text agreement with the float32 reference over 40 steps: {agree:.3f}")
    assert agree >= floor


def test_the_mlx_layout_names_the_extra_heads_as_kyutais_moshi_mlx_and_gives_the_references(converted, tmp_path):
    """Kyutai's MLX Lm (kyutai-labs/moshi moshi_mlx/models/lm.py) holds `extra_heads` as a list of bias-free Linears
    counted by the config's extra_heads_num_heads / extra_heads_dim, loaded strictly: `extra_heads.{i}.weight`
    [dim_out, dim] in an MLX release, as in the PyTorch one (its load_pytorch_weights copies them unrenamed)."""
    import json

    from moshi_mlx.errors import CheckpointError

    header = read_header(converted / "model.safetensors")
    assert {k: tuple(v.shape) for k, v in header.items() if k.startswith("extra_heads.")} == {
        f"extra_heads.{i}.weight": (6, 64) for i in range(4)
    }
    g = goldens()
    stt = Stt(load_lm(converted / "model.safetensors", converted / "config.json", dtype=mx.float32))
    state, heads = stt.init_state(), []
    for frame in g["codes"]:
        out, state = stt.advance(state, mx.array(frame[None]))
        mx.eval(out, Stt.state_arrays(state))
        heads.append(np.array(out.extra_heads[0]))
    np.testing.assert_allclose(np.array(heads), g["extra_heads"], atol=1e-5)  # the bf16 weights are the reference's
    # a config that counts no heads (as the -mlx release's, whose heads Kyutai's --vad scripts take from -candle)
    # does not take a file that has them: strict, as Kyutai's load_weights(strict=True)
    raw = json.loads((converted / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({k: v for k, v in raw.items() if not k.startswith("extra_heads")}))
    with pytest.raises(CheckpointError, match="extra_heads.0.weight"):
        load_lm(converted / "model.safetensors", tmp_path / "config.json")
