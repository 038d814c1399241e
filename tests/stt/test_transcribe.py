"""`python -m moshi_mlx.transcribe` as a person runs it, on the tiny STT model (tests/assets/stt)."""

from __future__ import annotations

import _thread
import json
import shutil
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.loading.hub import resolve_model_files
from moshi_mlx.stt.session import SttSession
from support.cli import E2E, assert_one_line_error, cli_env, run_module
from support.signals import speechlike
from support.stt import goldens, make_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return make_repo(tmp_path_factory.mktemp("stt") / "model")


@pytest.fixture(scope="module")
def wav(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "talk.wav"
    sf.write(path, goldens()["file_pcm"], 24_000)
    return path


def library_words(repo, pcm: np.ndarray) -> list[list]:
    """The library's transcript of `pcm` at the files' own precision (what the command runs)."""
    session = SttSession.from_files(resolve_model_files(repo))
    tokens = [session.encode_step(f).token for f in session.frames_of(pcm)]
    return [[w.text, round(w.start, 3), round(w.end, 3)] for w in session.transcript(tokens, []).words]


def test_a_file_becomes_json_with_the_words_timed(repo, wav, tmp_path):
    out = tmp_path / "talk.json"
    r = run_module("moshi_mlx.transcribe", wav, "--hf-repo", repo, "--format", "json", "--output", out)
    assert r.code == 0, r.why()
    assert "error" not in r.err and "27/27" in r.err  # the progress bar: prefix, audio, end padding
    got = json.loads(out.read_text())
    words = [[w["word"], w["start"], w["end"]] for w in got["words"]]
    assert words == library_words(repo, sf.read(wav, dtype="float32")[0])
    assert len(words) >= 3 and all(0 <= a <= b <= 27 / 12.5 - 0.24 for _, a, b in words)
    assert got["text"] and got["file"] == str(wav) and got["end_of_turn"] is not None  # the model has the head
    assert sorted(p.name for p in tmp_path.iterdir()) == ["talk.json"]  # written under a temporary name


def test_several_files_become_subtitles_in_a_folder_and_text_on_stdout(repo, wav, tmp_path):
    other = tmp_path / "other.flac"
    sf.write(other, sf.read(wav)[0][: 24_000 // 2], 24_000)
    r = run_module("moshi_mlx.transcribe", wav, other, "--hf-repo", repo, "--format", "srt", "-o", tmp_path / "subs")
    assert r.code == 0, r.why()
    srt = (tmp_path / "subs" / "talk.srt").read_text()
    assert srt.startswith("1\n00:00:0") and " --> " in srt.splitlines()[1]
    assert (tmp_path / "subs" / "other.srt").exists()
    r = run_module("moshi_mlx.transcribe", wav, "--hf-repo", repo, "--format", "vtt", "--no-progress")
    assert r.code == 0 and r.out.startswith("WEBVTT\n\n00:00:0") and r.err.strip() == "loading the model...", r.why()


def test_nan_samples_in_a_file_are_transcribed_as_silence_and_said(repo, wav, tmp_path):
    """A broken file's NaN samples went into Mimi, which carried them through its states: a silent wrong
    transcript. They are silenced, as `run` does, and said once."""
    pcm = sf.read(wav, dtype="float32")[0]
    pcm[4000:6000] = np.nan
    pcm[9000] = np.inf
    sf.write(tmp_path / "broken.wav", pcm, 24_000, subtype="FLOAT")
    r = run_module("moshi_mlx.transcribe", tmp_path / "broken.wav", "--hf-repo", repo, "--format", "json")
    assert r.code == 0, r.why()
    notes = [ln for ln in r.err.splitlines() if "NaN or infinite" in ln]
    assert len(notes) == 1 and "broken.wav" in notes[0] and "2001" in notes[0], r.why()
    words = [[w["word"], w["start"], w["end"]] for w in json.loads(r.out)["words"]]
    assert words == library_words(repo, np.nan_to_num(pcm, nan=0.0, posinf=0.0))


def test_a_float_file_past_full_scale_is_scaled_to_fit_and_said(repo, wav, tmp_path):
    """A float WAV written at 16-bit scale (peaks of ~30000, as some tools do) went into Mimi as it was: a
    silent wrong transcript. It is scaled down by its peak, and said once."""
    pcm = sf.read(wav, dtype="float32")[0]
    peak = float(np.abs(pcm).max())
    sf.write(tmp_path / "loud.wav", pcm * np.float32(32767.0 / peak), 24_000, subtype="FLOAT")
    r = run_module("moshi_mlx.transcribe", tmp_path / "loud.wav", "--hf-repo", repo, "--format", "json")
    assert r.code == 0, r.why()
    notes = [ln for ln in r.err.splitlines() if "full scale" in ln]
    assert len(notes) == 1 and "loud.wav" in notes[0] and "32767" in notes[0], r.why()
    words = [[w["word"], w["start"], w["end"]] for w in json.loads(r.out)["words"]]
    assert words == library_words(repo, pcm / np.float32(peak))


@pytest.mark.parametrize(
    "args,code,words",
    [
        (["missing.wav"], 2, ["missing.wav"]),
        (["{wav}", "--hf-repo", str(E2E)], 2, ["not a speech-to-text model"]),
        (["{wav}", "--output", "{wav}"], 2, ["same file"]),
        (["{wav}", "--mic"], 2, ["--mic"]),
        ([], 2, ["name the audio FILEs"]),
        (["{wav}", "-o", "a" * 300 + ".txt"], 2, ["--output", "too long"]),  # was an OSError traceback
        (["--mic", "--format", "json"], 2, ["--format", "FILEs"]),  # the format was silently ignored
        (["--list-devices", "{wav}"], 2, ["--list-devices", "FILE"]),  # the files were silently ignored
        (["{wav}", "-o", "{repo}/config.json"], 2, ["same file as", "--hf-repo"]),  # it replaced the model's config
    ],
    ids=[
        "missing-file",
        "moshi-model",
        "output-is-input",
        "mic-and-file",
        "nothing",
        "name-too-long",
        "mic-format",
        "list-devices-and-file",
        "output-over-the-models-config",
    ],
)
def test_bad_input_is_one_line_and_exit_2(repo, wav, args, code, words):
    argv = [a.format(wav=wav, repo=repo) for a in args]
    if "--hf-repo" not in argv and argv:
        argv += ["--hf-repo", str(repo)]
    assert_one_line_error(run_module("moshi_mlx.transcribe", *argv), code, *words)


def test_a_damaged_model_found_while_loading_is_a_failure_exit_1_as_in_run(repo, wav, tmp_path):
    """Truncated weights are found while the model loads, the work begun: `run` exits 1 (test_exit.py), the
    README's "1 when the work failed"; transcribe exited 2, as if refused before any work."""
    broken = tmp_path / "broken"
    shutil.copytree(repo, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[:-1000])
    assert_one_line_error(run_module("moshi_mlx.transcribe", wav, "--hf-repo", broken), 1, "truncated")


def test_an_output_ending_in_a_slash_is_a_folder(wav, tmp_path):
    """`-o subs/` with one FILE wrote a file named subs; it is the folder, created, as with several FILEs."""
    from moshi_mlx.transcribe import _check_args, build_parser, output_paths

    p = build_parser()
    args = p.parse_args([str(wav), "-o", f"{tmp_path / 'subs'}/", "--format", "srt"])
    _check_args(p, args)
    assert output_paths(args) == [tmp_path / "subs" / "talk.srt"]


def test_a_transcript_name_too_long_is_refused_before_the_model_loads(repo, wav, tmp_path):
    """A 251-character FILE name is fine, its .json transcript's name (256 bytes) is not: an OSError traceback
    when the --output folder existed, a failure after the work when not."""
    (tmp_path / "out").mkdir()
    long = tmp_path / ("c" * 251 + ".wav")
    long.write_bytes(wav.read_bytes())
    r = run_module("moshi_mlx.transcribe", long, wav, "--hf-repo", repo, "--format", "json", "-o", tmp_path / "out")
    assert_one_line_error(r, 2, "--output", "too long")
    assert not list((tmp_path / "out").iterdir())


def test_no_sound_card_advice_is_transcribes_own(capsys):
    """`transcribe --list-devices` on a machine without sound card advised run's `--input FILE --output FILE`."""
    from moshi_mlx.audio.fake import FakeStreamFactory
    from moshi_mlx.transcribe import main

    assert main(["--list-devices"], audio_backend=FakeStreamFactory(devices=[])) == 0
    out = capsys.readouterr().out
    assert "no audio device found" in out and "--input" not in out and "FILEs" in out, out


MIC_ONLY = [
    {"name": "Fake Microphone", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 48_000.0}
]


@pytest.mark.parametrize("speaker", [True, False], ids=["with-speaker", "mic-only"])
def test_the_microphone_is_transcribed_live_until_ctrl_c(repo, capsys, speaker):
    # a sound card is needed: in process, on the fake one; a transcript plays nothing, so no speaker is opened
    from moshi_mlx.audio.fake import FakeClock, FakeStreamFactory
    from moshi_mlx.transcribe import main

    backend = FakeStreamFactory(input_rate=48_000, output_rate=48_000, devices=None if speaker else MIC_ONLY)
    if not speaker:
        backend.default = (0, -1)  # a machine with a microphone and no output device

    def drive() -> None:
        deadline = time.monotonic() + 60
        while not backend.streams and time.monotonic() < deadline:
            time.sleep(0.02)
        backend.input.push_input(speechlike(1.5, 7, sr=48_000))
        with FakeClock([backend.input], speed=2.0):
            while backend.input.pending_input() > 0:
                time.sleep(0.02)
            time.sleep(0.3)
            _thread.interrupt_main()

    threading.Thread(target=drive, daemon=True).start()
    assert main(["--mic", "--hf-repo", str(repo)], audio_backend=backend) == 130
    out, err = capsys.readouterr()
    assert "listening on Fake Microphone" in err and "stopped" in err and "Traceback" not in err
    assert out.strip()  # the transcript as it came
    assert [s.kind for s in backend.streams] == ["input"] and all(s.closed for s in backend.streams)


def test_a_file_gone_before_its_turn_is_said_and_the_others_are_transcribed(repo, tmp_path):
    """Files are read as they are transcribed (checked all at first, then read in turn): one removed or
    damaged meanwhile is one error line and exit 1, and the files after it are still transcribed (the job
    ended there: the files after it were lost)."""
    from support.cli import finished, start_python

    pcm = goldens()["file_pcm"]
    sf.write(tmp_path / "long.wav", np.tile(pcm, 15), 24_000)  # ~20 s: time to remove the next one
    for name in ("gone.wav", "last.wav"):
        sf.write(tmp_path / name, pcm, 24_000)
    p = start_python(
        "-m",
        "moshi_mlx.transcribe",
        *(tmp_path / n for n in ("long.wav", "gone.wav", "last.wav")),
        "--hf-repo",
        repo,
        "-o",
        tmp_path / "out",
    )
    assert p.stderr is not None
    seen = ""
    while "long.wav" not in seen:  # its progress bar: the files were checked, the first is being transcribed
        c = p.stderr.read(1)
        assert c, seen
        seen += c
    (tmp_path / "gone.wav").write_text("not audio any more")
    r = finished(p)
    assert r.code == 1 and [ln for ln in r.err.splitlines() if ln.startswith("error:")] == [
        ln for ln in r.err.splitlines() if "error:" in ln and "gone.wav" in ln
    ], r.why()
    assert sorted(f.name for f in (tmp_path / "out").iterdir()) == ["last.txt", "long.txt"], r.why()


def test_a_malformed_cpu_lanes_setting_is_refused_before_the_model_loads(repo, wav):
    """It was said once the model had loaded, as a failure (exit 1)."""
    r = run_module("moshi_mlx.transcribe", wav, "--hf-repo", repo, env=cli_env(MOSHI_MLX_CPU_LANES="two"))
    assert_one_line_error(r, 2, "MOSHI_MLX_CPU_LANES", "'two'")
    assert "loading the model" not in r.err


def test_a_temporary_folder_mlx_cannot_use_is_refused_before_the_model_loads(repo, wav, tmp_path):
    """MLX compiles its CPU kernels in TMPDIR at the first step: a TMPDIR that is a file (or read-only, full)
    failed there, after loading, with "transcription failed: RuntimeError: filesystem error", as `run` and
    `quantize` no longer do."""
    (tmp_path / "a-file").write_text("")
    r = run_module("moshi_mlx.transcribe", wav, "--hf-repo", repo, env=cli_env(TMPDIR=str(tmp_path / "a-file")))
    assert_one_line_error(r, 2, "TMPDIR", "not a folder")
