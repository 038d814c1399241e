"""`python -m moshi_mlx.run --input`, as a person runs it: what it writes, and what it never overwrites.

Every bad path is refused before the model loads (the model folder here does not even exist), with one
`error:` line and exit code 2, leaving the input untouched and no file behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.cli import ABORT, E2E, assert_one_line_error, cli_env, run_module, start_python
from support.disk import small_disk

NO_MODEL = "/nonexistent/model-folder"  # reached only if a check comes too late


def _tone(seconds: float, rate: int = 24_000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * 200 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 2 * t))).astype(np.float32)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    sf.write(str(tmp_path / "in.wav"), _tone(1.0), 24_000)
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    (tmp_path / "outdir").mkdir()
    os.symlink(tmp_path / "in.wav", tmp_path / "link.wav")
    (tmp_path / "old").mkdir()
    sf.write(str(tmp_path / "old" / "user.wav"), _tone(0.5), 24_000)  # an earlier recording
    return tmp_path


# (name, flags with {d} for the folder, words the error line must hold)
BAD_PATHS = [
    ("output is the input", ["--output", "{d}/in.wav"], ["same file as --input"]),
    ("output is the input, spelled otherwise", ["--output", "{d}/outdir/../in.wav"], ["same file as --input"]),
    ("output is a link to the input", ["--output", "{d}/link.wav"], ["same file as --input"]),
    ("transcript is the input", ["--output", "{d}/o.wav", "--transcript", "{d}/./in.wav"], ["--transcript", "--input"]),
    ("transcript is the output", ["--output", "{d}/o.wav", "--transcript", "{d}/o.wav"], ["--transcript", "--output"]),
    ("output is a folder", ["--output", "{d}/outdir"], ["is a folder", "name a file"]),
    ("output under a file", ["--output", "{d}/notes.txt/o.wav"], ["notes.txt is a file, not a folder"]),
    ("transcript under a file", ["--output", "{d}/o.wav", "--transcript", "{d}/notes.txt/t.json"], ["not a folder"]),
    ("output format not writable", ["--output", "{d}/o.m4a"], [".m4a is not an audio format", ".wav, .flac, .ogg"]),
    (
        "record into a recording",
        ["--output", "{d}/o.wav", "--record", "{d}/old"],
        ["already holds a recording", "old-2"],
    ),
    ("record folder is a file", ["--output", "{d}/o.wav", "--record", "{d}/notes.txt"], ["not a folder"]),
    ("record over the output", ["--output", "{d}/r/moshi.wav", "--record", "{d}/r"], ["same file as --output"]),
]


@pytest.mark.parametrize("flags,needles", [c[1:] for c in BAD_PATHS], ids=[c[0] for c in BAD_PATHS])
def test_bad_output_paths_are_refused_before_the_model_loads(work: Path, flags: list[str], needles: list[str]) -> None:
    before = {p: p.read_bytes() for p in work.rglob("*") if p.is_file()}
    r = run_module(
        "moshi_mlx.run", "--hf-repo", NO_MODEL, "--input", work / "in.wav", *(f.format(d=work) for f in flags)
    )
    assert_one_line_error(r, 2, *needles)
    assert {p: p.read_bytes() for p in work.rglob("*") if p.is_file()} == before  # nothing written or lost


def test_an_m4a_input_says_to_convert_it(tmp_path: Path) -> None:
    (tmp_path / "me.m4a").write_bytes(b"\0\0\0\x20ftypM4A " + bytes(200))
    r = run_module(
        "moshi_mlx.run", "--hf-repo", NO_MODEL, "--input", tmp_path / "me.m4a", "--output", tmp_path / "o.wav"
    )
    assert_one_line_error(r, 2, "AAC", "ffmpeg -i me.m4a me.wav", "wav, flac, ogg, mp3")


def test_a_read_only_disk_is_refused_before_the_model_loads(tmp_path: Path) -> None:
    with small_disk(tmp_path / "ro", "64k", read_only=True) as disk:
        sf.write(str(tmp_path / "in.wav"), _tone(0.5), 24_000)
        r = run_module(
            "moshi_mlx.run", "--hf-repo", NO_MODEL, "--input", tmp_path / "in.wav", "--output", disk / "o.wav"
        )
        assert_one_line_error(r, 2, "cannot write --output", "read-only")


def test_ctrl_c_keeps_the_answer_and_transcript_so_far(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "in.wav"), _tone(60.0), 24_000)
    out, js = tmp_path / "out" / "moshi.flac", tmp_path / "out" / "t.json"
    proc = start_python(
        "-m",
        "moshi_mlx.run",
        "--hf-repo",
        E2E,
        "--temp",
        "0",
        "--text-temp",
        "0",
        "--input",
        tmp_path / "in.wav",
        "--output",
        out,
        "--transcript",
        js,
    )
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 20_000 for p in out.parent.glob("moshi.flac.*.part")):  # a second or so done
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and ABORT not in stderr and "hold the answer up to" in stderr
    assert [ln for ln in stderr.splitlines() if ln.strip().startswith("stopped")] == [
        next(ln for ln in stderr.splitlines() if ln.startswith("stopped: "))
    ], stderr  # said once, with how far
    audio, rate = sf.read(str(out), dtype="float32")
    assert rate == 24_000 and 0 < audio.size < 60 * 24_000  # the answer so far, not the whole input
    doc = json.loads(js.read_text())
    assert doc["text"] == stdout.strip() and all(w["t"] < audio.size / 24_000 for w in doc["words"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["moshi.flac", "t.json"]  # no temporary file left


def test_ctrl_c_pressed_again_and_again_while_saving_keeps_the_answer(tmp_path: Path) -> None:
    """Impatient Ctrl-C presses after the first (or a SIGTERM then Ctrl-C) used to interrupt the saving, which
    then threw the answer and transcript away."""
    sf.write(str(tmp_path / "in.wav"), _tone(60.0), 24_000)
    out, js = tmp_path / "out" / "moshi.wav", tmp_path / "out" / "t.json"
    proc = start_python(
        "-m", "moshi_mlx.run", "--hf-repo", E2E, "--input", tmp_path / "in.wav", "--output", out, "--transcript", js
    )
    deadline = time.monotonic() + 60
    while not any(p.stat().st_size > 20_000 for p in out.parent.glob("moshi.wav.*.part")):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    for _ in range(40):  # 0.2 s of presses
        proc.send_signal(signal.SIGINT)
        time.sleep(0.005)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode in (130, -signal.SIGINT), stderr  # a shell shows both as 130
    assert "Traceback" not in stderr and ABORT not in stderr and "hold the answer up to" in stderr
    assert 0 < sf.info(str(out)).frames < 60 * 24_000
    assert json.loads(js.read_text())["text"] == stdout.strip()
    assert sorted(p.name for p in out.parent.iterdir()) == ["moshi.wav", "t.json"]


def test_a_full_disk_stops_the_recording_says_so_and_keeps_it(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "128k") as disk:
        sf.write(str(tmp_path / "in.wav"), _tone(3.0), 24_000)  # two 3 s tracks: 288 kB, the disk holds 128 kB
        r = run_module(
            "moshi_mlx.run",
            "--hf-repo",
            E2E,
            "--input",
            tmp_path / "in.wav",
            "--output",
            tmp_path / "o.wav",
            "--record",
            disk / "rec",
        )
        assert_one_line_error(r, 1, "recording stopped after", "No space left on device", "kept")
        assert sf.info(str(tmp_path / "o.wav")).frames == 3 * 24_000  # the answer is complete
        for name in ("user.wav", "moshi.wav"):
            with wave.open(str(disk / "rec" / name)) as w:
                assert w.getnframes() > 0 and (disk / "rec" / name).stat().st_size == 44 + 2 * w.getnframes()


def test_a_full_disk_under_the_output_keeps_the_answer_so_far(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "64k") as disk:
        sf.write(str(tmp_path / "in.wav"), _tone(3.0), 24_000)  # 144 kB of answer, the disk holds 64 kB
        r = run_module("moshi_mlx.run", "--hf-repo", E2E, "--input", tmp_path / "in.wav", "--output", disk / "o.wav")
        assert_one_line_error(r, 1, "no space left on device", "o.wav holds the answer up to")
        with wave.open(str(disk / "o.wav")) as w:  # what fitted, with a header that says so
            assert 0 < w.getnframes() < 3 * 24_000
        assert [p.name for p in disk.iterdir()] == ["o.wav"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="sets a file-size limit in the child (POSIX)")
def test_a_file_size_limit_is_named_and_keeps_the_answer_so_far(tmp_path: Path) -> None:
    """Under `ulimit -f` (a shared machine's limits), libsndfile's "System error." was the whole reason given
    (and the recorder's "File too large" blamed the file system): the limit is named."""
    import resource
    import subprocess
    import sys

    from support.cli import Ran

    sf.write(str(tmp_path / "in.wav"), _tone(3.0), 24_000)  # 144 kB of answer
    argv = (sys.executable, "-m", "moshi_mlx.run", "--hf-repo", str(E2E), "--input", "in.wav", "--output", "o.wav")
    p = subprocess.run(
        argv,
        env=cli_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, resource.RLIM_INFINITY)),
    )
    r = Ran(argv, p.returncode, p.stdout, p.stderr)
    assert_one_line_error(r, 1, "limit on file size", "ulimit -f", "o.wav holds the answer up to")
    with wave.open(str(tmp_path / "o.wav")) as w:  # what fitted, with a header that says so
        assert 0 < w.getnframes() < 3 * 24_000


