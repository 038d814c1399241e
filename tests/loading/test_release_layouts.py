"""Each release this port names, as published: its file names and config.json, in a real Hugging Face cache.

The hub cannot be reached from the test machines, so the layouts are taken from evidence and pinned here:
  * kyutai/moshi{ko,ka}-mlx-{q4,q8,bf16}, kyutai/moshiko-pytorch-bf16: the hub's file listings (model card
    "Files" pages): model{.q4,.q8,}.safetensors, the Mimi and the tokenizer, no config.json; Kyutai's
    moshi_mlx.local asks for exactly these names.
  * kyutai/stt-1b-en_fr-{mlx,candle}, kyutai/stt-2.6b-en(-mlx): config.json naming `mimi_name`
    (mimi-pytorch-e351c8d8@125.safetensors, the same file as Moshi's Mimi: same size and sha256) and
    `tokenizer_name`, the LM as model.safetensors (delayed-streams-modeling's scripts/stt_from_file_mlx.py and
    configs/config-stt-*-hf.toml). The 2.6B's config.json below is the one of kyutai/stt-2.6b-en at revision
    a07aec56 (sha256-checked by a third-party tool); the 1B's differs in its sizes, heads and delays.
  * kyutai/hibiki-1b-mlx-bf16 (revision b3d6291f): config.json, hibiki-mlx-dc2cf5a5@80.safetensors,
    mimi-dbaa9758@125.safetensors, tokenizer_spm_48k_multi6_2.model; the config's architecture fields as
    third-party code that checks the release lists them (dim 2048, 16 layers, context 500, ...).
  * nvidia/personaplex-7b-v1 (and kyutai/personaplex-rl-seamless): model.safetensors, the Mimi, the
    tokenizer (NVIDIA's loaders.MOSHI_NAME, MIMI_NAME, TEXT_TOKENIZER_NAME), voices.tgz, and a config.json
    the reference never reads (the hub tags the model `personaplex`: its model_type).
Weights are empty files: this checks which files are asked for and how each config.json is read.
"""

from __future__ import annotations

import json
from pathlib import Path

import huggingface_hub.constants
import pytest

from moshi_mlx.config import LmConfig
from moshi_mlx.loading import hub
from moshi_mlx.loading.memory import release_header
from moshi_mlx.release import MIMI_FILE, PERSONAPLEX_REPO, STT_REPO, STT_REPO_VAD, TOKENIZER_FILE, mlx_repo

