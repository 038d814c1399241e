"""Crash-safe conversation recorder: two wav tracks and a timed transcript, written as they come.

Files in the output folder:
    user.wav          what the microphone gave the model (24 kHz mono, 16-bit)
    moshi.wav         what Moshi said, on the same timeline
    transcript.jsonl  one JSON object per line: a header, then {"t": seconds, "word": ...} per word, in order of
                      time once closed (written as they come; the user's words come late)

Disk work happens on a writer thread of its own (the model loop only enqueues numpy arrays).
Every `sync_every_s` seconds the writer states the length so far in the wav headers and syncs the
files, so a crash, Ctrl-C or kill leaves files that any reader (Python's `wave` too) reads with the
right length, missing at most about that much audio. A recording is never replaced: a folder that
already holds one is refused. If the disk fails (full, removed) or cannot keep up, recording stops
with `error` set, everything written before stays readable, and nothing more is queued. Files deleted while
open (the folder removed) are noticed at the next sync: recording stops, said as deleted.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import FRAME
from ..audio import MODEL_RATE as RATE
from ..audio.wav import AppendFile, WavTrack
from ..errors import OutputError, RecordingExistsError
from ..outputs import write_failure, write_text

_STOP = object()


@dataclass(frozen=True)
class RecordingPaths:
    folder: Path
    user_wav: Path
    moshi_wav: Path
    transcript: Path

    @property
    def files(self) -> tuple[Path, Path, Path]:
        return self.user_wav, self.moshi_wav, self.transcript


def recording_paths(folder: str | Path) -> RecordingPaths:
    folder = Path(folder)
    return RecordingPaths(folder, folder / "user.wav", folder / "moshi.wav", folder / "transcript.jsonl")


def holds_recording(folder: str | Path) -> list[str]:
    """Names of the recording files already in `folder` (empty: it is free to record into)."""
    return [p.name for p in recording_paths(folder).files if p.exists() or p.is_symlink()]


def check_free(folder: str | Path) -> RecordingPaths:
    """Refuses a folder that already holds a recording, suggesting a free one next to it.

    Raises:
        RecordingExistsError: naming the files found and the suggestion.
    """
    folder = Path(folder)
    found = holds_recording(folder)
    if found:
        n = 2
        while holds_recording(free := folder.with_name(f"{folder.name}-{n}")) or free.is_file():
            n += 1
        raise RecordingExistsError(
            f"{folder} already holds a recording ({', '.join(found)}), which is kept: "
            f"record into another folder, e.g. {free}",
            free,
        )
    return recording_paths(folder)


def _opened(opened: list, f):
    opened.append(f)
    return f


def _remove(opened: list, paths: RecordingPaths, folders: list[Path]) -> None:
    """Undoes a recorder's start that failed: its files (none existed, see check_free) and the folders it made."""
    for f in opened:
        with contextlib.suppress(OSError):
            f.close()
    for p in (*paths.files, *folders):
        with contextlib.suppress(OSError):  # not there, or under a file
            p.rmdir() if p in folders else p.unlink(missing_ok=True)