# -- outputs that are not plain files: never replaced -------------------------------------------
def _in_process(*argv: str | Path, capsys) -> tuple[int, str]:
    from moshi_mlx.run import main

    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _one_line(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], err


@pytest.mark.parametrize("flag", ["--output", "--transcript"])
def test_a_pipe_named_as_an_output_is_refused_and_stays_a_pipe(tmp_path: Path, flag: str, capsys) -> None:
    """A named pipe (or /dev/stdout, a terminal) would be replaced by a file: the temporary file is renamed over it."""
    import stat

    sf.write(str(tmp_path / "in.wav"), _tone(0.2), 24_000)
    os.mkfifo(tmp_path / "pipe")
    outputs = {"--output": tmp_path / "o.wav", "--transcript": tmp_path / "t.json", flag: tmp_path / "pipe"}
    code, err = _in_process(
        "--hf-repo", NO_MODEL, "--input", tmp_path / "in.wav", *(x for kv in outputs.items() for x in kv), capsys=capsys
    )
    assert code == 2
    _one_line(err, flag, "not a regular file")
    assert stat.S_ISFIFO((tmp_path / "pipe").lstat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.wav", "pipe"]


def test_the_null_device_as_output_discards_the_answer_and_stays_a_device(tmp_path: Path, capsys) -> None:
    """`--output /dev/null` (to keep only the transcript) writes into the device; it used to be replaced by a
    regular file (as root: /dev/null itself). Here a copy of the device (root), else /dev/null itself (which a
    user other than root cannot replace anyway)."""
    import stat

    null = Path(os.devnull)
    if os.geteuid() == 0:
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.stat(os.devnull).st_rdev)
    sf.write(str(tmp_path / "in.wav"), _tone(0.2), 24_000)
    code, err = _in_process(
        "--hf-repo",
        E2E,
        "--input",
        tmp_path / "in.wav",
        "--output",
        null,
        "--transcript",
        tmp_path / "t.json",
        capsys=capsys,
    )
    assert code == 0, err
    assert stat.S_ISCHR(null.lstat().st_mode) and os.stat(null).st_rdev == os.stat(os.devnull).st_rdev
    assert json.loads((tmp_path / "t.json").read_text())["input"] == str(tmp_path / "in.wav")
    assert not list(null.parent.glob("null.*.part")) and not list(tmp_path.glob("*.part"))


