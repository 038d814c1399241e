"""An AudioPort over a file: the model loop reads a recording and writes Moshi's answer, as fast as it can.

`python -m moshi_mlx.run --input` drives the same ModelLoop as the live dialog through this port. It
hands out one 80 ms frame per read, so the loop never sees a backlog and never skips; the answer is
laid on the input's timeline (silence while the acoustic delays fill), so it is as long as the input,
and goes to its sink (an `AudioWriter`: straight to disk) as it is produced. The input is read as it is
stepped (an `AudioInput` over the file): memory stays flat however long the input.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np

from . import FRAME
from .files import AudioInput


class Sink(Protocol):
    def write(self, pcm: np.ndarray) -> None: ...  # mono float32 at 24 kHz


class FileAudioPort:
    """Feeds `source` (24 kHz mono) frame by frame; writes the answer to `sink` as it comes.

    Args:
        source: the user's audio at 24 kHz: an `AudioInput` (read as it is stepped) or the samples [T] float32.
        sink: receives Moshi's answer on the input's timeline, never more than the input's length.
    """

    def __init__(self, source: AudioInput | np.ndarray, sink: Sink) -> None:
        self._source = source if isinstance(source, AudioInput) else AudioInput.of(source)
        self.length = self._source.length
        self.frames = -(-self.length // FRAME)
        self._next = 0
        self._sink = sink
        self._lock = threading.Lock()  # the loop thread writes, the caller's thread closes
        self._closed = False
        self.written = 0  # answer samples handed to the sink
        self._out_frames = 0
        self.exhausted = threading.Event()  # set once every frame has been stepped

    @property
    def frames_read(self) -> int:
        """Frames handed to the loop so far (progress)."""
        return self._next

    # -- AudioPort ---------------------------------------------------------------------------
    def start(self) -> None: ...

    def stop(self) -> None: ...

    def check(self) -> None: ...

    def read_input(self) -> np.ndarray:
        if self._next >= self.frames:
            # the loop asks again only after stepping the frame before: all frames are done
            self.exhausted.set()
            return np.zeros(0, np.float32)
        frame = self._source.read(FRAME)
        frame = np.pad(frame, (0, FRAME - frame.size))  # the last frame is completed with silence
        # frames stepped without an answer (the delays filling) are silence on the answer's timeline
        silent = self._next - self._out_frames
        if silent > 0:
            self._put(np.zeros(silent * FRAME, np.float32))
            self._out_frames += silent
        self._next += 1
        return frame

    def input_lost(self) -> int:
        return 0  # a file waits for the loop

    def write_output(self, pcm: np.ndarray) -> int:
        self._put(np.asarray(pcm, np.float32).reshape(-1))
        self._out_frames += 1
        return pcm.size

    def _put(self, pcm: np.ndarray) -> None:
        with self._lock:
            if not self._closed:
                pcm = pcm[: self.length - self.written]
                if pcm.size:
                    self._sink.write(pcm)
                    self.written += pcm.size

    def read_reference(self) -> np.ndarray:
        return np.zeros(0, np.float32)

    def output_queued_s(self) -> float:
        return 0.0

    # -- result ------------------------------------------------------------------------------
    def close(self, complete: bool) -> None:
        """No more writes to the sink; `complete`: pad the answer with silence to the input's length."""
        with self._lock:
            if complete and not self._closed and self.written < self.length:
                self._sink.write(np.zeros(self.length - self.written, np.float32))
                self.written = self.length
            self._closed = True
        self._source.close()
