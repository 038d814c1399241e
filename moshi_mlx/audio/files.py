"""Audio files: read anything libsndfile knows, mix to mono, resample to the model rate; write any
format libsndfile writes, as the audio comes."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import AudioFormatError, OutputError, require_file
from ..outputs import Staged, file_size_limit, write_failure
from . import FRAME, MODEL_RATE


def to_mono(pcm: np.ndarray) -> np.ndarray:
    """[T] or [T, C] -> [T] float32, averaging channels."""
    if pcm.ndim == 1:
        return pcm.astype(np.float32, copy=False)
    if pcm.ndim != 2:
        raise AudioFormatError(f"expected audio shaped [samples] or [samples, channels], got {pcm.shape}")
    return pcm.mean(axis=1, dtype=np.float32)


def silence_non_finite(pcm: np.ndarray) -> tuple[np.ndarray, int]:
    """`pcm` with its NaN or infinite samples (a broken file or sound card) made 0, and how many there were.

    Mimi would carry a NaN through its states for its whole context (and the echo canceller for good).
    """
    bad = ~np.isfinite(pcm)
    count = int(bad.sum())
    if not count:
        return pcm, 0
    return np.where(bad, np.float32(0.0), pcm).astype(np.float32, copy=False), count


PAST_FULL_SCALE = 2.0  # a peak above this is no resampling overshoot: the file was written at another scale


def fit_full_scale(pcm: np.ndarray) -> tuple[np.ndarray, float]:
    """`pcm` divided by its peak where that is far past full scale (a float file written at 16-bit scale, peaks
    of ~30000: Mimi would hear noise), and that peak; (pcm, 0.0) where it is within. NaN and infinite samples
    are left for `silence_non_finite`."""
    finite = np.abs(pcm[np.isfinite(pcm)])
    peak = float(finite.max()) if finite.size else 0.0
    if peak <= PAST_FULL_SCALE:
        return pcm, 0.0
    return (pcm / np.float32(peak)).astype(np.float32), peak


def past_full_scale_note(source: str | Path, peak: float) -> str:
    """What a front end says when `fit_full_scale` scaled an input down."""
    return (
        f"note: {source} goes far past full scale (peak {peak:.0f}; a float file written at another scale?): "
        "scaled down by its peak"
    )


def resample(pcm: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Whole-signal band-limited resampling (soxr, high quality). [T] -> [T * to / from]."""
    if from_rate == to_rate:
        return pcm.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(pcm.astype(np.float32, copy=False), from_rate, to_rate, quality="HQ").astype(
        np.float32, copy=False
    )


COMMON_FORMATS = ("WAV", "FLAC", "OGG", "MP3", "AIFF")  # named first in messages
NOT_READABLE = {
    "m4a": "AAC",
    "aac": "AAC",
    "mp4": "AAC",
    "alac": "ALAC",
    "wma": "WMA",
    "webm": "Opus in WebM",
    "amr": "AMR",
}  # common formats libsndfile cannot decode


def _ordered(formats) -> list[str]:
    return sorted(
        formats, key=lambda f: (f not in COMMON_FORMATS, COMMON_FORMATS.index(f) if f in COMMON_FORMATS else 0, f)
    )


def readable_formats() -> str:
    """The formats this machine's libsndfile reads, common ones first: "wav, flac, ogg, mp3, aiff, ..."."""
    import soundfile as sf

    return ", ".join(f.lower() for f in _ordered(sf.available_formats()))


def writable_formats() -> list[str]:
    """soundfile format names this machine can write (one per extension: "WAV" is `.wav`), common first."""
    import soundfile as sf

    return _ordered(f for f in sf.available_formats() if sf.default_subtype(f) is not None)


def audio_format(path: str | Path) -> str:
    """The soundfile format that `path`'s extension names (no extension: WAV).

    Raises:
        AudioFormatError: an extension this machine cannot write, naming those it can.
    """
    ext = Path(path).suffix[1:]
    if not ext:
        return "WAV"
    writable = writable_formats()
    if ext.upper() not in writable:
        names = ", ".join("." + f.lower() for f in writable)
        raise AudioFormatError(
            f"cannot write {path}: .{ext} is not an audio format this machine writes. End the name in one of {names}"
        )
    return ext.upper()


MIN_FILE_RATE = 1000  # Hz: below, no sound worth hearing (telephone audio is 8000), and a ratio past 24 to resample
BLOCK = 1 << 16  # frames of a file decoded at once (1.4 s at 48 kHz): what an input holds in memory


def read_audio(path: str | Path, rate: int = MODEL_RATE) -> np.ndarray:
    """Reads wav/flac/ogg/mp3/... as mono float32 at `rate` (default 24 kHz), whole (a short file: a voice
    sample; an input of any length is `open_audio`'s). [T]

    Raises:
        AudioFormatError: missing, empty or unreadable file, with what to do about it.
    """
    return open_audio(path, rate).read(None)


