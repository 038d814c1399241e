"""Messages: each mistake a person makes ends in one clear `error:` line, as they see it.

A table of cases, each a subprocess run of `python -m moshi_mlx.run` or `python -m quantize` (the path a
user takes): a mistyped model folder or repo id, a folder given where a file is expected, a config that
names files outside its folder (refused: nothing may be read or copied from there), an offline hub
(quantize must fail as fast as run), an `--out` on a read-only or full file system. Then the cases that
need the fake audio backend (no sound card), run in-process through `run.main`.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.cli import E2E, assert_one_line_error, cli_env, run_module
from support.disk import small_disk
from support.lm import CONFIG as LM_CONFIG
from support.lm import FILES as LM_FILES

RUN, QUANTIZE = "moshi_mlx.run", "quantize"
SECRET = "not for publishing"
Q = ("--q-bits", "4", "--report-steps", "0", "--no-progress")  # the quickest conversion


def e2e_copy(tmp: Path, **config) -> Path:
    """tests/assets/e2e copied to tmp/model, its config.json changed by `config`."""
    folder = tmp / "model"
    shutil.copytree(E2E, folder)
    raw = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(raw | config))
    return folder


def torch_source(tmp: Path, **config) -> Path:
    """A PyTorch-layout checkpoint folder (tiny LM) whose config.json is the small LM's changed by `config`."""
    folder = tmp / "src"
    folder.mkdir()
    shutil.copyfile(LM_FILES["torch"], folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(json.loads(LM_CONFIG.read_text()) | config))
    return folder


def link_out(folder: Path, name: str, target: Path) -> None:
    """Replace (or add) `folder/name` by a symbolic link to a file outside the folder."""
    (folder / name).unlink(missing_ok=True)
    (folder / name).symlink_to(target)


def nothing_leaked(tmp: Path) -> None:
    """No file outside the source was copied into any output folder."""
    for p in tmp.rglob("*"):
        if p.is_file() and not p.is_symlink() and p.name != "secret.txt" and p.stat().st_size < 4096:
            assert SECRET not in p.read_text(errors="replace"), p
    assert not (tmp / "out").exists() or not any((tmp / "out").iterdir())


@dataclass(frozen=True)
class Case:
    id: str
    module: str
    args: tuple[str, ...]  # formatted with tmp, wav, e2e, secret
    code: int
    needles: tuple[str, ...]
    prep: Callable[[Path], object] | None = None  # builds what the case needs inside tmp
    env: dict[str, str] = field(default_factory=dict)
    after: Callable[[Path], None] | None = None  # checks the files afterwards
    max_s: float | None = None  # the answer must come this fast
    cwd: str | None = None  # formatted as args; default: the repository


def _wav_out(*args: str) -> tuple[str, ...]:
    return (*args, "--input", "{wav}", "--output", "{tmp}/answer.wav")