STT_MIMI = "mimi-pytorch-e351c8d8@125.safetensors"
STT_2_6B_CONFIG = {  # kyutai/stt-2.6b-en's config.json at revision a07aec56d22be5589cd0bc8709c75b6cf3e3039d
    "card": 2048,
    "n_q": 32,
    "dep_q": 0,
    "delays": [0] * 33,
    "dim": 2048,
    "text_card": 4000,
    "existing_text_padding_id": 3,
    "num_heads": 32,
    "num_layers": 48,
    "hidden_scale": 4.125,
    "causal": True,
    "layer_scale": None,
    "context": 375,
    "max_period": 100000.0,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 1024,
    "depformer_num_heads": 16,
    "depformer_num_layers": 6,
    "depformer_dim_feedforward": None,
    "depformer_multi_linear": True,
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "conditioners": {},
    "cross_attention": False,
    "model_id": {"sig": "dabcc802", "epoch": 50},
    "lm_gen_config": {"temp": 0.0, "temp_text": 0.0, "top_k": 250, "top_k_text": 50},
    "stt_config": {"audio_delay_seconds": 2.5, "audio_silence_prefix_seconds": 1.0},
    "model_type": "stt",
    "mimi_name": STT_MIMI,
    "tokenizer_name": "tokenizer_en_audio_4000.model",
}
STT_1B_CONFIG = STT_2_6B_CONFIG | {
    "text_card": 8000,
    "num_heads": 16,
    "num_layers": 16,
    "context": 750,
    "extra_heads_num_heads": 4,  # the end-of-turn heads (configs/config-stt-en_fr-hf.toml: extra_heads)
    "extra_heads_dim": 6,
    "stt_config": {"audio_delay_seconds": 0.5, "audio_silence_prefix_seconds": 0.0},
    "tokenizer_name": "tokenizer_en_fr_audio_8000.model",
}
HIBIKI_CONFIG = {
    "moshi_name": "hibiki-mlx-dc2cf5a5@80.safetensors",
    "mimi_name": "mimi-dbaa9758@125.safetensors",
    "tokenizer_name": "tokenizer_spm_48k_multi6_2.model",
    "model_type": "hibiki",
    "dim": 2048,
    "text_card": 48000,
    "existing_text_padding_id": 3,
    "n_q": 16,
    "dep_q": 8,
    "card": 2048,
    "num_heads": 16,
    "num_layers": 16,
    "hidden_scale": 4.125,
    "causal": True,
    "layer_scale": None,
    "context": 500,
    "max_period": 100000,
    "gating": "silu",
    "norm": "rms_norm_f32",
    "positional_embedding": "rope",
    "depformer_dim": 1024,
    "depformer_dim_feedforward": 4224,
    "depformer_num_heads": 16,
    "depformer_num_layers": 6,
    "depformer_causal": True,
    "depformer_layer_scale": None,
    "depformer_context": 16,
    "depformer_max_period": 10000,
    "depformer_pos_emb": "none",
    "depformer_weights_per_step": True,
    "delays": [0] + ([0] + [2] * 7) * 2,
    "conditioners": {
        "description": {
            "type": "lut",
            "lut": {
                "n_bins": 31,
                "dim": 16,
                "tokenizer": "noop",
                "possible_values": ["very_bad", "bad", "neutral", "good", "very_good"],
            },
        }
    },
    "fuser": {"cross_attention_pos_emb": False, "cross_attention_pos_emb_scale": 1, "sum": ["description"]},
}
MOSHI = {MIMI_FILE, TOKENIZER_FILE, "README.md"}
STT_1B = {"model.safetensors", STT_MIMI, "tokenizer_en_fr_audio_8000.model"}
# repo -> (its files, its config.json or None, the LM file, Mimi, tokenizer and model_type resolved)
RELEASES: dict[str, tuple[set[str], dict | None, tuple[str, str, str, str]]] = {
    mlx_repo(4, "moshiko"): (MOSHI | {"model.q4.safetensors"}, None, ("model.q4.safetensors", MIMI_FILE, "", "")),
    mlx_repo(8, "moshika"): (MOSHI | {"model.q8.safetensors"}, None, ("model.q8.safetensors", MIMI_FILE, "", "")),
    mlx_repo(None, "moshiko"): (MOSHI | {"model.safetensors"}, None, ("model.safetensors", MIMI_FILE, "", "")),
    "kyutai/moshiko-pytorch-bf16": (MOSHI | {"model.safetensors"}, None, ("model.safetensors", MIMI_FILE, "", "")),
    STT_REPO: (STT_1B, STT_1B_CONFIG, ("model.safetensors", STT_MIMI, "tokenizer_en_fr_audio_8000.model", "stt")),
    STT_REPO_VAD: (STT_1B, STT_1B_CONFIG, ("model.safetensors", STT_MIMI, "tokenizer_en_fr_audio_8000.model", "stt")),
    "kyutai/stt-2.6b-en-mlx": (
        {"model.safetensors", STT_MIMI, "tokenizer_en_audio_4000.model"},
        STT_2_6B_CONFIG,
        ("model.safetensors", STT_MIMI, "tokenizer_en_audio_4000.model", "stt"),
    ),
    "kyutai/hibiki-1b-mlx-bf16": (
        {HIBIKI_CONFIG[k] for k in ("moshi_name", "mimi_name", "tokenizer_name")} | {"README.md"},
        HIBIKI_CONFIG,
        (HIBIKI_CONFIG["moshi_name"], HIBIKI_CONFIG["mimi_name"], HIBIKI_CONFIG["tokenizer_name"], "hibiki"),
    ),
    PERSONAPLEX_REPO: (
        MOSHI | {"model.safetensors", "voices.tgz"},
        {"model_type": "personaplex"},
        ("model.safetensors", MIMI_FILE, "", "personaplex"),
    ),
}