def open_audio(path: str | Path, rate: int = MODEL_RATE, block: int = BLOCK) -> AudioInput:
    """An audio file to read as mono float32 at `rate`, block by block (`AudioInput`): decoded once here, to
    check all of it before any work and to know its length and peak; its samples are not kept.

    Raises:
        AudioFormatError: missing, empty or unreadable file, with what to do about it.
    """
    import soundfile as sf

    if str(path) == "-":
        raise AudioFormatError("standard input is read as /dev/stdin (a pipe or `< talk.wav`): name /dev/stdin")
    path = require_file(Path(path), "audio input", AudioFormatError, "a .wav or .flac file", pipe_ok=True)
    if path.is_file() and path.stat().st_size == 0:
        raise AudioFormatError(f"the audio input file {path} is empty (0 bytes): record or pick another file")
    try:
        with sf.SoundFile(str(path)) as f:
            if f.samplerate < MIN_FILE_RATE:  # soxr crashed the process resampling such a file (1 Hz to 24 kHz)
                raise AudioFormatError(
                    f"{path} gives its sample rate as {f.samplerate} Hz, too low for sound (a damaged header?): "
                    f"record or convert it again, e.g. `ffmpeg -i {path.name} -ar 24000 {path.stem}-24k.wav`"
                )
            if f.seekable() and _opens_anew(path):
                audio = AudioInput(str(path), partial(_decode, path, rate, block))
            else:  # a pipe, or a stream named by a device path, is read once: held in memory, as it comes
                audio = AudioInput.of(np.concatenate([np.zeros(0, np.float32), *_blocks(f, rate, block)]), str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise _unreadable(path, e) from None
    if audio.length == 0:
        raise AudioFormatError(f"audio file {path} holds no samples: record or pick another file")
    return audio


def _opens_anew(path: Path) -> bool:
    """Whether opening `path` again starts a new read of the same file: a regular file, not a descriptor's
    device path (on macOS /dev/stdin or /dev/fd/0 opened again shares the first reader's position)."""
    real = os.path.realpath(path)  # Path.resolve raises on a link to itself
    return os.path.isfile(real) and not real.startswith(("/dev/", "/proc/"))


def _decode(path: Path, rate: int, block: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    with sf.SoundFile(str(path)) as f:
        yield from _blocks(f, rate, block)


def _blocks(f, rate: int, block: int) -> Iterator[np.ndarray]:
    """The samples of the open sound file `f` from where it is, mono float32 at `rate`, `block` frames of the
    file at a time. soxr's streaming resampler gives what resampling the whole signal at once gives
    (`resample`), sample for sample."""
    stream = None
    if f.samplerate != rate:
        import soxr

        stream = soxr.ResampleStream(f.samplerate, rate, 1, dtype="float32", quality="HQ")
    while True:
        mono = to_mono(f.read(block, dtype="float32", always_2d=True))
        out = mono if stream is None else stream.resample_chunk(mono, last=mono.size == 0)
        if out.size:
            yield out.astype(np.float32, copy=False)
        if mono.size == 0:
            return


def _unreadable(path: Path, e: Exception) -> AudioFormatError:
    ext = path.suffix[1:].lower()
    what = (
        f"{NOT_READABLE[ext]} ({path.name}) is not a format libsndfile reads"
        if ext in NOT_READABLE
        else (f"cannot read audio file {path}: {str(e).replace(chr(10), ' ').rstrip('. ')}")
    )
    wav = f"{path.stem}-converted.wav" if ext == "wav" else f"{path.stem}.wav"  # never the input's own name
    return AudioFormatError(
        f"{what}. Readable formats: {readable_formats()}. Convert it first, e.g. `ffmpeg -i {path.name} {wav}`."
    )


class AudioInput:
    """Mono float32 samples at the model rate, read in order (`read`), never held whole where they come from a
    file (an hour at 48 kHz stereo is 1.4 GB as decoded, 345 MB at 24 kHz): `open_audio` makes one. Its
    `length`, `peak` (the largest finite |sample|) and `non_finite` (NaN or infinite samples) are known before
    the first read.

    Args:
        name: where the samples come from (messages).
        decode: a new pass over the samples, block by block; called once for the figures, once per `rewind`.
    """

    def __init__(self, name: str, decode: Callable[[], Iterator[np.ndarray]]) -> None:
        self.name = name
        self._decode = decode
        self.length, self.peak, self.non_finite = 0, 0.0, 0
        for block in decode():
            self.length += block.size
            for i in range(0, block.size, BLOCK):  # no temporary as large as samples held in memory
                part = block[i : i + BLOCK]
                finite = np.isfinite(part)
                self.non_finite += int(part.size - finite.sum())
                if finite.any():
                    self.peak = max(self.peak, float(np.abs(part[finite]).max()))
        self.silence_non_finite = False  # whether `read` makes NaN and infinite samples 0 (see silence_non_finite)
        self._divisor: np.float32 | None = None
        self._pass: Iterator[np.ndarray] | None = None
        self._block, self._at = np.zeros(0, np.float32), 0

    @classmethod
    def of(cls, pcm: np.ndarray, name: str = "audio") -> AudioInput:
        """Samples already in memory, [T] float32 at the model rate."""
        pcm = np.asarray(pcm, np.float32).reshape(-1)
        return cls(name, lambda: iter((pcm,)))

    def fit_full_scale(self) -> float:
        """From now on `read` scales the samples down by the peak where that is far past full scale, as the
        function `fit_full_scale` does; returns the peak then, else 0.0."""
        if self.peak <= PAST_FULL_SCALE:
            return 0.0
        self._divisor = np.float32(self.peak)
        return self.peak

    def read(self, n: int | None) -> np.ndarray:
        """The next `n` samples (all that are left: None); fewer at the end, none after it.

        Raises:
            AudioFormatError: the file can no longer be read (changed or removed since it was opened).
        """
        import soundfile as sf

        n = self.length if n is None else n
        parts = []
        try:
            while n > 0:
                if self._at >= self._block.size:
                    self._pass = self._pass or self._decode()
                    block = next(self._pass, None)
                    if block is None:
                        break
                    self._block, self._at = block, 0
                part = self._block[self._at : self._at + n]
                self._at += part.size
                n -= part.size
                parts.append(part)
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
            raise AudioFormatError(f"cannot read {self.name} any more: {e}") from None
        pcm = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros(0, np.float32)
        if self.silence_non_finite:
            pcm, _ = silence_non_finite(pcm)
        if self._divisor is not None:
            pcm = (pcm / self._divisor).astype(np.float32)
        return pcm.astype(np.float32, copy=False)

    def rewind(self) -> None:
        """The next `read` starts from the first sample again."""
        self.close()
        self._block, self._at = np.zeros(0, np.float32), 0

    def close(self) -> None:
        """Closes the file a pass has open (a pass not read to its end)."""
        if self._pass is not None and hasattr(self._pass, "close"):
            self._pass.close()  # type: ignore[attr-defined]
        self._pass = None


class AudioWriter:
    """Writes mono float32 audio to `path` as it comes, in the format its extension names (16-bit where
    the format has samples), under a temporary name in the same folder: `commit()` renames it into place,
    `discard()` removes it. Memory stays flat however long the audio.

    Raises:
        AudioFormatError: the extension names no writable format.
        OutputError: the file cannot be created or written (a full disk, say).
    """

    def __init__(self, path: str | Path, rate: int = MODEL_RATE) -> None:
        import soundfile as sf

        self.path = Path(path)
        fmt = audio_format(self.path)
        self._out = Staged(self.path)
        self.tmp = self._out.tmp
        try:
            self._out.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = sf.SoundFile(str(self.tmp), "w", rate, 1, sf.default_subtype(fmt), format=fmt)
        except (sf.LibsndfileError, RuntimeError, OSError) as e:
            with contextlib.suppress(OSError):  # a file in the way of the folder fails here again
                self._out.discard()
            raise OutputError(
                f"cannot write {self.path}: {getattr(e, 'strerror', None) or e}. Pick another folder or format."
            ) from None
        self.rate = rate
        self.samples = 0

    def write(self, pcm: np.ndarray) -> None:
        import soundfile as sf

        try:
            self._f.write(np.clip(np.asarray(pcm, np.float32).reshape(-1), -1.0, 1.0))
        except (sf.LibsndfileError, RuntimeError, OSError) as e:  # disk full, disk gone...
            raise OutputError(f"cannot write {self.path}: {_write_failure(self.tmp, e)}") from None
        self.samples += pcm.size

    def commit(self) -> Path:
        """Finishes the file and puts it in place (replacing any file of that name); on failure nothing is left."""
        try:
            self._f.close()
            self._out.commit()
        except BaseException:
            self.discard()
            raise
        return self.path

    def discard(self) -> None:
        with contextlib.suppress(Exception):  # closing after a disk error may fail again
            self._f.close()
        self._out.discard()


def _write_failure(tmp: Path, e: Exception) -> str:
    """libsndfile reports any failed write as "System error.": say what it was where that can be told (a full
    disk, the limit on file size)."""
    try:
        if shutil.disk_usage(tmp.parent).free < 1 << 20:
            return write_failure(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)))
        limit = file_size_limit()
        if limit is not None and tmp.stat().st_size + (1 << 16) >= limit:
            return write_failure(OSError(errno.EFBIG, os.strerror(errno.EFBIG)))
    except OSError:
        pass
    return str(e)


def probe_audio(path: Path) -> None:
    """Writes a short file of `path`'s format at `path` (for checking an output before any work)."""
    import soundfile as sf

    fmt = audio_format(path)
    try:
        with sf.SoundFile(str(path), "w", MODEL_RATE, 1, sf.default_subtype(fmt), format=fmt) as f:
            f.write(np.zeros(FRAME, np.float32))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioFormatError(f"cannot write {fmt.lower()} here: {e}") from None
