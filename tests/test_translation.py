"""Hibiki translating a file: `run --hf-repo <hibiki> --input fr.wav --output en.wav --transcript en.json`, and
the reference's driver (moshi.run_inference): first frame stepped twice, the source's end said with codes at
`card`, silence until the model says the end of text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.audio import FRAME, FRAME_S, MODEL_RATE
from moshi_mlx.loading.hub import resolve_model_files
from moshi_mlx.loading.lm import TEXT_EOS
from moshi_mlx.pipeline import Sampling
from moshi_mlx.translation import MAX_TAIL_S, SourceEnd, TranslationFilePort, TranslationPipeline
from support import ASSETS
from support.cli import E2E, assert_one_line_error, run_module
from support.hibiki import NAMES, make_hibiki_folder

FRAMES = 14  # source frames (1.12 s) and a partial one, which the reference drops


@pytest.fixture(scope="module")
def hibiki(tmp_path_factory) -> Path:
    return make_hibiki_folder(tmp_path_factory.mktemp("hub") / "hibiki-1b-mlx-bf16", says_eos_at_the_end=True)


def _source(path: Path) -> np.ndarray:
    pcm = (0.1 * np.random.default_rng(5).standard_normal(FRAMES * FRAME + 700)).astype(np.float32)
    sf.write(path, pcm, MODEL_RATE)
    return pcm


class _Sink:
    def __init__(self) -> None:
        self.pcm: list[np.ndarray] = []

    def write(self, pcm: np.ndarray) -> None:
        self.pcm.append(pcm)


class _Recording(TranslationPipeline):
    """Keeps the source codes each step fed to the LM (observed, not changed)."""

    fed: list[np.ndarray]

    def _user_codes(self, pcm):
        user, state = super()._user_codes(pcm)
        self.fed = [*getattr(self, "fed", []), np.array(user)[0]]
        return user, state


def test_the_reference_driver_first_frame_twice_source_end_then_silence_until_end_of_text(hibiki, tmp_path):
    end = SourceEnd()
    pipe = _Recording.from_files(resolve_model_files(hibiki), Sampling(0.0, 0.0), cfg_coef=3.0, source_end=end)
    assert pipe.lm.cfg.model_type == "hibiki" and pipe.notes  # guided: said how
    sink = _Sink()
    port = TranslationFilePort(_source(tmp_path / "fr.wav"), sink, end)
    assert (port.frames, port.length) == (FRAMES, FRAMES * FRAME)
    steps, tokens = [], []
    while (pcm := port.read_input()).size:
        result = pipe.step(pcm)
        steps.append(pipe._gen_state.step)
        tokens.append(result.token)
        if result.pcm is not None:
            port.write_output(result.pcm)
    assert steps[0] == 2 and steps[-1] == len(steps) + 1  # the first frame was stepped twice
    card = pipe.lm.cfg.card
    assert (pipe.fed[FRAMES] == card).all() and not (pipe.fed[FRAMES - 1] == card).any()  # the source's end
    assert not (np.stack(pipe.fed[FRAMES + 1 :]) == card).any()  # then encoded silence
    ended = tokens.index(TEXT_EOS, FRAMES)  # the model said the end of text after the source's end...
    assert end.translation_ended and len(tokens) == ended + 1 < FRAMES + MAX_TAIL_S / FRAME_S
    assert TEXT_EOS in tokens[:FRAMES]  # ...and before it, which ended nothing (the reference ignores it)
    assert port.written == sum(p.size for p in sink.pcm) > port.length - 4 * FRAME
    assert not port.read_input().size and port.exhausted.is_set()


def test_run_translates_a_file_to_speech_and_a_transcript(hibiki, tmp_path):
    src = tmp_path / "fr.wav"
    pcm = _source(src)
    out, transcript = tmp_path / "en.wav", tmp_path / "en.json"
    r = run_module(
        "moshi_mlx.run",
        "--hf-repo",
        str(hibiki),
        "--input",
        str(src),
        "--output",
        str(out),
        "--transcript",
        str(transcript),
        "--cfg-coef",
        "3",
        "--seed",
        "7",
    )
    assert r.code == 0 and "Traceback" not in r.err, r.why()
    assert "guidance 3" in r.err
    audio, rate = sf.read(out, dtype="float32")
    assert rate == MODEL_RATE and np.isfinite(audio).all() and np.abs(audio).max() > 0
    # as long as the model spoke: past the source (the end of text comes after it), far from the tail limit
    assert pcm.size // FRAME * FRAME < audio.size < pcm.size + 2 * MODEL_RATE, audio.size / MODEL_RATE
    doc = json.loads(transcript.read_text())
    assert doc["input"] == str(src) and doc["text"] and doc["words"]
    assert "</s>" not in doc["text"]


def test_guidance_on_a_moshi_model_is_refused(tmp_path):
    src = tmp_path / "in.wav"
    _source(src)
    r = run_module(
        "moshi_mlx.run",
        "--hf-repo",
        str(E2E),
        "--input",
        str(src),
        "--output",
        str(tmp_path / "o.wav"),
        "--cfg-coef",
        "3",
    )
    assert_one_line_error(r, 2, "--cfg-coef", "Hibiki")
    assert not (tmp_path / "o.wav").exists()
    assert NAMES["moshi_name"].startswith("hibiki-mlx")


def test_sampling_is_the_flag_then_the_release_lm_gen_config_then_the_default(hibiki):
    from moshi_mlx import run

    files = resolve_model_files(hibiki)
    args = run.build_parser().parse_args(["--hf-repo", str(hibiki), "--text-temp", "0.2", "--seed", "3"])
    release = {"temp": 0.6, "temp_text": 0.4, "top_k": 100}  # as a release's config.json names them
    assert run._sampling(args, run._Resolved(files, "hibiki", release)) == Sampling(0.6, 0.2, 100, 25, 3)
    # Kyutai's server and run_inference pass lm_gen_config to LMGen for every model (an RL-tuned Moshi's too)
    assert run._sampling(args, run._Resolved(files, "moshi", release)) == Sampling(0.6, 0.2, 100, 25, 3)
    assert run._sampling(args, run._Resolved(files, "moshi", {})) == Sampling(0.8, 0.2, 250, 25, 3)


def test_a_file_translates_as_the_reference_driver_does(hibiki):
    """Greedy float32, cfg_coef 3: the same text tokens frame by frame as Kyutai's run_inference over the same
    source (first frame twice, the source's end, silence, the end of text), and the same speech."""
    import mlx.core as mx

    from moshi_mlx.weights.safetensors_io import load_tensors

    g = {k: np.array(v) for k, v in load_tensors(ASSETS / "hibiki" / "hibiki_small_goldens.safetensors").items()}
    end = SourceEnd()
    pipe = TranslationPipeline.from_files(
        resolve_model_files(hibiki), Sampling(0.0, 0.0), dtype=mx.float32, cfg_coef=3.0, source_end=end
    )
    port = TranslationFilePort(g["file_source"], _Sink(), end)
    text, pcm = [], []
    while (frame := port.read_input()).size:
        result = pipe.step(frame)
        if result.token is not None:
            text.append(result.token)
            pcm.append(result.pcm)
    np.testing.assert_array_equal(text, g["file_text"])
    np.testing.assert_allclose(np.concatenate(pcm), g["file_pcm"], atol=2e-4)
