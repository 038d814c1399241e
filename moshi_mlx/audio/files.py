"""Audio files: read anything libsndfile knows, mix to mono, resample to the model rate; write wav."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AudioFormatError, require_file
from . import MODEL_RATE


def to_mono(pcm: np.ndarray) -> np.ndarray:
    """[T] or [T, C] -> [T] float32, averaging channels."""
    if pcm.ndim == 1:
        return pcm.astype(np.float32, copy=False)
    if pcm.ndim != 2:
        raise AudioFormatError(f"expected audio shaped [samples] or [samples, channels], got {pcm.shape}")
    return pcm.mean(axis=1, dtype=np.float32)


def resample(pcm: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Whole-signal band-limited resampling (soxr, high quality). [T] -> [T * to / from]."""
    if from_rate == to_rate:
        return pcm.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(pcm.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ").astype(
        np.float32, copy=False
    )


def read_audio(path: str | Path, rate: int = MODEL_RATE) -> np.ndarray:
    """Reads wav/flac/ogg/mp3/... as mono float32 at `rate` (default 24 kHz). [T]

    Raises:
        AudioFormatError: missing, empty or unreadable file, with what to do about it.
    """
    import soundfile as sf

    path = require_file(Path(path), "audio input", AudioFormatError, "a .wav or .flac file")
    try:
        pcm, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        formats = ", ".join(sorted(sf.available_formats()))
        raise AudioFormatError(
            f"cannot read audio file {path}: {e}. Readable formats here: {formats}. "
            "Convert it first, e.g. `ffmpeg -i input.m4a output.wav`."
        ) from None
    if pcm.shape[0] == 0:
        raise AudioFormatError(f"audio file {path} holds no samples: record or pick another file")
    return resample(to_mono(pcm), int(file_rate), rate)


def write_wav(path: str | Path, pcm: np.ndarray, rate: int = MODEL_RATE) -> None:
    """Writes mono float32 [T] (or [T, C]) as 16-bit PCM wav; the file appears only when complete."""
    import soundfile as sf

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    sf.write(str(tmp), np.clip(pcm, -1.0, 1.0), rate, subtype="PCM_16", format="WAV")
    tmp.replace(path)