class Recorder:
    """Records a conversation; every method is non-blocking and safe to call from one producer thread.

    Args:
        folder: created if missing; a folder that already holds a recording is refused
            (`RecordingExistsError`).
        sync_every_s: longest stretch of audio a crash may lose.
        meta: extra fields for the transcript header (model repo, settings...).
        max_backlog_s: audio allowed to wait for a slow disk; past it recording stops (bounded memory).
    """

    def __init__(
        self, folder: str | Path, sync_every_s: float = 1.0, meta: dict | None = None, max_backlog_s: float = 30.0
    ) -> None:
        self.paths = check_free(folder)
        made = [f for f in (self.paths.folder, *self.paths.folder.parents) if not f.exists()]
        self._made = made  # folders this recording created (see discard)
        opened: list[WavTrack | AppendFile] = []
        try:
            self.paths.folder.mkdir(parents=True, exist_ok=True)
            self._user = _opened(opened, WavTrack(self.paths.user_wav, RATE))
            self._moshi = _opened(opened, WavTrack(self.paths.moshi_wav, RATE))
            self._text = _opened(opened, AppendFile(self.paths.transcript))
        except OSError as e:  # a full or read-only disk: leave nothing that would look like a recording
            _remove(opened, self.paths, made)
            raise OutputError(
                f"cannot create recording files in {self.paths.folder}: {e.strerror or e}. Pick a writable folder."
            ) from None
        self._text_lines = 0  # bytes of the transcript that are whole lines
        self._sync_every = sync_every_s
        # one item per frame, plus words and events: twice the frames of the backlog bounds them all
        self._queue: queue.Queue = queue.Queue(maxsize=max(8, int(2 * max_backlog_s * RATE / FRAME)))
        self._closed = False
        self._stopping = threading.Event()
        self.error: str | None = None  # why recording stopped early (disk full, too slow), if it did
        header = {"type": "header", "rate": RATE, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        self._put(("line", {**header, **(meta or {})}))
        self._thread = threading.Thread(target=self._writer, name="moshi-recorder", daemon=True)
        self._thread.start()

    @property
    def user_samples(self) -> int:
        """Samples of each track written so far."""
        return self._user.samples

    @property
    def moshi_samples(self) -> int:
        return self._moshi.samples

    # -- producer side (model loop) --------------------------------------------------------------
    def add_audio(self, user: np.ndarray | None, moshi: np.ndarray | None) -> None:
        """Appends one stretch of each track; `None` writes silence of the other track's length."""
        if self._closed or self.error is not None:
            return
        n = len(user) if user is not None else (len(moshi) if moshi is not None else 0)
        user = np.zeros(n, np.float32) if user is None else np.asarray(user, np.float32)
        moshi = np.zeros(n, np.float32) if moshi is None else np.asarray(moshi, np.float32)
        if len(moshi) != len(user):  # keep both tracks on one timeline
            moshi = np.resize(np.pad(moshi, (0, max(0, len(user) - len(moshi)))), len(user))
        self._put(("audio", user.copy(), moshi.copy()))

    def add_word(self, word: str, t: float, speaker: str = "moshi") -> None:
        """Adds a transcript word starting at `t` seconds on the recording's timeline."""
        self._put(("line", {"t": round(float(t), 3), "speaker": speaker, "word": word}))

    def add_event(self, kind: str, t: float, **fields) -> None:
        """Adds a non-word event (skipped frames, device error, reset...) to the transcript."""
        self._put(("line", {"t": round(float(t), 3), "type": kind, **fields}))

    def _put(self, item: tuple) -> None:
        if self._closed or self.error is not None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._stop_early(f"the disk did not keep up (in {self.paths.folder})")

    def close(self, timeout: float = 10.0) -> None:
        """Writes what is queued, closes the files. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        with contextlib.suppress(queue.Full):  # the writer sees `_stopping` once it has drained the queue
            self._queue.put_nowait(_STOP)
        self._thread.join(timeout)

    def discard(self) -> None:
        """Closes and removes a recording of nothing (the conversation never started: its devices would not open),
        and the folders it made, so that the same folder can be recorded into once the trouble is mended."""
        self.close()
        if self.user_samples == 0:
            _remove([], self.paths, self._made)

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- writer thread ---------------------------------------------------------------------------
    def _stop_early(self, why: str, kept: bool = True) -> None:
        if self.error is None:
            after = f"recording stopped after {self.user_samples / RATE:.1f} s: {why}"
            self.error = f"{after}; what was recorded before is kept" if kept else after

    def _writer(self) -> None:
        last_sync = time.monotonic()
        try:
            while self.error is None:
                try:
                    item = self._queue.get(timeout=self._sync_every / 4)
                except queue.Empty:
                    if self._stopping.is_set():
                        break
                    item = None
                if item is _STOP:
                    break
                if item is not None:
                    self._write(item)
                if time.monotonic() - last_sync >= self._sync_every:
                    self._sync()
                    last_sync = time.monotonic()
        except OSError as e:  # disk full, folder removed...: keep the loop alive, report it
            self._stop_early(f"cannot write in {self.paths.folder}: {write_failure(e)}")
        except Exception as e:  # noqa: BLE001 (anything else stops the recording, not the conversation)
            self._stop_early(f"{e!r}")
        finally:
            self._finish()

    def _write(self, item: tuple) -> None:
        if item[0] == "audio":
            _, user, moshi = item
            self._user.write(user)
            self._moshi.write(moshi)
        else:
            self._text.append((json.dumps(item[1], ensure_ascii=False) + "\n").encode("utf-8"))
            self._text_lines = self._text.size

    def _sync(self) -> None:
        for f in (self._user, self._moshi, self._text):
            f.sync()
        if any(f.deleted() for f in (self._user, self._moshi, self._text)):  # written on, it would all be lost
            self._stop_early(f"its files in {self.paths.folder} were deleted", kept=False)

    def _finish(self) -> None:
        """Closes the files with what was written (headers updated, a half-written line dropped), frees the queue."""
        steps = (self._user.close, self._moshi.close, self._cut_text, self._text.sync, self._text.close, self._in_order)
        for close in steps:
            with contextlib.suppress(Exception):  # the disk may fail again: close the others regardless
                close()
        while not self._queue.empty():
            self._queue.get_nowait()

    def _in_order(self) -> None:
        """Puts the closed transcript's lines in order of time: the user's words come late (the STT model's
        delay) and were written when they came, after Moshi's words said later. Rewritten whole (renamed into
        place when complete); while recording the file holds them in the order they came."""
        sort_by_time(self.paths.transcript)

    def _cut_text(self) -> None:
        if self._text.size != self._text_lines:
            self._text.cut(self._text_lines)


def sort_by_time(transcript: Path) -> None:
    """Sorts a transcript.jsonl's timed lines by their time (stable: a tie keeps the order written), the header
    first; a file already in order is left as it is."""
    lines = transcript.read_text(encoding="utf-8").splitlines()
    timed = [json.loads(line).get("t", -1.0) for line in lines]
    if all(a <= b for a, b in zip(timed, timed[1:], strict=False)):
        return
    order = sorted(range(len(lines)), key=lambda i: timed[i])
    write_text(transcript, "".join(lines[i] + "\n" for i in order))
