"""Models of the Moshi family this port does not run are refused by name, never run as plain Moshi (those it
runs: Moshi, Hibiki, and STT through `python -m moshi_mlx.transcribe`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.config import LmConfig
from moshi_mlx.config.family import member
from moshi_mlx.errors import ConfigError
from support.cli import E2E, assert_one_line_error, run_module

MOSHI = json.loads((E2E / "config.json").read_text())

# (keys added to a working Moshi config, words the refusal must say)
MEMBERS = [
    ({"model_type": "tts"}, "Kyutai's TTS (text-to-speech)"),
    ({"tts_config": {"audio_delay": 1.28}}, "its tts_config makes it Kyutai's TTS"),
    ({"model_type": "moshivis"}, "MoshiVis"),
    ({"cross_attention": True}, "cross-attention (to image tokens) makes it MoshiVis"),
    ({"model_type": "hibiki", "kv_repeat": 2}, "grouped-query attention (kv_repeat 2) makes it Hibiki-Zero"),
    ({"model_type": "helium"}, "model_type 'helium' is not a model this port knows"),
    ({"model_type": 3}, "model_type 3 is not a model this port knows"),
    ({"image_encoder": "paligemma"}, "unknown keys ['image_encoder']: not a moshi config"),
]


@pytest.mark.parametrize("extra,words", MEMBERS)
def test_each_member_is_refused_by_name_in_one_sentence(extra, words):
    with pytest.raises(ConfigError) as e:
        LmConfig.from_kyutai(MOSHI | extra, source="config.json")
    text = str(e.value)
    assert words in text and text.count(". ") == 0 and "\n" not in text, text
    assert "does not run" in text or "this port knows" in text


def test_the_kinds_it_runs_pass_the_family_check():
    assert member({}, "x") == "moshi" and member({"model_type": "hibiki"}, "x") == "hibiki"
    assert member({"model_type": "stt", "stt_config": {"audio_delay_seconds": 0.5}}, "x") == "stt"  # transcribe
    with pytest.raises(ConfigError, match="stt_config belongs to speech-to-text models"):
        member({"stt_config": {"audio_delay_seconds": 0.5}}, "x")
    assert member({"tts_config": {}, "stt_config": None, "kv_repeat": 1, "cross_attention": False}, "x") == "moshi"


@pytest.mark.parametrize("extra,words", [MEMBERS[1], MEMBERS[4], MEMBERS[7]])
def test_run_refuses_a_folder_of_another_member_before_looking_for_weights(tmp_path: Path, extra, words):
    """A folder with only a config.json: the refusal comes first (exit 2, one line), not 'no weights here'."""
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(MOSHI | extra))
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(4800, np.float32), 24000)
    r = run_module("moshi_mlx.run", "--hf-repo", str(folder), "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert_one_line_error(r, 2, words)
    assert not (tmp_path / "o.wav").exists()


def test_a_dialog_config_whose_depformer_predicts_every_stream_is_refused_with_the_personaplex_hint(tmp_path: Path):
    """dep_q = n_q leaves the user no codebook: a Moshi config so shaped (PersonaPlex's weights with Kyutai's
    config and no model_type) ran a model that never heard the user, or failed later in Mimi's codebook
    count; refused at once (exit 2, one line) naming the model_type it likely needs."""
    shaped = MOSHI | {"dep_q": MOSHI["n_q"]}
    with pytest.raises(ConfigError, match='n_q and dep_q are both .*"model_type": "personaplex"'):
        LmConfig.from_kyutai(shaped, source="config.json")
    folder = tmp_path / "model"
    shutil.copytree(E2E, folder)  # the weights are there: the config is what is wrong
    (folder / "config.json").write_text(json.dumps(shaped))
    wav = tmp_path / "in.wav"
    sf.write(wav, np.zeros(4800, np.float32), 24000)
    r = run_module("moshi_mlx.run", "--hf-repo", str(folder), "--input", str(wav), "--output", str(tmp_path / "o.wav"))
    assert_one_line_error(r, 2, '"model_type": "personaplex"')
    assert not (tmp_path / "o.wav").exists()