CASES = [
    # --hf-repo: a mistyped local folder, a file, a malformed repo id (offline: the hub is never asked)
    Case(
        "hf-repo ./missing",
        RUN,
        _wav_out("--hf-repo", "./my-finetune-mlx"),
        2,
        ("no folder ./my-finetune-mlx", "config.json", "owner/name"),
    ),
    Case("hf-repo ~/missing", RUN, _wav_out("--hf-repo", "~/models/no-such-moshi"), 2, ("no folder", "owner/name")),
    Case("hf-repo a/b/c", RUN, _wav_out("--hf-repo", "{tmp}/models/x"), 2, ("no folder", "owner/name")),
    Case("hf-repo bad id", RUN, _wav_out("--hf-repo", "bad repo!"), 2, ("'bad repo!'", "owner/name")),
    Case("hf-repo file", RUN, _wav_out("--hf-repo", "{wav}"), 2, ("is a file", "folder holding config.json")),
    Case(
        "hf-repo file like owner/name",
        RUN,
        _wav_out("--hf-repo", "docs/notes.md"),
        2,
        ("docs/notes.md is a file",),
        prep=lambda t: ((t / "docs").mkdir(), (t / "docs" / "notes.md").write_text("x")),
        cwd="{tmp}",
    ),
    Case(
        "hf:// climbs out",
        RUN,
        _wav_out("--hf-repo", "{e2e}", "--moshi-weight", "hf://owner/repo/../x"),
        2,
        ("hf://owner/repo/../x", "inside"),
    ),
    Case(
        "hf:// bad repo",
        RUN,
        _wav_out("--hf-repo", "{e2e}", "--tokenizer", "hf://bad repo/x/t.model"),
        2,
        ("hf://bad repo/x/t.model", "owner/repo"),
    ),
    # a folder where a file is expected
    Case(
        "moshi-weight dir",
        RUN,
        _wav_out("--hf-repo", "{e2e}", "--moshi-weight", "{e2e}"),
        2,
        ("is a folder", "model.q4.safetensors"),
    ),
    Case("config dir", RUN, _wav_out("--hf-repo", "{e2e}", "--config", "{e2e}"), 2, ("is a folder", "config.json")),
    Case(
        "input dir",
        RUN,
        ("--hf-repo", "{e2e}", "--input", "{tmp}", "--output", "{tmp}/answer.wav"),
        2,
        ("is a folder", "audio input", ".wav"),
    ),
    Case(
        "quantize --config dir",
        QUANTIZE,
        (str(LM_FILES["torch"]), "--config", "{tmp}", "--out", "{tmp}/out", *Q),
        2,
        ("is a folder", "config"),
    ),
    # security: only files inside the model folder are read (run) or copied along (quantize)
    Case(
        "run: mimi_name ../..",
        RUN,
        _wav_out("--hf-repo", "{tmp}/model"),
        2,
        ("mimi_name", "outside"),
        prep=lambda t: e2e_copy(t, mimi_name="../secret.txt"),
        after=nothing_leaked,
    ),
    Case(
        "run: tokenizer_name /abs",
        RUN,
        _wav_out("--hf-repo", "{tmp}/model"),
        2,
        ("tokenizer_name", "outside"),
        prep=lambda t: e2e_copy(t, tokenizer_name=str(t / "secret.txt")),
        after=nothing_leaked,
    ),
    Case(
        "run: tokenizer_name empty",  # was "points outside the model folder"
        RUN,
        _wav_out("--hf-repo", "{tmp}/model"),
        2,
        ("tokenizer_name", "is empty"),
        prep=lambda t: e2e_copy(t, tokenizer_name=""),
    ),
    Case(
        "run: mimi_config_name ../",
        RUN,
        _wav_out("--hf-repo", "{tmp}/model"),
        2,
        ("mimi_config_name", "outside"),
        prep=lambda t: e2e_copy(t, mimi_config_name="../secret.txt"),
    ),
    Case(
        "run: tokenizer links out",
        RUN,
        _wav_out("--hf-repo", "{tmp}/model"),
        2,
        ("tokenizer_spm_32k_3.model", "outside"),
        prep=lambda t: link_out(e2e_copy(t), "tokenizer_spm_32k_3.model", t / "secret.txt"),
    ),
    Case(
        "quantize: tokenizer_name ../",
        QUANTIZE,
        ("{tmp}/src", "--out", "{tmp}/out", *Q),
        2,
        ("tokenizer_name", "outside"),
        prep=lambda t: torch_source(t, tokenizer_name="../secret.txt"),
        after=nothing_leaked,
    ),
    Case(
        "quantize: mimi_name /abs",
        QUANTIZE,
        ("{tmp}/src", "--out", "{tmp}/out", *Q),
        2,
        ("mimi_name", "outside"),
        prep=lambda t: torch_source(t, mimi_name=str(t / "secret.txt")),
        after=nothing_leaked,
    ),
    Case(
        "quantize: mimi_config_name ../",
        QUANTIZE,
        ("{tmp}/src", "--out", "{tmp}/out", *Q),
        2,
        ("mimi_config_name", "outside"),
        prep=lambda t: torch_source(t, mimi_config_name="../secret.txt"),
        after=nothing_leaked,
    ),
    Case(
        "quantize: --config names ../",
        QUANTIZE,
        ("{tmp}/src/model.safetensors", "--config", "{tmp}/c.json", "--out", "{tmp}/out", *Q),
        2,
        ("tokenizer_name", "outside"),
        prep=lambda t: (
            torch_source(t),
            (t / "c.json").write_text(
                json.dumps(json.loads(LM_CONFIG.read_text()) | {"tokenizer_name": "../secret.txt"})
            ),
        ),
        after=nothing_leaked,
    ),
    Case(
        "quantize: tokenizer links out",
        QUANTIZE,
        ("{tmp}/src", "--out", "{tmp}/out", *Q),
        2,
        ("tokenizer_spm_32k_3.model", "outside"),
        prep=lambda t: link_out(torch_source(t), "tokenizer_spm_32k_3.model", t / "secret.txt"),
        after=nothing_leaked,
    ),
    # quantize from the hub with no network: one probe, as run does, not ~24 s of retries
    Case(
        "quantize offline",
        QUANTIZE,
        ("kyutai-test/not-cached", "--out", "{tmp}/out", *Q),
        2,
        ("cannot download config.json", "cannot be reached", "local folder"),
        env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://moshi-test.invalid"},
        max_s=15.0,
    ),
    Case(
        "run offline",
        RUN,
        _wav_out("--hf-repo", "kyutai-test/not-cached"),
        2,
        ("cannot be reached",),
        env={"HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://moshi-test.invalid"},
        max_s=15.0,
    ),
]


