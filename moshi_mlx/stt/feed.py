"""How the reference feeds a file to an STT model and times its words (delayed-streams-modeling's
scripts/stt_from_file_pytorch.py, with Kyutai's `moshi` 0.2.13).

    ceil(audio_silence_prefix_seconds * frame_rate) frames of silence,
    the audio, zero-padded to whole frames,
    ceil(audio_delay_seconds * frame_rate) frames of silence: the text lags the audio by the delay, so
        these flush the last words out.
A token of step s is then timed s / frame_rate - offset seconds into the audio, where the reference's
offset is int(prefix frames / frame_rate) + audio_delay_seconds: the prefix is truncated to whole
seconds (the 2.6B's 1 s prefix is 13 frames, 1.04 s: its words are timed 40 ms late), kept here as is.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from ..audio.files import AudioInput
from ..config import SttConfig


def prefix_frames(stt: SttConfig, frame_rate: float) -> int:
    return math.ceil(stt.audio_silence_prefix_seconds * frame_rate)


def suffix_frames(stt: SttConfig, frame_rate: float) -> int:
    """The end padding that flushes the last words."""
    return math.ceil(stt.audio_delay_seconds * frame_rate)


def time_offset(stt: SttConfig, frame_rate: float) -> float:
    """Seconds to subtract from a step's time (step / frame_rate) to get the time in the audio."""
    return int(prefix_frames(stt, frame_rate) / frame_rate) + stt.audio_delay_seconds


def file_frames(
    audio: AudioInput | np.ndarray, stt: SttConfig, frame_size: int, frame_rate: float, lag: int = 0
) -> FedFrames:
    """Mono audio at 24 kHz -> the frames the reference feeds, [frame_size] float32 each (prefix, audio,
    padding; `lag` more frames of padding for a model with stream delays, whose tokens come out that many steps
    late). The audio is read as its frames are fed (an `AudioInput` over a file: memory stays flat)."""
    audio = audio if isinstance(audio, AudioInput) else AudioInput.of(audio)
    before, after = prefix_frames(stt, frame_rate), suffix_frames(stt, frame_rate) + lag
    return FedFrames(audio, frame_size, before, after)


class FedFrames:
    """What `file_frames` gives: its length, then the frames one by one, each time it is iterated."""

    def __init__(self, audio: AudioInput, frame_size: int, before: int, after: int) -> None:
        self.audio, self.frame_size, self.before, self.after = audio, frame_size, before, after
        self.audio_frames = -(-audio.length // frame_size)  # the last one zero-padded

    def __len__(self) -> int:
        return self.before + self.audio_frames + self.after

    def __iter__(self) -> Iterator[np.ndarray]:
        silence = np.zeros(self.frame_size, np.float32)
        yield from itertools.repeat(silence, self.before)
        self.audio.rewind()
        try:
            for _ in range(self.audio_frames):
                pcm = self.audio.read(self.frame_size)
                yield np.pad(pcm, (0, self.frame_size - pcm.size))
        finally:
            self.audio.close()
        yield from itertools.repeat(silence, self.after)
