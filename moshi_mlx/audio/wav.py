"""A 16-bit mono WAV file written as the audio comes, readable at any moment, even after a crash.

The header states the length of the audio up to the last `sync()` (every second or so in a
recording), so a process that is killed leaves a file that Python's `wave`, libsndfile and every
player read with the right length. A write that fails (disk full) keeps everything before it: the
file is cut to whole samples and its header says so.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

HEADER_BYTES = 44


def wav_header(rate: int, data_bytes: int) -> bytes:
    """The canonical 44-byte header of a mono 16-bit PCM WAV holding `data_bytes` of samples."""
    return struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + data_bytes,
        b"WAVE",
        b"fmt ",
        16,
        1,
        1,
        rate,
        2 * rate,
        2,
        16,
        b"data",
        data_bytes,
    )


class AppendFile:
    """A file written only at its end, straight to the OS (nothing waits in a buffer of ours).

    `size` is what reached the file; after a failed write, `cut(size)` drops a partial record.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self.size = 0

    def append(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)  # short writes happen when the disk fills up; the next one raises
            self.size += n
            view = view[n:]

    def cut(self, size: int) -> None:
        os.ftruncate(self.fd, size)
        os.lseek(self.fd, size, os.SEEK_SET)
        self.size = size

    def sync(self) -> None:
        os.fsync(self.fd)

    def deleted(self) -> bool:
        """Whether the file was removed while open (its folder too, say): what is written after goes nowhere."""
        return os.fstat(self.fd).st_nlink == 0

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class WavTrack:
    """Mono float32 in [-1, 1] -> 16-bit PCM WAV at `rate`, written as it comes."""

    def __init__(self, path: str | Path, rate: int) -> None:
        self.rate = rate
        self._file = AppendFile(path)
        try:
            self._file.append(wav_header(rate, 0))
        except OSError:  # a full disk: the file is not kept open (a mount would stay busy)
            self._file.close()
            raise

    @property
    def samples(self) -> int:
        """Whole samples that reached the file."""
        return max(0, self._file.size - HEADER_BYTES) // 2

    def write(self, pcm: np.ndarray) -> None:
        # as libsndfile does, so that what it reads back is exact: k / 32768 round-trips
        x = np.clip(np.rint(np.asarray(pcm, np.float32) * 32768.0), -32768, 32767).astype("<i2")
        self._file.append(x.tobytes())

    def deleted(self) -> bool:
        return self._file.deleted()

    def sync(self) -> None:
        """States the length written so far in the header and hands everything to the disk."""
        os.pwrite(self._file.fd, wav_header(self.rate, 2 * self.samples), 0)
        self._file.sync()

    def close(self) -> None:
        """Ends the file with a header that states its length; after a failed write, keeps every whole
        sample before it. Idempotent; the file is closed even if the disk fails again."""
        if self._file.fd < 0:
            return
        try:
            if (self._file.size - HEADER_BYTES) % 2:
                self._file.cut(HEADER_BYTES + 2 * self.samples)
            self.sync()
        finally:
            self._file.close()