def test_an_output_through_a_link_lands_in_its_target(tmp_path: Path, capsys) -> None:
    """A link named as --output stays a link, and the answer replaces the file it points to."""
    sf.write(str(tmp_path / "in.wav"), _tone(0.2), 24_000)
    (tmp_path / "answers").mkdir()
    (tmp_path / "answers" / "latest.wav").write_bytes(b"the previous answer")
    os.symlink(tmp_path / "answers" / "latest.wav", tmp_path / "moshi.wav")
    code, err = _in_process(
        "--hf-repo", E2E, "--input", tmp_path / "in.wav", "--output", tmp_path / "moshi.wav", capsys=capsys
    )
    assert code == 0, err
    assert (tmp_path / "moshi.wav").is_symlink()
    assert sf.info(str(tmp_path / "answers" / "latest.wav")).frames == int(0.2 * 24_000)


def test_a_broken_link_as_output_is_refused(tmp_path: Path, capsys) -> None:
    sf.write(str(tmp_path / "in.wav"), _tone(0.2), 24_000)
    os.symlink(tmp_path / "gone" / "x.wav", tmp_path / "moshi.wav")
    code, err = _in_process(
        "--hf-repo", NO_MODEL, "--input", tmp_path / "in.wav", "--output", tmp_path / "moshi.wav", capsys=capsys
    )
    assert code == 2
    _one_line(err, "--output", "broken link")
    assert os.readlink(tmp_path / "moshi.wav") == str(tmp_path / "gone" / "x.wav")
    assert not (tmp_path / "gone").exists()


