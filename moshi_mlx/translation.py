"""Hibiki's streaming translation: the frame model, and the end of the source as the reference handles it.

`TranslationPipeline` is `MoshiPipeline` with Hibiki's generation: the model conditioned (and guided when
cfg_coef is not 1, see guidance.py) and the reference's file driver (moshi.run_inference):
  * the first frame is stepped twice ("otherwise the first slice is replaced by the initial tokens");
  * after the last whole frame of the source, one frame of codes all equal to the codebook size (2048 for
    the release) says the source ended; then the model hears silence until it says the end of text (its
    tokenizer's EOS) on the output, which ends the translation. An EOS before the source ended is
    ignored (the reference only warns; its text embedding reads as padding, see loading.lm).
`SourceEnd` carries those two facts between the file port (which knows when the source ends) and the
pipeline (which knows when the model is done); both run on the model loop's thread.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlx.core as mx
import numpy as np

from .audio import FRAME, FRAME_S
from .audio.file_port import FileAudioPort, Sink
from .audio.files import AudioInput
from .dialog.events import FrameResult
from .guidance import DEFAULT_CFG_COEF, GuidedLm
from .lm import Lm
from .loading.lm import TEXT_EOS
from .mimi import Mimi, MimiState
from .pipeline import MoshiPipeline, Sampling
from .text import TextStream

MAX_TAIL_S = 30.0  # silence fed after the source at most, waiting for the end of text (the reference: no limit)


@dataclass
class SourceEnd:
    """The source has ended (set by the port); the translation has ended (set by the pipeline)."""

    source_ended: bool = False
    translation_ended: bool = False


class TranslationPipeline(MoshiPipeline):
    """Hibiki over one source: French frames in, English speech and text out.

    Args (beyond MoshiPipeline's):
        cfg_coef: classifier-free guidance (1: none, the reference's default; Hibiki's README: 3 is typical).
        source_end: shared with the port; None: a live source that never ends.
    """

    def __init__(
        self,
        mimi: Mimi,
        lm: Lm,
        text: TextStream,
        sampling: Sampling,
        cfg_coef: float = DEFAULT_CFG_COEF,
        source_end: SourceEnd | None = None,
    ):
        self.guided = GuidedLm(lm, cfg_coef)
        self.source_end = source_end
        super().__init__(mimi, lm, text, sampling)
        if cfg_coef != 1.0:
            self.notes.append(f"Classifier-free guidance {cfg_coef:g}: two rows per step")

    def _generating(self, lm: Lm) -> Lm:
        return self.guided.as_lm()

    def reset(self) -> None:
        super().reset()
        self._eos_fed = False
        if self.source_end is not None:
            self.source_end.translation_ended = False

    def _user_codes(self, pcm: np.ndarray) -> tuple[mx.array, MimiState]:
        if self.source_end is not None and self.source_end.source_ended and not self._eos_fed:
            self._eos_fed = True  # the source's end: every codebook at the codebook size, nothing encoded
            return mx.full((1, self.lm.cfg.user_codebooks), self.lm.cfg.card, mx.int32), self._mimi_state
        return super()._user_codes(pcm)

    def _advance(self, user: mx.array) -> mx.array | None:
        if self.frames == 0:  # the reference steps its first frame twice
            super()._advance(user)
        return super()._advance(user)

    def step(self, pcm: np.ndarray) -> FrameResult:
        result = super().step(pcm)
        if result.token == TEXT_EOS and self._eos_fed and self.source_end is not None:
            self.source_end.translation_ended = True
        return result


class TranslationFilePort(FileAudioPort):
    """FileAudioPort for translation: the source's whole frames, then silence until the translation ends (at
    most MAX_TAIL_S); the translation goes to the sink from its first frame (no leading silence, as the
    reference writes it) and as long as the model speaks, not cut at the source's length."""

    def __init__(self, source: AudioInput | np.ndarray, sink: Sink, source_end: SourceEnd) -> None:
        super().__init__(source, sink)
        self.source_end = source_end
        self.frames = self.length // FRAME  # the reference keeps whole frames only
        self.length = self.frames * FRAME
        self.tail_frames = round(MAX_TAIL_S / FRAME_S)

    @property
    def frames_read(self) -> int:
        return min(self._next, self.frames)

    def read_input(self) -> np.ndarray:
        if self.source_end.translation_ended or self._next >= self.frames + self.tail_frames:
            self.exhausted.set()
            return np.zeros(0, np.float32)
        self._next += 1
        if self._next > self.frames:
            self.source_end.source_ended = True
            return np.zeros(FRAME, np.float32)
        return self._source.read(FRAME)

    def _put(self, pcm: np.ndarray) -> None:
        with self._lock:
            if not self._closed and pcm.size:
                self._sink.write(pcm)
                self.written += pcm.size