@pytest.fixture
def world(tmp_path: Path) -> dict[str, str]:
    sf.write(str(tmp_path / "in.wav"), np.zeros(4800, np.float32), 24_000)
    (tmp_path / "secret.txt").write_text(SECRET)
    return {
        "tmp": str(tmp_path),
        "wav": str(tmp_path / "in.wav"),
        "e2e": str(E2E),
        "secret": str(tmp_path / "secret.txt"),
    }


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_one_clear_line(case: Case, world: dict[str, str], tmp_path: Path) -> None:
    if case.prep is not None:
        case.prep(tmp_path)
    env = cli_env(HF_HOME=str(tmp_path / "hf"), HF_HUB_CACHE=str(tmp_path / "hf" / "hub"), **case.env)
    t0 = time.monotonic()
    cwd = case.cwd.format(**world) if case.cwd else None
    r = run_module(case.module, *(a.format(**world) for a in case.args), env=env, cwd=cwd)
    took = time.monotonic() - t0
    assert_one_line_error(r, case.code, *(n.format(**world) for n in case.needles))
    assert not (tmp_path / "answer.wav").exists()
    if case.max_s is not None:
        assert took < case.max_s, f"{took:.1f} s\n{r.why()}"
    if case.after is not None:
        case.after(tmp_path)


# -- quantize into a read-only or full --out: one line, and nothing left behind ---------------------------
@pytest.mark.parametrize(
    "size,read_only,out,code,needles",
    [  # a read-only --out is refused before any work (2), as run and transcribe refuse theirs
        ("1m", True, "out", 2, ("read-only",)),  # --out exists on a read-only file system
        ("1m", True, "new/out", 2, ("read-only",)),  # --out must be created there
        ("96k", False, "out", 1, ("free", "KB")),
    ],  # a full disk: the files cannot fit
    ids=["read-only", "read-only-new", "full"],
)
def test_quantize_unwritable_out(tmp_path: Path, size: str, read_only: bool, out: str, code: int, needles) -> None:
    with small_disk(tmp_path / "fs", size, read_only, folders=("out",)) as fs:
        r = run_module(QUANTIZE, str(LM_FILES["torch"]), "--config", str(LM_CONFIG), "--out", str(fs / out), *Q)
        listing = sorted(p.name for p in fs.rglob("*"))
    line = assert_one_line_error(r, code, str(fs / out), *needles)
    assert "--out" in line
    assert listing == ["out"]  # no staging folder, no partial file


@pytest.mark.parametrize(
    "code,needle", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"), (errno.EACCES, "permission")]
)
@pytest.mark.parametrize("when", ["open", "write", "close"])
def test_quantize_write_failure_is_one_line(
    monkeypatch, capsys, tmp_path: Path, code: int, needle: str, when: str
) -> None:
    """An OSError from the file being written (at open, mid-file, or at the final flush) ends in one line
    and the staging folder is removed, even when closing the failed file fails again."""
    from quantize import writer
    from quantize.__main__ import main

    real_open = open

    class Failing:
        def __init__(self, path, mode):
            self._f, self._written = real_open(path, mode), 0

        def write(self, b):
            self._written += len(b)
            if when == "write" and self._written > 100_000:
                raise OSError(code, os.strerror(code))
            return self._f.write(b)

        def flush(self):
            if when == "close":
                raise OSError(code, os.strerror(code))
            self._f.flush()

        def fileno(self):
            return self._f.fileno()

        @property
        def closed(self):
            return self._f.closed

        def close(self):
            self._f.close()
            if when != "open":
                raise OSError(code, os.strerror(code))  # buffered data that cannot be written, again

    def fake_open(path, mode="r", *a, **k):
        if when == "open":
            raise OSError(code, os.strerror(code), str(path))
        return Failing(path, mode)

    monkeypatch.setattr(writer, "open", fake_open, raising=False)
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    rc = main([str(LM_FILES["torch"]), "--config", str(LM_CONFIG), "--out", str(out), *Q])
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0] and "--out" in lines[0], err
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


