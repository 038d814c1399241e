"""PersonaPlex with a voice and a role prompt: greedy float32 tokens identical to NVIDIA's reference.

Goldens: tests/reference/make_personaplex_fixtures.py (the reference's LMGen, offline.py's sequence). The
reference's step returns the frame its model computed at the previous call; our first frame after the prompt
is thus the one `run_prompt` returns, and our frame after user frame i is the reference's after frame i + 1.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.lm_gen import LmGen
from moshi_mlx.loading.lm import load_lm
from moshi_mlx.loading.mimi import load_mimi
from moshi_mlx.persona.prompt import Prompt, encode_frames, prompt_codes, role_tokens, run_prompt
from moshi_mlx.persona.voices import VoicePrompt, read_voice_preset, voice_from_audio
from moshi_mlx.weights.safetensors_io import load_tensors
from support.cli import E2E

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "personaplex"
ROLE, OTHER_ROLE = "You are a wise and friendly teacher.", "You enjoy having a good conversation."  # the script's


@pytest.fixture(scope="module")
def goldens() -> dict[str, np.ndarray]:
    return {k: np.array(v) for k, v in load_tensors(ASSETS / "goldens.safetensors").items()}


@pytest.fixture(scope="module")
def lm():
    return load_lm(ASSETS / "model.safetensors", ASSETS / "lm_config.json", dtype=mx.float32)


@pytest.fixture(scope="module")
def gen(lm) -> LmGen:
    """One generator for every conversation here (states are explicit): compiled once."""
    return LmGen(lm, temp=0.0, text_temp=0.0, seed=0)


@pytest.fixture(scope="module")
def mimi():
    codec = load_mimi(E2E / "tokenizer-e351c8d8-checkpoint125.safetensors", config=E2E / "mimi_config.json")
    codec.set_num_codebooks(8)
    return codec


def _conversation(gen: LmGen, goldens, voice: VoicePrompt, role: list[int], voice_codes=None) -> np.ndarray:
    prompt = Prompt(voice, role, voice_codes, tuple(goldens["silence_tokens"]), tuple(goldens["sine_tokens"]))
    state, first = run_prompt(gen, gen.init_state(), prompt)
    frames = [np.array(first)[0]]
    for codes in goldens["user_codes"][:-1]:
        _, out, state = gen.advance(state, mx.array(codes[None]))
        assert out is not None
        mx.eval(out)
        frames.append(np.array(out)[0])
    return np.stack(frames)


def test_the_role_is_wrapped_and_tokenized_as_the_reference(goldens) -> None:
    assert role_tokens(E2E / "tokenizer_spm_32k_3.model", ROLE) == goldens["role_tokens"].tolist()


def test_the_silence_and_sine_codes_are_the_codecs(mimi, goldens) -> None:
    assert prompt_codes(mimi) == (tuple(goldens["silence_tokens"]), tuple(goldens["sine_tokens"]))


def test_a_preset_voice_and_a_role_generate_the_references_tokens(gen, goldens) -> None:
    voice = read_voice_preset(ASSETS / "voice.pt")
    ours = _conversation(gen, goldens, voice, goldens["role_tokens"].tolist())
    ref = goldens["tokens_preset"][:, :9]  # text + Moshi's 8 codebooks
    assert (ref >= 0).all()
    np.testing.assert_array_equal(ours, ref)


def test_a_voice_from_audio_generates_the_references_tokens(gen, goldens) -> None:
    """Fed the reference's Mimi codes of the normalized voice: the LM side is exact."""
    voice = voice_from_audio(ASSETS / "voice.wav")
    ours = _conversation(gen, goldens, voice, goldens["role_tokens"].tolist(), goldens["voice_codes"])
    np.testing.assert_array_equal(ours, goldens["tokens_audio"][:, :9])


def test_op_by_op_the_same_tokens(lm, goldens) -> None:
    """The prompt and the steps after it uncompiled (MOSHI_MLX_COMPILE=0) give the same tokens."""
    plain = LmGen(lm, temp=0.0, text_temp=0.0, seed=0, compile=False)
    ours = _conversation(plain, goldens, read_voice_preset(ASSETS / "voice.pt"), goldens["role_tokens"].tolist())
    np.testing.assert_array_equal(ours, goldens["tokens_preset"][:, :9])


def test_another_role_changes_the_answer_as_in_the_reference(gen, goldens) -> None:
    voice = read_voice_preset(ASSETS / "voice.pt")
    other = role_tokens(E2E / "tokenizer_spm_32k_3.model", OTHER_ROLE)
    ours = _conversation(gen, goldens, voice, other)
    np.testing.assert_array_equal(ours, goldens["tokens_other_role"][:, :9])
    assert not np.array_equal(ours, goldens["tokens_preset"][:, :9])


def test_our_codec_on_the_voice_and_user_audio(mimi, goldens) -> None:
    """Our Mimi is Kyutai's moshi 0.2.13 Mimi exactly; NVIDIA's fork carries an older one whose transformer
    differs once it has seen more than its context (8 steps in this tiny codec, 2 per frame; 250 in the
    released Mimi, i.e. after 10 s): identical codes for the first 4 frames (normalization, framing and padding
    as the reference's), then agreement floors (measured: 114 of 120 voice codes, 141 of 160 user codes; Kyutai
    0.2.13's Mimi gives exactly our user codes)."""
    voice = voice_from_audio(ASSETS / "voice.wav")
    assert voice.audio is not None
    voice_codes = encode_frames(mimi, voice.audio, 8)
    user = encode_frames(mimi, sf.read(str(ASSETS / "user.wav"), dtype="float32")[0], 8)
    assert voice_codes.shape == goldens["voice_codes"].shape and user.shape == goldens["user_codes"].shape
    np.testing.assert_array_equal(voice_codes[:4], goldens["voice_codes"][:4])
    np.testing.assert_array_equal(user[:4], goldens["user_codes"][:4])
    assert (voice_codes == goldens["voice_codes"]).mean() >= 0.9
    assert (user == goldens["user_codes"]).mean() >= 0.85
