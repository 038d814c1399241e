"""Audio files: formats, mono mix, resampling to 24 kHz, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.audio import FRAME
from moshi_mlx.audio.file_port import FileAudioPort
from moshi_mlx.audio.files import MODEL_RATE, AudioWriter, audio_format, read_audio, resample, to_mono
from moshi_mlx.errors import AudioFormatError, OutputError


def _tone(freq: float, rate: int, seconds: float) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return float(np.fft.rfftfreq(len(x), 1 / rate)[np.argmax(spec)])


@pytest.mark.parametrize("fmt,ext,rate", [("FLAC", "flac", 44_100), ("WAV", "wav", 48_000), ("OGG", "ogg", 16_000)])
def test_reads_stereo_at_any_rate_as_24k_mono(tmp_path: Path, fmt: str, ext: str, rate: int) -> None:
    left, right = _tone(440, rate, 1.0), _tone(1000, rate, 1.0)
    path = tmp_path / f"x.{ext}"
    sf.write(str(path), np.stack([left, right], axis=1), rate, format=fmt)
    pcm = read_audio(path)
    assert pcm.dtype == np.float32 and pcm.ndim == 1
    assert abs(len(pcm) - MODEL_RATE) <= 1
    spec = np.abs(np.fft.rfft(pcm[2400:-2400] * np.hanning(len(pcm) - 4800)))
    freqs = np.fft.rfftfreq(len(pcm) - 4800, 1 / MODEL_RATE)
    top2 = sorted(freqs[np.argsort(spec)[-2:]])
    assert abs(top2[0] - 440) < 3 and abs(top2[1] - 1000) < 3  # both channels present after the mono mix


def test_resample_preserves_pitch_and_level() -> None:
    x = _tone(1234.0, 44_100, 0.5)
    y = resample(x, 44_100, MODEL_RATE)
    assert len(y) == round(len(x) * MODEL_RATE / 44_100)
    assert abs(_peak_hz(y, MODEL_RATE) - 1234.0) < 4
    assert abs(np.std(y[1000:-1000]) - np.std(x)) < 0.01


def test_to_mono_averages_channels() -> None:
    x = np.stack([np.ones(4, np.float32), -np.ones(4, np.float32) * 0.5], axis=1)
    np.testing.assert_allclose(to_mono(x), 0.25)
    with pytest.raises(AudioFormatError):
        to_mono(np.zeros((2, 2, 2)))


@pytest.mark.parametrize(
    "name,fmt", [("y.wav", "WAV"), ("y.flac", "FLAC"), ("y.ogg", "OGG"), ("y.AIFF", "AIFF"), ("y", "WAV")]
)
def test_write_then_read_round_trip_in_the_format_the_extension_names(tmp_path: Path, name: str, fmt: str) -> None:
    x = _tone(300, MODEL_RATE, 0.3)
    w = AudioWriter(tmp_path / name)
    for part in np.array_split(x, 3):  # as the answer comes, in pieces
        w.write(part)
    w.commit()
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary file left
    assert sf.info(str(tmp_path / name)).format == fmt
    np.testing.assert_allclose(read_audio(tmp_path / name), x, atol=1e-4 if fmt != "OGG" else 0.1)


def test_a_file_in_the_way_of_the_folder_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "notes").write_text("a file, not a folder")
    with pytest.raises(OutputError, match="cannot write .*notes/sub/a.wav: Not a directory"):
        AudioWriter(tmp_path / "notes" / "sub" / "a.wav")
    assert [p.name for p in tmp_path.iterdir()] == ["notes"]


def test_an_extension_no_writer_knows_names_the_formats_that_work(tmp_path: Path) -> None:
    with pytest.raises(AudioFormatError, match=r"\.m4a is not an audio format.*\.wav, \.flac, \.ogg"):
        audio_format(tmp_path / "a.m4a")
    with pytest.raises(AudioFormatError):
        AudioWriter(tmp_path / "a.m4a")
    assert not list(tmp_path.iterdir())


def test_the_answer_streams_to_disk_as_it_is_produced(tmp_path: Path) -> None:
    """The port keeps no answer in memory: each frame reaches the file as it comes; the file appears when committed."""
    writer = AudioWriter(tmp_path / "a.wav")
    port = FileAudioPort(_tone(200, MODEL_RATE, 1.0), writer)  # 12.5 frames
    frame = np.full(FRAME, 0.5, np.float32)
    for i in range(13):
        port.read_input()
        if i >= 2:  # the first two frames have no answer yet (the delays fill): silence
            port.write_output(frame)
        assert writer.samples == min((i + 1) * FRAME, MODEL_RATE) - (FRAME if i < 2 else 0)
    assert not (tmp_path / "a.wav").exists() and writer.tmp.exists()
    port.close(complete=True)
    writer.commit()
    got, _ = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    assert got.size == MODEL_RATE and not writer.tmp.exists()  # exactly as long as the input
    np.testing.assert_allclose(got[: 2 * FRAME], 0.0)
    np.testing.assert_allclose(got[2 * FRAME :], 0.5, atol=1e-4)


def test_unreadable_missing_and_empty_files_say_what_to_do(tmp_path: Path) -> None:
    bad = tmp_path / "notes.m4a"
    bad.write_bytes(b"this is not audio at all" * 10)
    match = r"AAC \(notes.m4a\) is not a format.*wav, flac, ogg.*ffmpeg -i notes.m4a notes.wav"
    with pytest.raises(AudioFormatError, match=match):
        read_audio(bad)
    bad.rename(tmp_path / "notes.xyz")
    with pytest.raises(AudioFormatError, match="cannot read audio file.*notes.xyz.*Readable formats: wav, flac"):
        read_audio(tmp_path / "notes.xyz")
    with pytest.raises(AudioFormatError, match="is a folder"):
        read_audio(tmp_path)
    with pytest.raises(AudioFormatError, match="does not exist"):
        read_audio(tmp_path / "nope.wav")
    sf.write(str(tmp_path / "empty.wav"), np.zeros(0, np.float32), 16_000)
    with pytest.raises(AudioFormatError, match="no samples"):
        read_audio(tmp_path / "empty.wav")
    with pytest.raises(AudioFormatError, match=r"^standard input is read as /dev/stdin"):  # was "file - does not exist"
        read_audio("-")
    (tmp_path / "zero.wav").write_bytes(b"")  # an aborted download or copy: libsndfile said "Format not recognised.."
    with pytest.raises(AudioFormatError, match=r"^the audio input file \S*zero.wav is empty \(0 bytes\)"):
        read_audio(tmp_path / "zero.wav")
    (tmp_path / "text.wav").write_text("not audio")  # the advice converted it onto itself: ffmpeg -i text.wav text.wav
    with pytest.raises(AudioFormatError, match=r"recognised\. Readable.*`ffmpeg -i text.wav text-converted.wav`"):
        read_audio(tmp_path / "text.wav")


def test_a_long_answer_takes_no_memory(tmp_path: Path) -> None:
    """5 minutes through the port to disk: memory beyond the input stays flat (it used to hold the answer)."""
    import tracemalloc

    pcm = np.zeros(5 * 60 * MODEL_RATE, np.float32)  # 29 MB
    frame = np.full(FRAME, 0.1, np.float32)
    tracemalloc.start()
    try:
        writer = AudioWriter(tmp_path / "a.wav")
        port = FileAudioPort(pcm, writer)
        while port.read_input().size:
            port.write_output(frame)
        port.close(complete=True)
        writer.commit()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2e6, f"{peak / 1e6:.0f} MB"
    assert sf.info(str(tmp_path / "a.wav")).frames == pcm.size


def test_only_a_peak_far_past_full_scale_is_scaled_down():
    """A resampled full-scale file overshoots a little and is left alone; a float file at 16-bit scale is
    divided by its peak; NaN or infinite samples are left for silence_non_finite."""
    from moshi_mlx.audio.files import fit_full_scale

    overshoot = np.array([0.5, -1.05, 0.2], np.float32)
    same, peak = fit_full_scale(overshoot)
    assert same is overshoot and peak == 0.0
    loud = np.array([16000.0, -32000.0, np.nan, np.inf], np.float32)
    scaled, peak = fit_full_scale(loud)
    assert peak == 32000.0 and scaled.dtype == np.float32
    np.testing.assert_array_equal(scaled[:2], [0.5, -1.0])
    assert np.isnan(scaled[2]) and np.isinf(scaled[3])


@pytest.mark.parametrize(
    "fmt,subtype,rate,channels",
    [
        ("WAV", "PCM_16", 48_000, 2),
        ("WAV", "PCM_U8", 8_000, 1),
        ("WAV", "DOUBLE", 44_100, 3),
        ("FLAC", "PCM_24", 16_000, 2),
        ("OGG", "VORBIS", 22_050, 1),
        ("WAV", "FLOAT", MODEL_RATE, 2),
    ],
)
def test_a_file_read_block_by_block_is_the_file_read_whole(tmp_path: Path, fmt, subtype, rate, channels) -> None:
    """`open_audio` decodes, mixes and resamples a block at a time (soxr's streaming resampler): the samples
    are those of reading the whole file and resampling it at once (what read_audio did), whatever the blocks."""
    import soxr

    from moshi_mlx.audio.files import open_audio

    rng = np.random.default_rng(0)
    x = np.clip(rng.normal(0, 0.2, (int(rate * 1.3), channels)), -1, 1)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), x, rate, format=fmt, subtype=subtype)
    whole, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    mono = whole.mean(axis=1, dtype=np.float32)
    expected = mono if file_rate == MODEL_RATE else soxr.resample(mono, file_rate, MODEL_RATE, quality="HQ")
    for block in (1000, 4096, 1 << 16):
        audio = open_audio(path, block=block)
        assert audio.length == expected.size and audio.peak == np.abs(expected).max()
        got = np.concatenate([audio.read(FRAME) for _ in range(-(-audio.length // FRAME))])
        np.testing.assert_allclose(got, expected, atol=1e-6)
        assert audio.read(FRAME).size == 0
        audio.rewind()
        np.testing.assert_allclose(audio.read(None), expected, atol=1e-6)


def test_a_file_far_past_full_scale_read_in_blocks_is_scaled_as_when_read_whole(tmp_path: Path) -> None:
    from moshi_mlx.audio.files import fit_full_scale, open_audio

    x = _tone(300, 44_100, 0.5) * 30_000  # a float file written at 16-bit scale
    x[100] = np.nan
    sf.write(str(tmp_path / "loud.wav"), x, 44_100, subtype="FLOAT")
    expected, peak = fit_full_scale(
        resample(sf.read(str(tmp_path / "loud.wav"), dtype="float32")[0], 44_100, MODEL_RATE)
    )
    audio = open_audio(tmp_path / "loud.wav", block=777)
    assert audio.fit_full_scale() == peak > 10_000 and audio.non_finite == np.isnan(expected).sum() > 0
    np.testing.assert_allclose(audio.read(None), expected, atol=1e-6)
    audio.rewind()
    audio.silence_non_finite = True
    got = audio.read(None)
    assert np.isfinite(got).all() and np.array_equal(got[np.isfinite(expected)], expected[np.isfinite(expected)])