def cache_release(cache: Path, repo: str, files: set[str], config: dict | None) -> None:
    """`repo` as huggingface_hub keeps a download: models--owner--name/{refs/main, snapshots/<commit>/...}."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    folder = cache / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text(commit)
    snapshot = folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name in files:
        (snapshot / name).write_bytes(b"")
    if config is not None:
        (snapshot / hub.CONFIG_FILE).write_text(json.dumps(config, indent=2))


@pytest.mark.parametrize("repo", list(RELEASES))
def test_each_release_resolves_by_its_published_names_from_the_hugging_face_cache(repo, tmp_path, monkeypatch):
    files, config, (lm, mimi, tokenizer, kind) = RELEASES[repo]
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    cache_release(tmp_path, repo, files, config)
    got = hub.resolve_model_files(repo, local_only=True)  # huggingface_hub's own cache lookups, no network
    assert (got.moshi.name, got.mimi.name, got.tokenizer.name) == (lm, mimi, tokenizer or TOKENIZER_FILE)
    assert got.quant == {"model.q4.safetensors": 4, "model.q8.safetensors": 8}.get(lm)
    if config is None:
        assert got.config is None  # the released Moshi 7B config (presets/moshi_7b_202409.json)
    else:
        assert got.config is not None and LmConfig.from_json(got.config).model_type == kind


def test_the_stt_configs_as_released_give_the_published_shapes() -> None:
    """kyutai/stt-2.6b-en's model.safetensors holds gating.linear_in [11264, 2048] and linear_out
    [2048, 5632] in each of its 48 layers, no depformer and no extra heads (the same third-party check)."""
    cfg = LmConfig.from_kyutai(STT_2_6B_CONFIG)
    t = cfg.transformer
    assert (t.num_layers, t.num_heads, t.context, t.gating_hidden, cfg.depformer) == (48, 32, 375, 5632, None)
    assert (cfg.stt.audio_delay_seconds, cfg.stt.audio_silence_prefix_seconds, cfg.n_q) == (2.5, 1.0, 32)
    assert cfg.extra_heads_num_heads == 0 and cfg.text_card == 4000
    one = LmConfig.from_kyutai(STT_1B_CONFIG)
    assert (one.extra_heads_num_heads, one.transformer.num_layers, one.stt.audio_delay_seconds) == (4, 16, 0.5)
    hibiki = LmConfig.from_kyutai(HIBIKI_CONFIG)
    assert (hibiki.depformer.transformer.gating_hidden, hibiki.transformer.context, hibiki.max_delay) == (2816, 500, 2)


def test_the_published_file_sizes_are_what_the_configs_and_quantization_facts_predict() -> None:
    """The hub's sizes (GB as it rounds them) against release_header: q4 in groups of 32 and q8 in groups of 64,
    embeddings quantized too (release.GROUP_SIZE), bf16 otherwise; PersonaPlex's file holds 16 depformer
    slices; kyutai/stt-2.6b-en's exact size, less its safetensors header (tens of kB)."""

    def gb(bits, cfg: LmConfig) -> float:
        return round(sum(t.nbytes for t in release_header(bits, cfg).values()) / 1e9, 2)

    moshi = LmConfig.preset()
    assert (gb(4, moshi), gb(8, moshi), round(gb(None, moshi), 1)) == (4.81, 8.17, 15.4)  # kyutai/moshiko-mlx-*
    assert round(gb(None, LmConfig.preset("personaplex_7b_v1")), 1) == 16.7  # nvidia/personaplex-7b-v1
    stt = release_header(None, LmConfig.from_kyutai(STT_2_6B_CONFIG))
    assert len(stt) == 323 and 0 < 5_234_275_128 - sum(t.nbytes for t in stt.values()) < 64 * 1024
