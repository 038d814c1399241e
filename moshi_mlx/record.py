"""Crash-safe conversation recorder: two wav tracks and a timed transcript, written as they come.

Files in the output folder:
    user.wav          what the microphone gave the model (24 kHz mono, 16-bit)
    moshi.wav         what Moshi said, on the same timeline
    transcript.jsonl  one JSON object per line: a header, then {"t": seconds, "word": ...} per word

Disk work happens on a writer thread of its own (the model loop only enqueues numpy arrays).
libsndfile rewrites the wav header as it writes and the writer syncs the files at least every
`sync_every_s` seconds, so a crash, Ctrl-C or kill leaves readable files missing at most about
that much audio.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .audio import MODEL_RATE as RATE
from .errors import AudioFormatError
_STOP = object()


@dataclass(frozen=True)
class RecordingPaths:
    folder: Path
    user_wav: Path
    moshi_wav: Path
    transcript: Path


def recording_paths(folder: str | Path) -> RecordingPaths:
    folder = Path(folder)
    return RecordingPaths(folder, folder / "user.wav", folder / "moshi.wav", folder / "transcript.jsonl")


class Recorder:
    """Records a conversation; every method is non-blocking and safe to call from one producer thread.

    Args:
        folder: created if missing; existing recordings there are replaced.
        sync_every_s: longest stretch of audio a crash may lose.
        meta: extra fields for the transcript header (model repo, settings...).
    """

    def __init__(self, folder: str | Path, sync_every_s: float = 1.0, meta: dict | None = None) -> None:
        import soundfile as sf

        self.paths = recording_paths(folder)
        try:
            self.paths.folder.mkdir(parents=True, exist_ok=True)
            kw = dict(mode="w", samplerate=RATE, channels=1, subtype="PCM_16", format="WAV")
            self._user = sf.SoundFile(str(self.paths.user_wav), **kw)
            self._moshi = sf.SoundFile(str(self.paths.moshi_wav), **kw)
            self._text = open(self.paths.transcript, "w", encoding="utf-8")  # noqa: SIM115 (closed by the writer)
        except (OSError, RuntimeError) as e:
            raise AudioFormatError(
                f"cannot create recording files in {self.paths.folder}: {e}. Pick a writable folder."
            ) from None
        header = {"type": "header", "rate": RATE, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        header.update(meta or {})
        self._text.write(json.dumps(header) + "\n")
        self._sync_every = sync_every_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.error: str | None = None  # set by the writer thread if the disk fails (disk full...)
        self.user_samples = 0  # samples written so far (writer-owned)
        self.moshi_samples = 0
        self._thread = threading.Thread(target=self._writer, name="moshi-recorder", daemon=True)
        self._thread.start()

    # -- producer side (model loop) --------------------------------------------------------------
    def add_audio(self, user: np.ndarray | None, moshi: np.ndarray | None) -> None:
        """Appends one stretch of each track; `None` writes silence of the other track's length."""
        if self._closed:
            return
        n = len(user) if user is not None else (len(moshi) if moshi is not None else 0)
        user = np.zeros(n, np.float32) if user is None else np.asarray(user, np.float32)
        moshi = np.zeros(n, np.float32) if moshi is None else np.asarray(moshi, np.float32)
        if len(moshi) != len(user):  # keep both tracks on one timeline
            moshi = np.resize(np.pad(moshi, (0, max(0, len(user) - len(moshi)))), len(user))
        self._queue.put(("audio", user.copy(), moshi.copy()))

    def add_word(self, word: str, t: float, speaker: str = "moshi") -> None:
        """Adds a transcript word starting at `t` seconds on the recording's timeline."""
        if not self._closed:
            self._queue.put(("word", {"t": round(float(t), 3), "speaker": speaker, "word": word}))

    def add_event(self, kind: str, t: float, **fields) -> None:
        """Adds a non-word event (skipped frames, device error, reset...) to the transcript."""
        if not self._closed:
            self._queue.put(("word", {"t": round(float(t), 3), "type": kind, **fields}))

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued, closes the files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writer thread ---------------------------------------------------------------------------
    def _writer(self) -> None:
        last_sync = time.monotonic()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._sync_every / 2)
                except queue.Empty:
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    self._write(item)
                if time.monotonic() - last_sync >= self._sync_every:
                    self._sync()
                    last_sync = time.monotonic()
        except Exception as e:  # disk full, folder removed...: keep the loop alive, report it
            self.error = f"recording stopped: {e}"
        finally:
            for f in (self._user, self._moshi, self._text):
                try:
                    f.close()
                except Exception:  # noqa: BLE001 (closing after a disk error may fail again)
                    pass

    def _write(self, item: tuple) -> None:
        if item[0] == "audio":
            _, user, moshi = item
            self._user.write(np.clip(user, -1.0, 1.0))
            self._moshi.write(np.clip(moshi, -1.0, 1.0))
            self.user_samples += len(user)
            self.moshi_samples += len(moshi)
        else:
            self._text.write(json.dumps(item[1], ensure_ascii=False) + "\n")
            self._text.flush()

    def _sync(self) -> None:
        self._user.flush()  # libsndfile: header rewritten, data handed to the OS
        self._moshi.flush()
        self._text.flush()
        os.fsync(self._text.fileno())
