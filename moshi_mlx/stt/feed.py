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

import math

import numpy as np

from ..config import SttConfig


def prefix_frames(stt: SttConfig, frame_rate: float) -> int:
    return math.ceil(stt.audio_silence_prefix_seconds * frame_rate)


def suffix_frames(stt: SttConfig, frame_rate: float) -> int:
    """The end padding that flushes the last words."""
    return math.ceil(stt.audio_delay_seconds * frame_rate)


def time_offset(stt: SttConfig, frame_rate: float) -> float:
    """Seconds to subtract from a step's time (step / frame_rate) to get the time in the audio."""
    return int(prefix_frames(stt, frame_rate) / frame_rate) + stt.audio_delay_seconds


def file_frames(pcm: np.ndarray, stt: SttConfig, frame_size: int, frame_rate: float, lag: int = 0) -> np.ndarray:
    """Mono audio [N] -> the frames the reference feeds [F, frame_size] float32 (prefix, audio, padding; `lag`
    more frames of padding for a model with stream delays, whose tokens come out that many steps late)."""
    pcm = np.asarray(pcm, dtype=np.float32).reshape(-1)
    n = -(-pcm.shape[0] // frame_size) * frame_size
    before = prefix_frames(stt, frame_rate) * frame_size
    after = (suffix_frames(stt, frame_rate) + lag) * frame_size
    out = np.zeros(before + n + after, dtype=np.float32)
    out[before : before + pcm.shape[0]] = pcm
    return out.reshape(-1, frame_size)
