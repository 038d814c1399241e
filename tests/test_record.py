"""Recorder: tracks and transcript round-trip, readable while open, and after the process dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.errors import AudioFormatError
from moshi_mlx.record import RATE, Recorder, recording_paths

REPO = Path(__file__).resolve().parents[1]


def _frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(0.3 * rng.standard_normal(1920)).astype(np.float32) for _ in range(n)]


def test_round_trip(tmp_path: Path) -> None:
    user, moshi = _frames(10, 1), _frames(10, 2)
    with Recorder(tmp_path / "rec", meta={"repo": "kyutai/test"}) as rec:
        for i, (u, m) in enumerate(zip(user, moshi)):
            rec.add_audio(u, m if i % 3 else None)
            rec.add_word(f"w{i}", i * 0.08)
        rec.add_event("skip", 0.5, frames=2)
    paths = recording_paths(tmp_path / "rec")
    got_u, rate = sf.read(paths.user_wav, dtype="float32")
    got_m, _ = sf.read(paths.moshi_wav, dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(got_u, np.clip(np.concatenate(user), -1, 1), atol=1 / 16000)
    want_m = np.concatenate([m if i % 3 else np.zeros_like(m) for i, m in enumerate(moshi)])
    np.testing.assert_allclose(got_m, np.clip(want_m, -1, 1), atol=1 / 16000)
    lines = [json.loads(x) for x in paths.transcript.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["repo"] == "kyutai/test"
    assert [x["word"] for x in lines[1:] if "word" in x] == [f"w{i}" for i in range(10)]
    assert lines[5]["t"] == pytest.approx(4 * 0.08)
    assert lines[-1] == {"t": 0.5, "type": "skip", "frames": 2}


def test_readable_while_still_open(tmp_path: Path) -> None:
    rec = Recorder(tmp_path, sync_every_s=0.2)
    for f in _frames(13):
        rec.add_audio(f, f)
    rec.add_word("hello", 0.0)
    deadline = time.monotonic() + 5
    while rec.user_samples < 13 * 1920 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.5)  # one sync period
    info = sf.info(str(rec.paths.user_wav))
    assert info.frames == 13 * 1920
    assert "hello" in rec.paths.transcript.read_text()
    rec.close()


_CHILD = """
import os, sys, time
import numpy as np
from moshi_mlx.record import Recorder
rec = Recorder(sys.argv[1], sync_every_s=0.5)
frame = np.full(1920, 0.25, np.float32)
i = 0
while True:
    rec.add_audio(frame, -frame)
    rec.add_word(f"w{i}", i * 0.08)
    i += 1
    if i == 25:  # 2 s of audio queued
        time.sleep(1.0)
        if sys.argv[2] == "exit":
            os._exit(3)  # no close(), no atexit, no flush
        print("ready", flush=True)
    time.sleep(0.005)
"""


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_survives_abrupt_death(tmp_path: Path, how: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path), how], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    if how == "kill":
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    paths = recording_paths(tmp_path)
    for wav, value in ((paths.user_wav, 0.25), (paths.moshi_wav, -0.25)):
        pcm, rate = sf.read(wav, dtype="float32")  # header must be valid
        assert rate == RATE
        assert len(pcm) >= 25 * 1920  # everything queued >= 1 s before death is there
        assert len(pcm) % 1920 == 0 or how == "kill"
        np.testing.assert_allclose(pcm, value, atol=1e-3)
    words = [json.loads(x) for x in paths.transcript.read_text().splitlines()[1:]]
    assert len(words) >= 25 and words[24]["word"] == "w24"


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AudioFormatError, match="cannot create recording files.*writable"):
        Recorder(blocker / "sub")