# -- no sound card (the fake backend with no devices): say so, and suggest file mode ------------------------
NO_MIC = [{"name": "HDMI out", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 48000.0}]
NO_SPEAKER = [{"name": "USB mic", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 48000.0}]
NO_RATE = [
    {"name": "USB mic", "max_input_channels": 1, "max_output_channels": 1, "default_samplerate": 0.0},
    {"name": "HDMI", "max_input_channels": 1, "max_output_channels": 2, "default_samplerate": 48000.0},
]
NAN_RATE = [
    NO_RATE[1],
    {"name": "USB speaker", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": float("nan")},
]


@pytest.mark.parametrize(
    "devices,args,code,stream,needles",
    [
        ([], ["--list-devices"], 0, "out", ("no audio device", "--input")),
        ([], ["--hf-repo", str(E2E)], 2, "err", ("no microphone", "--input FILE")),
        (NO_MIC, ["--hf-repo", str(E2E)], 2, "err", ("no microphone", "--input FILE")),
        (NO_SPEAKER, ["--hf-repo", str(E2E), "--input-device", "usb"], 2, "err", ("no speaker", "--input FILE")),
        ([], ["--hf-repo", str(E2E), "--input-device", "3"], 2, "err", ("no microphone", "--input FILE")),
        # checked before the model is fetched (4.5 GB on a first run): said even when it is not in the cache
        ([], ["--hf-repo", "kyutai/not-downloaded-mlx-q4"], 2, "err", ("no microphone", "--input FILE")),
        # a device that reports no usable rate (it used to fail the session with an internal ValueError)
        (NO_RATE, ["--hf-repo", str(E2E)], 2, "err", ("USB mic", "0 Hz", "--list-devices")),
        (NAN_RATE, ["--hf-repo", str(E2E), "--output-device", "usb"], 2, "err", ("USB speaker", "nan Hz")),
    ],
    ids=["list", "live", "no-mic", "no-speaker", "named-device", "before-download", "mic-0-hz", "speaker-nan-hz"],
)
def test_no_sound_card(capsys, monkeypatch, devices, args, code, stream, needles) -> None:
    from moshi_mlx.audio.fake import FakeStreamFactory
    from moshi_mlx.run import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a hub model is never fetched here

    backend = FakeStreamFactory(devices=devices)
    backend.default = (-1, -1) if not devices else (0, 0)
    assert main(args, audio_backend=backend) == code
    captured = capsys.readouterr()
    text = captured.out if stream == "out" else captured.err
    assert "Traceback" not in captured.err and "(none)" not in text
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1, text
    for n in needles:
        assert n in lines[0], text


def test_missing_portaudio_suggests_file_mode() -> None:
    """Where PortAudio itself is missing (a server), the line says how to go on without a sound card."""
    try:
        import sounddevice  # noqa: F401
    except OSError:
        pass
    else:
        pytest.skip("PortAudio is installed here")
    r = run_module(RUN, "--list-devices")
    assert_one_line_error(r, 2, "PortAudio", "--input FILE")


def test_hf_cache_snapshot_folders_still_load(tmp_path: Path) -> None:
    """A Hugging Face cache snapshot links each file to ../../blobs: that stays inside the repository and is read."""
    from moshi_mlx.loading.hub import resolve_model_files
    from quantize.source import resolve

    def snapshot(files: dict[str, Path], repo: str) -> Path:
        blobs, snap = tmp_path / repo / "blobs", tmp_path / repo / "snapshots" / "abc123"
        blobs.mkdir(parents=True)
        snap.mkdir(parents=True)
        for i, (name, src) in enumerate(files.items()):
            shutil.copyfile(src, blobs / f"blob{i}")
            (snap / name).symlink_to(Path("..") / ".." / "blobs" / f"blob{i}")
        return snap

    run_snap = snapshot({p.name: p for p in E2E.iterdir()}, "models--kyutai--e2e")
    files = resolve_model_files(run_snap)
    assert files.tokenizer == run_snap / "tokenizer_spm_32k_3.model" and files.quant == 4
    q_snap = snapshot(
        {
            "model.safetensors": LM_FILES["torch"],
            "config.json": LM_CONFIG,
            "tokenizer_spm_32k_3.model": E2E / "tokenizer_spm_32k_3.model",
        },
        "models--kyutai--pt",
    )
    src = resolve(str(q_snap))
    assert src.weights == q_snap / "model.safetensors"
    assert src.extras["tokenizer_name"].name == "tokenizer_spm_32k_3.model"
