"""An AudioPort over a file: the model loop reads a recording and writes Moshi's answer, as fast as it can.

`python -m moshi_mlx.run --input` drives the same ModelLoop as the live dialog through this port. It
hands out one 80 ms frame per read, so the loop never sees a backlog and never skips; the answer is
laid on the input's timeline (silence while the acoustic delays fill), so it is as long as the input.
"""

from __future__ import annotations

import threading

import numpy as np

from . import FRAME


class FileAudioPort:
    """Feeds `pcm` [T] float32 (24 kHz mono) frame by frame; collects the answer.

    Args:
        pcm: the user's audio at 24 kHz.
    """

    def __init__(self, pcm: np.ndarray) -> None:
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        self.length = pcm.size
        frames = -(-pcm.size // FRAME)
        self._pcm = np.pad(pcm, (0, frames * FRAME - pcm.size))
        self.frames = frames
        self._next = 0
        self._out: list[np.ndarray] = []
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
        frame = self._pcm[self._next * FRAME : (self._next + 1) * FRAME]
        # frames stepped without an answer (the delays filling) are silence on the answer's timeline
        silent = self._next - self._out_frames
        if silent > 0:
            self._out.append(np.zeros(silent * FRAME, np.float32))
            self._out_frames += silent
        self._next += 1
        return frame

    def write_output(self, pcm: np.ndarray) -> int:
        self._out.append(np.asarray(pcm, np.float32).reshape(-1))
        self._out_frames += 1
        return pcm.size

    def read_reference(self) -> np.ndarray:
        return np.zeros(0, np.float32)

    def output_queued_s(self) -> float:
        return 0.0

    # -- result ------------------------------------------------------------------------------
    def answer(self) -> np.ndarray:
        """Moshi's audio on the input's timeline, exactly as long as the input."""
        out = np.concatenate(self._out) if self._out else np.zeros(0, np.float32)
        return np.pad(out, (0, max(0, self.length - out.size)))[: self.length]