def test_audio_through_a_pipe_is_read(tmp_path: Path, capsys) -> None:
    """`--input <(ffmpeg ... -f wav -)` or a named pipe: read as a file (it was said not to exist)."""
    import io
    import threading

    buf = io.BytesIO()
    sf.write(buf, _tone(0.2), 24_000, format="WAV")
    os.mkfifo(tmp_path / "in.wav")
    writer = threading.Thread(target=lambda: (tmp_path / "in.wav").write_bytes(buf.getvalue()), daemon=True)
    writer.start()
    try:
        code, err = _in_process(
            "--hf-repo", E2E, "--input", tmp_path / "in.wav", "--output", tmp_path / "o.wav", capsys=capsys
        )
    finally:
        if writer.is_alive():  # never opened for reading: release the writer
            os.close(os.open(tmp_path / "in.wav", os.O_RDONLY | os.O_NONBLOCK))
    assert code == 0, err
    assert sf.info(str(tmp_path / "o.wav")).frames == int(0.2 * 24_000)


def _open_files() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed meanwhile
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
    return out


def test_a_recording_that_cannot_start_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    """On a full disk the recorder's empty user.wav stayed, and the next try was refused: 'already holds a
    recording'."""
    sf.write(str(tmp_path / "in.wav"), _tone(0.2), 24_000)
    with small_disk(tmp_path / "disk", "64k") as disk:
        with open(disk / "fill", "wb") as f, contextlib.suppress(OSError):  # fill it up
            f.write(bytes(128 << 10))
        argv = (
            "--hf-repo",
            E2E,
            "--input",
            tmp_path / "in.wav",
            "--output",
            tmp_path / "o.wav",
            "--record",
            disk / "rec",
        )
        code, err = _in_process(*argv, capsys=capsys)
        assert code in (1, 2)
        _one_line(err, "No space left on device")
        assert sorted(p.name for p in disk.iterdir()) == ["fill"]
        assert not [f for f in _open_files() if f.startswith(str(disk))]  # none left open (the disk stayed busy)
        (disk / "fill").unlink()
        code, err = _in_process(*argv, capsys=capsys)  # room again: the same command now records
        assert code == 0, err
        assert sf.info(str(disk / "rec" / "user.wav")).frames > 0


def test_the_op_by_op_step_writes_the_same_answer_as_the_compiled_one(tmp_path: Path) -> None:
    """MOSHI_MLX_COMPILE=0, the debugging path, runs the same frames op by op: with the same seed the
    answer and the transcript are the compiled run's, sample for sample."""
    sf.write(str(tmp_path / "in.wav"), _tone(1.5), 24_000)
    outputs = []
    for flag in ("1", "0"):
        out, text = tmp_path / f"o{flag}.wav", tmp_path / f"t{flag}.json"
        r = run_module(
            "moshi_mlx.run",
            *("--hf-repo", E2E, "--input", tmp_path / "in.wav", "--output", out, "--transcript", text),
            *("--seed", "5"),
            env=cli_env(MOSHI_MLX_COMPILE=flag),
        )
        assert r.code == 0, r.why()
        outputs.append((sf.read(str(out))[0], json.loads(text.read_text())))
    (a, ta), (b, tb) = outputs
    assert a.size > 24_000 and np.abs(a).max() > 0
    np.testing.assert_array_equal(a, b)
    assert ta == tb


