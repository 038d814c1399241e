"""Hibiki: its config, conditioner, loading in both layouts, quantizing, and greedy parity with the reference
(Kyutai's `moshi` 0.2.13, fixtures by tests/reference/make_hibiki_fixtures.py) with and without guidance."""

from __future__ import annotations

import json
from functools import cache

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.config import LmConfig
from moshi_mlx.errors import ConfigError
from moshi_mlx.guidance import GuidedLm
from moshi_mlx.lm_gen import LmGen
from moshi_mlx.loading.lm import TEXT_EOS, load_lm
from moshi_mlx.loading.memory import estimate_bytes, release_header
from moshi_mlx.weights.safetensors_io import load_tensors, read_header
from quantize.__main__ import run
from quantize.convert import Options
from support import ASSETS
from support.lm import greedy_run

HIBIKI = ASSETS / "hibiki"
CONFIG = HIBIKI / "hibiki_small.json"
TORCH = HIBIKI / "hibiki_small_torch.safetensors"


@cache
def goldens() -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in load_tensors(HIBIKI / "hibiki_small_goldens.safetensors").items()}


@cache
def model():
    return load_lm(TORCH, CONFIG, dtype=mx.float32)


def text_logits_run(lm, cfg_coef: float, user_codes: np.ndarray) -> np.ndarray:
    gen = LmGen(GuidedLm(lm, cfg_coef).as_lm(), temp=0.0, text_temp=0.0)
    state, rows = gen.init_state(), []
    for frame in user_codes:
        step, _, state = gen.advance(state, mx.array(frame[None]))
        mx.eval(step.text_logits, gen.state_arrays(state))
        rows.append(np.array(step.text_logits[0]))
    return np.stack(rows)


def test_the_hibiki_schema_is_read_into_the_config():
    cfg = LmConfig.from_json(CONFIG)
    assert cfg.model_type == "hibiki" and cfg.max_delay == 2 and (cfg.n_q, cfg.dep_q, cfg.user_codebooks) == (16, 8, 8)
    (lut,) = cfg.conditioners
    assert (lut.name, lut.n_bins, lut.dim, lut.index("very_good")) == ("description", 31, 16, 4)
    raw = json.loads(CONFIG.read_text())
    for change, words in (
        ({"fuser": raw["fuser"] | {"cross": ["description"]}}, "fuser cross"),
        ({"fuser": raw["fuser"] | {"sum": []}}, "must name each conditioner"),
        ({"conditioners": {"description": {"type": "tensor", "tensor": {"dim": 8}}}}, "type 'tensor'"),
    ):
        with pytest.raises(ConfigError, match=words):
            LmConfig.from_kyutai(raw | change)


def test_the_description_conditioner_matches_the_reference():
    g = goldens()
    c = np.array(model().condition({"description": ["very_good", "very_bad"]}))
    np.testing.assert_allclose(c, np.stack([g["condition_very_good"], g["condition_very_bad"]]), atol=1e-6)


@pytest.mark.parametrize("coef", ["1", "3"])
def test_greedy_generation_with_guidance_gives_the_reference_tokens(coef):
    g = goldens()
    lm = model()
    for compiled in (True, False):  # LmGen's compiled step, and op by op
        tokens = greedy_run(GuidedLm(lm, float(coef)).as_lm(), g["user_codes"], compile=compiled)
        np.testing.assert_array_equal(tokens, g[f"cfg{coef}_tokens"])
    logits = text_logits_run(lm, float(coef), g["user_codes"][:6])
    np.testing.assert_allclose(logits, g[f"cfg{coef}_text_logits"][:6], atol=2e-4, rtol=1e-4)


def test_the_end_of_text_embedding_is_that_of_padding_as_the_reference_loads_hibiki():
    g, lm = goldens(), model()
    assert mx.array_equal(lm.text_emb.weight[TEXT_EOS], lm.text_emb.weight[3]).item()
    assert TEXT_EOS in g["cfg1_tokens"][2:-1, 0]  # the fixture feeds an end-of-text token back
    raw = load_lm(TORCH, CONFIG, dtype=mx.float32)
    rows = mx.array(
        raw.text_emb.weight
    )  # a new table (an item assignment into the loaded one is not seen: Lm.stack_embeddings)
    rows[TEXT_EOS] = load_tensors(TORCH)["text_emb.weight"][TEXT_EOS].astype(mx.float32)
    raw.text_emb.weight = rows
    assert not np.array_equal(greedy_run(GuidedLm(raw, 1.0).as_lm(), g["user_codes"]), g["cfg1_tokens"])


def test_guidance_needs_a_conditioned_model_and_a_sane_coefficient():
    from support.lm import model as moshi_model

    with pytest.raises(ConfigError, match="needs a conditioned model"):
        GuidedLm(moshi_model("torch"), 3.0)
    with pytest.raises(ConfigError, match="cfg_coef"):
        GuidedLm(model(), float("nan"))


def test_quantize_converts_the_pytorch_release_and_every_file_loads_and_agrees(tmp_path):
    out = tmp_path / "hibiki-mlx"
    result = run(str(TORCH), out, str(CONFIG), Options(progress=False), echo=lambda *_: None)
    reports = {r.file_name: r for r in result.reports}
    assert set(reports) == {"model.safetensors", "model.q8.safetensors", "model.q4.safetensors"}
    written = json.loads((out / "config.json").read_text())
    assert (
        written["model_type"] == "hibiki" and written["conditioners"] == json.loads(CONFIG.read_text())["conditioners"]
    )
    g = goldens()
    for name, floor in (("model.safetensors", 1.0), ("model.q8.safetensors", 0.5)):
        lm = load_lm(out / name, out / "config.json", dtype=mx.float32 if name == "model.safetensors" else None)
        assert mx.array_equal(lm.text_emb["weight"][TEXT_EOS], lm.text_emb["weight"][3]).item()
        tokens = greedy_run(GuidedLm(lm, 3.0).as_lm(), g["user_codes"])
        agree = float((tokens[2:] == g["cfg3_tokens"][2:]).mean())
        assert agree >= floor, (name, agree)
    assert reports["model.q8.safetensors"].agreement is not None


def test_the_memory_estimate_knows_hibiki_before_download():
    cfg = LmConfig.from_json(CONFIG)
    header = read_header(TORCH)
    predicted = release_header(None, cfg)
    assert {k: v.shape for k, v in predicted.items()} == {k: v.shape for k, v in header.items()}
    # guidance runs two rows: the cache is counted twice
    t = cfg.transformer
    assert (
        estimate_bytes(header, cfg, None) - estimate_bytes(header, cfg, None, batch=1)
        == 2 * t.num_layers * t.context * t.d_model * 2
    )
