"""`python -m moshi_mlx.run`: file mode end to end, live mode on a fake sound card, errors."""

from __future__ import annotations

import _thread
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.audio.fake import FakeClock, FakeStreamFactory
from moshi_mlx.audio.files import read_audio
from moshi_mlx.loading.hub import resolve_model_files
from moshi_mlx.pipeline import MoshiPipeline, Sampling
from moshi_mlx.run import main
from support import ASSETS
from support.signals import hum

E2E = ASSETS / "e2e"
GREEDY = ["--hf-repo", str(E2E), "--temp", "0", "--text-temp", "0"]


def speechlike(seconds: float, rate: int, seed: int = 0) -> np.ndarray:
    return hum(int(seconds * rate), rate, seed, pitch=170.0, drift=50.0, drift_rate=1.3, syllables_hz=2.5, noise=0.01)


@pytest.fixture(scope="module")
def user_wav(tmp_path_factory) -> Path:
    """1.3 s of stereo 44.1 kHz audio (not a whole number of frames): exercises mono mix and resampling."""
    path = tmp_path_factory.mktemp("in") / "user.flac"
    x = speechlike(1.3, 44_100)
    sf.write(str(path), np.stack([x, 0.5 * x], axis=1), 44_100)
    return path


def run_file(user_wav: Path, out_dir: Path, *extra: str, name: str = "moshi.wav") -> tuple[np.ndarray, dict]:
    out, js = out_dir / name, out_dir / "t.json"
    assert main([*GREEDY, "--input", str(user_wav), "--output", str(out), "--transcript", str(js), *extra]) == 0
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 24_000 and sf.info(str(out)).format == out.suffix[1:].upper()  # the format the name says
    assert sorted(p.name for p in out_dir.iterdir()) == sorted([name, "t.json", *(["rec"] if extra else [])])
    return audio, json.loads(js.read_text())


def test_file_mode_says_how_the_model_loaded_as_the_live_dialog_does(user_wav, tmp_path, capsys, monkeypatch):
    """The model's notes (a compressed attention cache where memory is tight...) reach file mode's user too."""
    from_files = MoshiPipeline.from_files.__func__

    def noted(cls, *args, **kwargs):  # as if memory were tight on this machine
        pipe = from_files(cls, *args, **kwargs)
        pipe.notes.append("Memory is tight: (a note for the person)")
        return pipe

    monkeypatch.setattr(MoshiPipeline, "from_files", classmethod(noted))
    run_file(user_wav, tmp_path / "a")
    err = capsys.readouterr().err
    assert "model loaded in" in err and "Memory is tight: (a note for the person)" in err


def test_file_mode_matches_the_python_api_and_is_deterministic(user_wav, tmp_path, capsys):
    a_audio, a_doc = run_file(user_wav, tmp_path / "a")
    b_audio, b_doc = run_file(user_wav, tmp_path / "b", "--record", str(tmp_path / "b" / "rec"), name="moshi.flac")
    pcm = read_audio(user_wav)
    assert a_audio.shape == pcm.shape  # as long as the input, at 24 kHz
    np.testing.assert_allclose(a_audio, b_audio, atol=1.5 / 32768)  # temperature 0: deterministic (flac and
    # wav round float to 16 bits apart by 1 step)
    assert a_doc == b_doc

    # the same frames through the Python API give the same answer and words
    p = MoshiPipeline.from_files(resolve_model_files(E2E), Sampling(temp=0.0, text_temp=0.0))
    frames = np.pad(pcm, (0, -pcm.size % 1920)).reshape(-1, 1920)
    results = [p.step(f) for f in frames]
    expected = np.concatenate([np.zeros(1920, np.float32) if r.pcm is None else r.pcm for r in results])[: pcm.size]
    np.testing.assert_allclose(a_audio, np.clip(expected, -1, 1), atol=1.5 / 32768)  # 16-bit wav
    assert a_doc["text"] == " ".join("".join(r.text or "" for r in results).split())
    assert np.abs(a_audio).max() > 0.01, "the fixture model should say something"

    # a well-formed timed transcript
    assert set(a_doc) == {"input", "frame_s", "text", "words", "pieces"}
    times = [w["t"] for w in a_doc["words"]]
    assert times == sorted(times) and all(0 <= t < 1.3 for t in times)
    assert " ".join(w["word"] for w in a_doc["words"]) == a_doc["text"]
    assert a_doc["text"] in capsys.readouterr().out

    # the recording lists the same whole words, at the same times (one owner turns pieces into words)
    rec = [json.loads(x) for x in (tmp_path / "b" / "rec" / "transcript.jsonl").read_text().splitlines()]
    assert [{"t": x["t"], "word": x["word"]} for x in rec if "word" in x] == b_doc["words"]
    assert len(b_doc["words"]) == len(b_doc["text"].split()) < len(b_doc["pieces"])