def test_a_float_input_past_full_scale_is_scaled_to_fit_and_said(tmp_path: Path) -> None:
    """A float WAV written at 16-bit scale (peaks of ~30000) went into Mimi as it was: Moshi heard noise and
    nothing said so. It is scaled down by its peak, said once, and answered as the same file at full scale."""
    tone = _tone(1.5)
    peak = float(np.abs(tone).max())
    sf.write(str(tmp_path / "loud.wav"), tone * np.float32(32767.0 / peak), 24_000, subtype="FLOAT")
    sf.write(str(tmp_path / "fit.wav"), tone / np.float32(peak), 24_000, subtype="FLOAT")
    answers = []
    for name in ("loud", "fit"):
        out = tmp_path / f"{name}-answer.wav"
        r = run_module(
            "moshi_mlx.run", *("--hf-repo", E2E, "--input", tmp_path / f"{name}.wav", "--output", out, "--seed", "5")
        )
        assert r.code == 0, r.why()
        notes = [ln for ln in r.err.splitlines() if "full scale" in ln]
        assert len(notes) == (name == "loud") and all("loud.wav" in n and "32767" in n for n in notes), r.why()
        answers.append(sf.read(str(out))[0])
    np.testing.assert_allclose(answers[0], answers[1], atol=1e-4)


def _peak_rss_once_stepping(*command: object) -> int:
    """The peak memory (kB, VmHWM) of `python -m command` once its progress bar shows the first frames going
    through the model: the input has been opened and checked by then, and the model loaded. Then SIGTERM."""
    p = start_python("-m", *command, env=cli_env(PYTHONUNBUFFERED="1"))
    assert p.stderr is not None
    seen = ""
    while "frame" not in seen:
        c = p.stderr.read(1)
        assert c, seen
        seen += c
    status = Path(f"/proc/{p.pid}/status").read_text()
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    return int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM:")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads a process's peak memory in /proc")
@pytest.mark.parametrize("front_end", ["run", "transcribe"])
def test_a_long_input_is_read_as_it_is_stepped_not_whole(tmp_path: Path, front_end: str) -> None:
    """3 minutes at 48 kHz stereo (35 MB of 16-bit WAV) take no more memory than 1 second: the input is decoded
    block by block as the model steps through it. Before, the whole file was read (69 MB as float32), mixed to
    mono and resampled at once (5 minutes: +166 MB for `run`, +161 MB for `transcribe`)."""
    from support.stt import make_repo

    model = E2E if front_end == "run" else make_repo(tmp_path / "stt")
    peaks = {}
    for name, seconds in (("short", 1), ("long", 180)):
        wav = tmp_path / f"{name}.wav"
        sf.write(str(wav), np.zeros((48_000 * seconds, 2), np.int16), 48_000, subtype="PCM_16")
        if front_end == "run":
            args = ("--input", wav, "--output", tmp_path / f"{name}-out.wav")
        else:
            args = (wav, "--output", tmp_path / f"{name}.txt")
        peaks[name] = _peak_rss_once_stepping(f"moshi_mlx.{front_end}", "--hf-repo", model, *args)
    assert peaks["long"] - peaks["short"] < 20_000, peaks


def test_a_sample_rate_too_low_for_sound_is_refused_not_a_crash(tmp_path: Path) -> None:
    """A header giving 1 Hz (a damaged file): resampling its 200000 samples to 24 kHz made soxr crash the
    process (segmentation fault, exit 139), whole or streamed."""
    sf.write(str(tmp_path / "in.wav"), np.zeros(200_000, np.int16), 1, subtype="PCM_16")
    r = run_module(
        "moshi_mlx.run", "--hf-repo", NO_MODEL, "--input", tmp_path / "in.wav", "--output", tmp_path / "o.wav"
    )
    assert_one_line_error(r, 2, "in.wav", "1 Hz")


def test_ctrl_c_while_the_model_loads_ends_file_mode_at_once(tmp_path: Path) -> None:
    """As live mode: a Ctrl-C while the model loads ended run_file only once the load was done (up to 10 s more);
    now at once, nothing written, and the loading thread ends on its own once built."""
    from moshi_mlx.audio import FRAME
    from moshi_mlx.dialog.file_mode import run_file
    from support.fake_models import EchoModel
    from support.stops import SlowLoad

    slow = SlowLoad(EchoModel)
    with pytest.raises(KeyboardInterrupt):
        run_file(slow, np.zeros(3 * FRAME, np.float32), str(tmp_path / "out.wav"), source="x.wav", max_lag_frames=2)
    assert not slow.built, "run_file waited for the model to load"
    assert list(tmp_path.iterdir()) == []
    assert slow.finish() and len(slow.built) == 1
