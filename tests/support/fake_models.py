"""Fake FrameModels for loop tests: deterministic, MLX-free, thread-aware."""

from __future__ import annotations

import threading
import time

import numpy as np

from moshi_mlx.audio import FRAME
from moshi_mlx.dialog.events import FrameResult


class EchoModel:
    """Answers with its input `delay` frames later and says the word "w<k>" every `text_every` frames."""

    def __init__(self, delay: int = 1, text_every: int = 5, step_s: float = 0.0, fail_at: int | None = None) -> None:
        self.delay, self.text_every, self.step_s, self.fail_at = delay, text_every, step_s, fail_at
        self.threads: set[int] = {threading.get_ident()}
        self.resets = 0
        self.steps = 0
        self.inputs: list[np.ndarray] = []
        self._history: list[np.ndarray] = []
        self._word: str | None = None  # said, complete once the next word starts

    def reset(self) -> None:
        self.resets += 1
        self._history = []
        self._word = None

    def flush_word(self) -> str | None:
        word, self._word = self._word, None
        return word

    def step(self, pcm: np.ndarray) -> FrameResult:
        self.threads.add(threading.get_ident())
        assert pcm.shape == (FRAME,) and pcm.dtype == np.float32
        if self.fail_at is not None and self.steps == self.fail_at:
            raise RuntimeError("model blew up")
        if self.step_s:
            time.sleep(self.step_s)
        self.inputs.append(pcm.copy())
        self._history.append(pcm.copy())
        k = self.steps
        self.steps += 1
        out = self._history.pop(0) if len(self._history) > self.delay else None
        text = f"w{k}" if self.text_every and k % self.text_every == 0 else None
        word = None
        if text is not None:
            word, self._word = self._word, text
        return FrameResult(out, text, None, word, text is not None)