def test_bad_input_files(tmp_path, capsys):
    assert main([*GREEDY, "--input", str(tmp_path / "missing.wav"), "--output", str(tmp_path / "o.wav")]) == 2
    assert "does not exist" in capsys.readouterr().err
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"RIFF not really a wav file" * 10)
    assert main([*GREEDY, "--input", str(junk), "--output", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert "cannot read audio file" in err and "Traceback" not in err
    assert not (tmp_path / "o.wav").exists()


def test_offline_without_cached_files_says_what_to_do(user_wav, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    assert main(["--input", str(user_wav), "--output", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    for needed in (
        "model.q4.safetensors",
        "tokenizer_spm_32k_3.model",
        "--moshi-weight",
        "--mimi-weight",
        "--tokenizer",
    ):
        assert needed in err
    # only the tokenizer and Mimi missing (the LM named): they were said to be "about 4.5 GB for q4"
    lm = str(E2E / "model.q4.safetensors")
    assert main(["--moshi-weight", lm, "--input", str(user_wav), "--output", str(tmp_path / "o.wav")]) == 2
    err = capsys.readouterr().err
    assert "tokenizer_spm_32k_3.model" in err and "GB" not in err, err


def test_flag_errors(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--output", "x.wav"])
    assert e.value.code == 2 and "--input" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--input", "x.wav"])
    with pytest.raises(SystemExit):
        main(["--temp", "-1"])
    with pytest.raises(SystemExit):
        main(["--kv-bits", "4"])  # 4-bit caches lose too much (see Lm.set_kv_bits)


def test_kv_bits_flag_reaches_load_lm():
    from moshi_mlx.loading.memory import KV_AUTO
    from moshi_mlx.run import build_parser, kv_bits_choices

    KV_BITS = kv_bits_choices()
    parse = build_parser().parse_args
    assert KV_BITS[parse([]).kv_bits] == KV_AUTO  # unquantized where it fits, else 8 bits
    assert KV_BITS[parse(["--kv-bits", "16"]).kv_bits] is None and KV_BITS[parse(["--kv-bits", "8"]).kv_bits] == 8


def test_list_devices(capsys):
    assert main(["--list-devices"], audio_backend=FakeStreamFactory()) == 0
    out = capsys.readouterr().out
    assert "Fake Microphone" in out and "Fake Speakers" in out


def _drive(backend: FakeStreamFactory, then, seconds: float = 1.2) -> threading.Thread:
    """Once the session opens its streams: feed the mic, tick the fake card, then call `then()`."""

    def body() -> None:
        deadline = time.monotonic() + 60
        while not any(s.kind == "output" for s in backend.streams):
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        backend.input.push_input(speechlike(seconds, int(backend.input.samplerate)))
        with FakeClock([backend.input, backend.output], speed=1.0):
            while backend.input.pending_input() > 0:
                time.sleep(0.02)
            time.sleep(0.3)
            then()

    t = threading.Thread(target=body, daemon=True)
    t.start()
    return t


def _check_recording(folder: Path) -> None:
    for name in ("user.wav", "moshi.wav"):
        audio, rate = sf.read(str(folder / name))
        assert rate == 24_000 and audio.size > 0.5 * 24_000
    lines = [json.loads(line) for line in (folder / "transcript.jsonl").read_text().splitlines()]
    assert lines, "the transcript has at least its header"


def test_live_device_lost_ends_cleanly_and_keeps_the_recording(tmp_path, capsys):
    backend = FakeStreamFactory(input_rate=48_000, output_rate=44_100)
    driver = _drive(backend, lambda: backend.input.fail("device unplugged"))
    # with the echo canceller's residual suppressor on: it runs in the live loop like the rest
    rc = main([*GREEDY, "--record", str(tmp_path / "rec"), "--echo-suppressor"], audio_backend=backend)
    driver.join(10)
    assert rc == 1
    err = capsys.readouterr().err
    assert "unplugged" in err and "Traceback" not in err
    _check_recording(tmp_path / "rec")


def test_live_ctrl_c_ends_cleanly_and_keeps_the_recording(tmp_path, capsys):
    backend = FakeStreamFactory(input_rate=24_000, output_rate=48_000)
    driver = _drive(backend, _thread.interrupt_main)
    rc = main([*GREEDY, "--record", str(tmp_path / "rec"), "--no-echo-cancel"], audio_backend=backend)
    driver.join(10)
    assert rc == 130  # as any program stopped by Ctrl-C
    assert "saved in" in capsys.readouterr().err
    _check_recording(tmp_path / "rec")
    assert all(s.closed for s in backend.streams)


def test_live_recording_on_a_full_disk_says_so_and_keeps_what_was_recorded(tmp_path, capsys):
    from support.disk import small_disk

    with small_disk(tmp_path / "disk", "64k") as disk:  # 1.2 s on two tracks: 115 kB
        backend = FakeStreamFactory(input_rate=24_000, output_rate=24_000)
        driver = _drive(backend, _thread.interrupt_main)
        rc = main([*GREEDY, "--record", str(disk / "rec"), "--no-echo-cancel"], audio_backend=backend)
        driver.join(10)
        err = capsys.readouterr().err
        assert rc == 130, err  # the person's Ctrl-C ended it; the error was said when it happened
        assert "error: recording stopped after" in err and "No space left on device" in err and "cut short" in err
        assert sf.info(str(disk / "rec" / "user.wav")).frames > 0


def test_live_recording_whose_folder_is_removed_is_said_not_called_saved(tmp_path, capsys):
    """--record's folder removed mid-conversation: the recorder stops at its next sync and says the files were
    deleted; the end no longer says "conversation saved in" a folder that is gone (everything was lost silently)."""
    import shutil

    backend = FakeStreamFactory(input_rate=24_000, output_rate=24_000)
    rec = tmp_path / "rec"

    def body() -> None:
        deadline = time.monotonic() + 60
        while not any(s.kind == "output" for s in backend.streams) and time.monotonic() < deadline:
            time.sleep(0.02)
        shutil.rmtree(rec)
        backend.input.push_input(speechlike(3.0, 24_000))
        with FakeClock([backend.input, backend.output], speed=1.0):
            recording = ("moshi-recorder" in t.name for t in threading.enumerate())
            while any(recording) and time.monotonic() < deadline:  # until the recorder has stopped
                time.sleep(0.02)
                recording = ("moshi-recorder" in t.name for t in threading.enumerate())
            _thread.interrupt_main()

    driver = threading.Thread(target=body, daemon=True)
    driver.start()
    rc = main([*GREEDY, "--record", str(rec), "--no-echo-cancel"], audio_backend=backend)
    driver.join(10)
    err = capsys.readouterr().err
    assert rc == 130, err
    assert f"its files in {rec} were deleted" in err and f"no recording is left in {rec}" in err, err
    assert "saved in" not in err and "Traceback" not in err


def test_live_devices_that_will_not_open_leave_no_empty_recording(tmp_path, capsys):
    """The devices refuse to open (busy, gone since they were listed): one error line, exit 1, and --record's folder
    is left as it was. It said "listening on ... Talk to Moshi", then the error, then "conversation saved in" a
    recording of nothing, which the same command, run again once the device is free, refused as "already holds a
    recording"."""

    class Busy(FakeStreamFactory):
        def open(self, kind: str, **kw):
            raise RuntimeError("Error opening InputStream: Device unavailable [PaErrorCode -9985]")

    rec = tmp_path / "new" / "rec"
    rc = main([*GREEDY, "--record", str(rec), "--no-echo-cancel"], audio_backend=Busy())
    err = capsys.readouterr().err
    assert rc == 1, err
    assert [ln for ln in err.splitlines() if ln.startswith("error:")] == [
        ln for ln in err.splitlines() if "cannot open input device 0 (Fake Microphone)" in ln
    ], err
    assert "saved in" not in err and "Talk to Moshi" not in err, err
    assert not (tmp_path / "new").exists()
    backend = FakeStreamFactory(input_rate=24_000, output_rate=24_000)  # the device is free again: same command
    driver = _drive(backend, _thread.interrupt_main, seconds=0.3)
    rc = main([*GREEDY, "--record", str(rec), "--no-echo-cancel"], audio_backend=backend)
    driver.join(10)
    err = capsys.readouterr().err
    assert rc == 130 and f"conversation saved in {rec}" in err, err
    assert "speaking on Fake Speakers" in err  # said once the devices are open
