"""The rest of the Moshi family: the RL-tuned checkpoints and PersonaPlex, on tiny repositories in their layouts."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.config import LmConfig
from moshi_mlx.errors import ConfigError
from moshi_mlx.loading.memory import estimate_bytes, release_header
from moshi_mlx.release import FAMILY_REPOS, PERSONAPLEX_REPO
from support.cli import run_module
from support.family import make_repo, tiny_lm_config


@pytest.fixture(scope="module")
def wav(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "in.wav"
    t = np.arange(24_000) / 24_000
    sf.write(str(path), (0.3 * np.sin(2 * np.pi * 200 * t)).astype(np.float32), 24_000)
    return path


def test_an_rl_checkpoint_config_is_read_as_released(tmp_path: Path) -> None:
    """Kyutai's loader keys (file names, model_type, lm_gen_config, model_id) are all known: no warning."""
    repo = make_repo(tmp_path / "moshika-rl-seamless")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = LmConfig.from_json(repo / "config.json")
    assert (cfg.model_type, cfg.dep_q, cfg.user_codebooks) == ("moshi", 8, 8)
    assert "kyutai/moshika-rl-seamless" in FAMILY_REPOS and "kyutai/personaplex-rl-seamless" in FAMILY_REPOS


def test_a_config_naming_only_its_type_is_that_types_release() -> None:
    # nvidia/personaplex-7b-v1's config.json: NVIDIA's reference builds the model from constants
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cfg = LmConfig.from_kyutai({"model_type": "personaplex", "version": "7b-v1"})
    assert cfg == LmConfig.preset("personaplex_7b_v1")
    assert (cfg.depformer.num_slices, cfg.dep_q, cfg.user_codebooks, cfg.dim) == (16, 8, 8, 4096)
    assert LmConfig.from_kyutai({"model_type": "moshi"}) == LmConfig.preset()
    with pytest.raises(ConfigError, match=r"unknown keys \['seanet'\]"):  # a key it does not know: not a stand-in
        LmConfig.from_kyutai({"model_type": "moshi", "seanet": {}})


def test_lora_adapters_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="lora=True is not supported"):
        LmConfig.from_kyutai(tiny_lm_config() | {"lora": True, "lora_rank": 128, "lora_scaling": 2.0})


def test_personaplex_needs_its_depformer_to_cover_both_voices() -> None:
    with pytest.raises(ConfigError, match="dep_q must equal n_q"):
        LmConfig.from_kyutai(tiny_lm_config() | {"model_type": "personaplex"})


def test_the_release_sizes_are_known_before_download() -> None:
    """The preflight's estimate counts PersonaPlex's 16 depformer slices: 8 more than Moshi's (2 bytes each in bf16)."""
    moshi, plex = LmConfig.preset(), LmConfig.preset("personaplex_7b_v1")
    header = release_header(None, plex)
    assert sum(k.startswith("linears.") for k in header) == 16
    dep, dim = 1024, 4096  # depformer width, temporal width
    # linear_in, linear_out, previous-token embedding, and per layer: attention + gated MLP (2816 hidden)
    per_slice = dep * dim + 2048 * dep + 2049 * dep + 6 * (4 * dep * dep + 3 * dep * 2816)
    extra = estimate_bytes(header, plex, None) - estimate_bytes(release_header(None, moshi), moshi, None)
    assert extra == 2 * 8 * per_slice
    q4 = estimate_bytes(release_header(4, plex), plex, None) - estimate_bytes(release_header(4, moshi), moshi, None)
    assert 0 < q4 < extra / 3  # quantized slices cost about a quarter
    assert PERSONAPLEX_REPO in FAMILY_REPOS


def test_an_rl_checkpoint_converts_and_runs_like_moshi(tmp_path: Path, wav: Path) -> None:
    repo = make_repo(tmp_path / "moshika-rl-seamless")
    q = run_module("quantize", str(repo), "--out", str(tmp_path / "q4"), "--q-bits", "4", "--no-progress")
    assert q.code == 0, q.why()
    assert "model.q4.safetensors" in q.out
    written = json.loads((tmp_path / "q4" / "config.json").read_text())
    assert written["model_type"] == "moshi" and written["moshi_name"] == "model.q4.safetensors"
    assert written["lm_gen_config"] == json.loads((repo / "config.json").read_text())["lm_gen_config"]
    _runs(tmp_path / "q4", wav, tmp_path / "o.wav")


def test_a_personaplex_release_runs_as_published(tmp_path: Path, wav: Path) -> None:
    """The PyTorch layout loaded as it is (tests/persona/test_persona_cli.py converts one with quantize)."""
    _runs(make_repo(tmp_path / "personaplex-rl-seamless", personaplex=True), wav, tmp_path / "o.wav")


def _runs(model: Path, wav: Path, out: Path) -> None:
    ran = run_module("moshi_mlx.run", "--hf-repo", str(model), "--input", str(wav), "--output", str(out))
    assert ran.code == 0, ran.why()
    pcm, rate = sf.read(str(out))
    assert rate == 24_000 and len(pcm) > 0


def test_personaplex_loads_the_16_slices_its_file_holds(tmp_path: Path) -> None:
    import mlx.core as mx

    from moshi_mlx.loading.lm import load_lm

    repo = make_repo(tmp_path / "plex", personaplex=True)
    lm = load_lm(repo / "model.safetensors", repo / "config.json")
    assert len(lm.depformer.slices) == 16 and lm.cfg.dep_q == 8
    file = mx.load(str(repo / "model.safetensors"))
    fused = file["depformer.layers.0.self_attn.in_proj_weight"]  # [16 * 3 * D, D]: step k's rows are chunk k
    rows = fused.shape[0] // 16
    got = lm.depformer.slices[12].transformer.layers[0].self_attn.in_proj.weight
    assert mx.array_equal(got, fused[12 * rows : 13 * rows]).item()
    assert mx.array_equal(lm.depformer.slices[15].emb.weight, file["depformer_emb.14.weight"]).item()


def test_a_releases_sampling_defaults_apply_unless_flags_say_otherwise(tmp_path: Path) -> None:
    """Kyutai's server passes config.json's lm_gen_config to LMGen: an RL-tuned release may ship its own."""
    from moshi_mlx.pipeline import Sampling
    from moshi_mlx.run import _resolve, _sampling, build_parser

    repo = make_repo(tmp_path / "rl")
    config = json.loads((repo / "config.json").read_text())
    config["lm_gen_config"] = {"temp": 0.6, "temp_text": 0.5, "top_k": 100, "top_k_text": 10}
    (repo / "config.json").write_text(json.dumps(config))

    def sampling(*flags: str) -> Sampling:
        args = build_parser().parse_args(["--hf-repo", str(repo), *flags])
        return _sampling(args, _resolve(args))

    assert sampling() == Sampling(0.6, 0.5, 100, 10)
    assert sampling("--temp", "0.9", "--seed", "3") == Sampling(0.9, 0.5, 100, 10, seed=3)
    config["lm_gen_config"] = {"temp": -1}
    (repo / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match="temp -1 is out of range"):
        sampling()
