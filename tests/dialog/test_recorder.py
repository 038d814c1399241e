"""Recorder: tracks and transcript round-trip, readable while open, and after the process dies."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.dialog.recorder import RATE, Recorder, RecordingExistsError, recording_paths
from moshi_mlx.errors import OutputError
from support.disk import small_disk

REPO = Path(__file__).resolve().parents[2]


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
        rec.add_word("hello", 0.3, "user")  # the STT model's word, come late: written when it came
    paths = recording_paths(tmp_path / "rec")
    got_u, rate = sf.read(paths.user_wav, dtype="float32")
    got_m, _ = sf.read(paths.moshi_wav, dtype="float32")
    assert rate == RATE
    np.testing.assert_allclose(got_u, np.clip(np.concatenate(user), -1, 1), atol=1 / 16000)
    want_m = np.concatenate([m if i % 3 else np.zeros_like(m) for i, m in enumerate(moshi)])
    np.testing.assert_allclose(got_m, np.clip(want_m, -1, 1), atol=1 / 16000)
    lines = [json.loads(x) for x in paths.transcript.read_text().splitlines()]
    assert lines[0]["type"] == "header" and lines[0]["repo"] == "kyutai/test"
    assert [x["word"] for x in lines[1:] if x.get("speaker") == "moshi"] == [f"w{i}" for i in range(10)]
    # once closed, every line in order of time: the late user's word and the skip among Moshi's words
    assert [x["t"] for x in lines[1:]] == sorted(x["t"] for x in lines[1:])
    assert lines[5:7] == [{"t": 0.3, "speaker": "user", "word": "hello"}, {"t": 0.32, "speaker": "moshi", "word": "w4"}]
    assert lines[9] == {"t": 0.5, "type": "skip", "frames": 2}  # after w6 (0.48 s)


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
from moshi_mlx.dialog.recorder import Recorder
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
        with wave.open(str(wav)) as w:  # Python's reader trusts the header's length: it must be right
            assert w.getframerate() == RATE and w.getnframes() == len(pcm)
            got = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768
        np.testing.assert_allclose(got, value, atol=1e-3)
    words = [json.loads(x) for x in paths.transcript.read_text().splitlines()[1:]]
    assert len(words) >= 25 and words[24]["word"] == "w24"


def test_unwritable_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError, match="cannot create recording files.*writable"):
        Recorder(blocker / "sub")


def test_a_folder_holding_a_recording_is_never_replaced(tmp_path: Path) -> None:
    with Recorder(tmp_path / "rec") as rec:
        rec.add_audio(*_frames(2))
    before = {p.name: p.read_bytes() for p in (tmp_path / "rec").iterdir()}
    (tmp_path / "rec-2").mkdir()
    (tmp_path / "rec-2" / "moshi.wav").write_bytes(b"x")  # taken too
    with pytest.raises(RecordingExistsError, match=r"already holds a recording.*kept.*rec-3") as e:
        Recorder(tmp_path / "rec")
    assert e.value.free == tmp_path / "rec-3"
    assert {p.name: p.read_bytes() for p in (tmp_path / "rec").iterdir()} == before


def _check_cut_short(rec: Recorder, min_frames: int) -> None:
    """After a disk failure: an error that says so, and every file readable with a header that is right."""
    assert rec.error is not None and "recording stopped after" in rec.error and "kept" in rec.error
    for path in (rec.paths.user_wav, rec.paths.moshi_wav):
        with wave.open(str(path)) as w:
            n = w.getnframes()
            assert w.getframerate() == RATE and n >= min_frames * 1920
            assert path.stat().st_size == 44 + 2 * n  # the header says exactly what is there
        np.testing.assert_allclose(sf.read(str(path), dtype="float32")[0], 0.25, atol=1e-3)
    for line in rec.paths.transcript.read_text().splitlines():
        json.loads(line)  # no half-written line


def _feed_until_stopped(rec: Recorder, frames: int) -> None:
    frame = np.full(1920, 0.25, np.float32)
    for i in range(frames):
        rec.add_audio(frame, frame)
        rec.add_word(f"w{i}", i * 0.08)
        if rec.error is not None:
            break
        time.sleep(0.002)
    deadline = time.monotonic() + 10
    while rec.error is None and time.monotonic() < deadline:
        time.sleep(0.02)


def test_disk_full_stops_recording_keeps_what_was_written_and_memory_stays_flat(tmp_path, monkeypatch) -> None:
    rec = Recorder(tmp_path / "rec", sync_every_s=0.1)
    fds = {rec._user._file.fd, rec._moshi._file.fd, rec._text.fd}
    room = [200_000]  # bytes the disk has left for our files
    real_write = os.write

    def write(fd, data):  # the OS's write, on a disk that fills up: a short write, then ENOSPC
        if fd not in fds:
            return real_write(fd, data)
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real_write(fd, bytes(memoryview(data)[: min(len(data), room[0], 1001)]))
        room[0] -= n
        return n

    monkeypatch.setattr(os, "write", write)
    _feed_until_stopped(rec, 200)
    assert rec.error is not None and "No space left on device" in rec.error and "free some space" in rec.error
    rec._thread.join(5)  # the writer has closed the files
    for _ in range(5000):  # after the failure nothing is queued any more
        rec.add_audio(np.zeros(1920, np.float32), None)
    assert rec._queue.qsize() == 0
    rec.close()
    monkeypatch.undo()
    _check_cut_short(rec, 1)


def test_disk_full_on_a_real_small_disk(tmp_path) -> None:
    with small_disk(tmp_path / "disk", "200k") as disk:
        rec = Recorder(disk / "rec", sync_every_s=0.1)
        _feed_until_stopped(rec, 200)  # 15 s of audio: 1.4 MB, the disk holds 200 kB
        assert rec.error is not None and "No space left on device" in rec.error
        rec.close()
        _check_cut_short(rec, 1)


def test_a_disk_that_cannot_keep_up_stops_recording_instead_of_filling_memory(tmp_path, monkeypatch) -> None:
    rec = Recorder(tmp_path / "rec", max_backlog_s=1.0)
    stuck = threading.Event()
    fds = {rec._user._file.fd}
    real_write = os.write

    def write(fd, data):  # a disk that hangs (network share gone)
        if fd in fds:
            stuck.wait(10)
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    frame = np.full(1920, 0.25, np.float32)
    for _ in range(1000):  # 80 s of audio
        rec.add_audio(frame, frame)
    assert rec.error is not None and "did not keep up" in rec.error
    assert rec._queue.qsize() <= 2 * 1.0 * RATE / 1920 + 1
    stuck.set()
    rec.close()
    monkeypatch.undo()
    with wave.open(str(rec.paths.user_wav)) as w:
        assert w.getnframes() == rec.user_samples
