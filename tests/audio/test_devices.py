"""Devices: listing and choosing, lazy sounddevice, AudioIO through fake streams at odd rates."""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest

from moshi_mlx.audio.devices import AudioIO, SoundDeviceBackend, StreamResampler, find_device, list_devices
from moshi_mlx.audio.fake import FakeStream, FakeStreamFactory
from moshi_mlx.errors import AudioDeviceError, Setting

DEVICES = [
    {
        "name": "MacBook Pro Microphone",
        "max_input_channels": 1,
        "max_output_channels": 0,
        "default_samplerate": 48000.0,
    },
    {"name": "MacBook Pro Speakers", "max_input_channels": 0, "max_output_channels": 2, "default_samplerate": 48000.0},
    {"name": "AirPods Pro", "max_input_channels": 1, "max_output_channels": 2, "default_samplerate": 24000.0},
    {"name": "USB Audio Device", "max_input_channels": 2, "max_output_channels": 2, "default_samplerate": 44100.0},
]


def _backend(**kw) -> FakeStreamFactory:
    b = FakeStreamFactory(devices=DEVICES, **kw)
    b.default = (0, 1)
    return b


def test_importing_needs_no_portaudio() -> None:
    code = "import sys, moshi_mlx.audio.devices, moshi_mlx.dialog.loop; assert 'sounddevice' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_backend_works_or_explains_portaudio() -> None:
    try:
        SoundDeviceBackend()
    except AudioDeviceError as e:
        assert "PortAudio" in str(e) or "portaudio" in str(e)


def test_list_and_find_by_index_name_and_default() -> None:
    b = _backend()
    devs = list_devices(b)
    assert [d.name for d in devs][2] == "AirPods Pro" and devs[0].is_default_input and devs[1].is_default_output
    assert "48000 Hz" in devs[0].describe()
    assert find_device(None, "input", b).name == "MacBook Pro Microphone"
    assert find_device(None, "output", b).name == "MacBook Pro Speakers"
    assert find_device(3, "input", b).name == "USB Audio Device"
    assert find_device("3", "output", b).index == 3
    assert find_device("airpods", "input", b).default_rate == 24000.0
    assert find_device("speakers", "output", b).index == 1


@pytest.mark.parametrize(
    "spec,kind,msg",
    [
        (9, "input", "no audio device number 9"),
        (1, "input", "has no input channels"),
        ("zoom", "output", "no output device name contains 'zoom'"),
        ("macbook", "input", None),  # only one macbook device has inputs: fine
        ("a", "output", "matches several output devices"),
    ],
)
def test_find_errors_name_the_choices(spec, kind: str, msg: str | None) -> None:
    b = _backend()
    if msg is None:
        assert find_device(spec, kind, b).index == 0
        return
    with pytest.raises(AudioDeviceError, match=msg) as e:
        find_device(spec, kind, b)
    assert e.value.hint is (Setting.MICROPHONE if kind == "input" else Setting.SPEAKER)
    assert "AirPods Pro" in str(e.value) or "number" in str(e.value) or "several" in str(e.value)


def test_no_default_device() -> None:
    b = _backend()
    b.default = (-1, 1)
    with pytest.raises(AudioDeviceError, match="no default input device; pick one of:\n.*MacBook") as e:
        find_device(None, "input", b)
    assert e.value.hint is Setting.MICROPHONE and "--" not in str(e.value)  # each front end names the setting


def _tone(freq: float, rate: float, n: int, phase0: int = 0) -> np.ndarray:
    return (0.5 * np.sin(2 * np.pi * freq * (np.arange(n) + phase0) / rate)).astype(np.float32)


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 44100), (44100, 24000), (16000, 48000)])
def test_audio_io_resamples_each_direction(rate_in: int, rate_out: int) -> None:
    b = _backend()
    b.devices = [dict(DEVICES[0], default_samplerate=rate_in), dict(DEVICES[1], default_samplerate=rate_out)]
    io = AudioIO(backend=b, prebuffer_ms=0)
    io.start()
    mic, spk = b.input, b.output
    assert (mic.samplerate, spk.samplerate, spk.channels) == (rate_in, rate_out, 2)
    mic.push_input(_tone(440, rate_in, rate_in))  # 1 s
    got = []
    while mic.process():
        got.append(io.read_input())
        if mic.pending_input() == 0:
            break
    got.append(io.read_input())
    x = np.concatenate(got)
    assert abs(len(x) - 24000) < 60  # the resampler keeps its 1 ms look-ahead
    y = _tone(440, 24000, 24000)
    lag = int(np.argmax([np.dot(x[2000:10000], y[2000 - k : 10000 - k]) for k in range(0, 200)]))
    np.testing.assert_allclose(x[2000:20000], y[2000 - lag : 20000 - lag], atol=2e-3)

    io.write_output(_tone(1000, 24000, 24000))
    for _ in range(150):
        spk.process()
    played = spk.played()
    assert np.isfinite(played).all()
    np.testing.assert_array_equal(played[:, 0], played[:, 1])  # mono on every channel
    spec = np.abs(np.fft.rfft(played[:, 0]))
    assert abs(np.fft.rfftfreq(len(played), 1 / rate_out)[np.argmax(spec)] - 1000) < 5
    ref = io.read_reference()
    assert abs(len(ref) - len(played) * 24000 / rate_out) < 60  # less the look-ahead
    io.stop()
    assert mic.closed and spk.closed


def test_output_underrun_plays_silence_and_prebuffers() -> None:
    b = _backend()
    io = AudioIO(backend=b, prebuffer_ms=20)
    io.start()
    spk = b.output
    spk.process(480)
    np.testing.assert_array_equal(spk.played(), 0.0)
    io.write_output(np.full(240, 0.5, np.float32))  # 10 ms < prebuffer: keep waiting
    spk.process(480)
    assert np.abs(spk.played()[480:]).max() < 1e-6
    io.write_output(np.full(960, 0.5, np.float32))
    spk.process(480)
    assert np.abs(spk.played()[960:]).max() > 0.3
    for _ in range(5):
        spk.process(480)
    assert io.speaker.underruns == 1  # ran dry once, then waits for the prebuffer again
    assert io.speaker.available() == 0


def test_device_failure_is_reported_by_check() -> None:
    b = _backend()
    io = AudioIO(backend=b)
    io.start()
    io.check()
    b.input.fail("unplugged")
    with pytest.raises(AudioDeviceError, match="input device MacBook Pro Microphone stopped.*recording so far is kept"):
        io.check()
    io.stop()


def test_callback_abort_and_stall_are_reported() -> None:
    b = _backend()
    io = AudioIO(backend=b)
    io.start()

    def boom(*a):
        raise type("CallbackAbort", (Exception,), {})()

    b.output._callback = boom
    b.output.process(480)
    with pytest.raises(AudioDeviceError, match="output device"):
        io.check()

    b2 = _backend()
    io2 = AudioIO(backend=b2)
    io2.start()
    io2.check(stall_s=0.05)
    import time

    time.sleep(0.1)
    with pytest.raises(AudioDeviceError, match="no audio for"):
        io2.check(stall_s=0.05)


def test_input_only_audio_needs_and_opens_no_speaker() -> None:
    import time

    b = FakeStreamFactory(devices=DEVICES[:1])  # a microphone, no output device at all
    b.default = (0, -1)
    io = AudioIO(backend=b, output=False)
    io.start()
    assert [s.kind for s in b.streams] == ["input"] and io.output_info is None
    b.input.push_input(_tone(440, 48000, 4800))
    for _ in range(10):
        b.input.process(480)
        io.check(stall_s=0.05)  # the microphone's callbacks are progress enough
        time.sleep(0.01)
    assert abs(len(io.read_input()) - 2400) < 60  # 100 ms at 24 kHz, less the resampler's look-ahead
    assert io.output_queued_s() == 0.0 and io.read_reference().size == 0
    with pytest.raises(RuntimeError, match="no speaker"):
        io.write_output(np.zeros(240, np.float32))
    time.sleep(0.1)
    with pytest.raises(AudioDeviceError, match=r"input device \(MacBook Pro Microphone\) delivered no audio"):
        io.check(stall_s=0.05)
    io.stop()
    assert b.input.closed


def test_open_failure_names_device_and_rate() -> None:
    class Failing(FakeStreamFactory):
        def open(self, kind: str, **kw) -> FakeStream:
            raise RuntimeError("Invalid sample rate")

    with pytest.raises(AudioDeviceError, match=r"cannot open input device 0 \(Fake Microphone\) at 48000 Hz"):
        AudioIO(backend=Failing()).start()


def test_a_device_that_refuses_its_own_default_rate_opens_at_a_common_one() -> None:
    """Some devices (ALSA hardware devices, a USB interface set to one rate) report a default rate they then refuse
    ("Invalid sample rate"): the other common rates are tried before giving up, and the streams, rings, resamplers
    and the speaker's queue all go by the rate that opened. It was "cannot open input device ... at 44100 Hz",
    the conversation impossible on that device."""

    class Only48k(FakeStreamFactory):
        def open(self, kind: str, **kw) -> FakeStream:
            if kw["samplerate"] != 48000:
                raise RuntimeError("Error opening InputStream: Invalid sample rate [PaErrorCode -9997]")
            return super().open(kind, **kw)

    b = Only48k(input_rate=44100, output_rate=44100)
    io = AudioIO(backend=b, prebuffer_ms=0)
    io.start()
    mic, spk = b.input, b.output
    assert (mic.samplerate, spk.samplerate, io.input_rate, io.output_rate) == (48000, 48000, 48000, 48000)
    mic.push_input(_tone(440, 48000, 48000))  # 1 s at the rate that opened
    while mic.pending_input():
        mic.process()
    assert abs(io.read_input().size - 24000) < 60  # 1 s at the model's rate, not 1.09 s
    io.write_output(_tone(1000, 24000, 24000))
    assert io.output_queued_s() == pytest.approx(1.0, abs=0.01)
    io.stop()

    class Refusing(FakeStreamFactory):
        def open(self, kind: str, **kw) -> FakeStream:
            raise RuntimeError("Invalid sample rate")

    with pytest.raises(AudioDeviceError, match=r"at 44100 Hz \(nor at 48000, 32000, 24000 or 16000 Hz\)"):
        AudioIO(backend=Refusing(input_rate=44100)).start()


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 24000), (24000, 44100), (44100, 24000), (16000, 24000)])
def test_stream_resampler_is_exact_continuous_and_prompt(rate_in: int, rate_out: int) -> None:
    rs = StreamResampler(rate_in, rate_out)
    x = _tone(300, rate_in, rate_in) + _tone(5000, rate_in, rate_in) * 0.5
    chunks = np.array_split(x, 37)  # uneven chunk sizes
    parts = [rs(c) for c in chunks]
    # prompt: after each chunk everything but the fixed look-ahead is out
    assert rs.delay_s() < 0.0016
    got = sum(p.size for p in parts)
    assert abs(got - rate_out * (1 - rs.delay_s())) <= 2
    parts.append(rs(np.zeros(0, np.float32), last=True))
    y = np.concatenate(parts)
    assert abs(y.size - rate_out) <= 1
    want = _tone(300, rate_out, rate_out) + _tone(5000, rate_out, rate_out) * 0.5
    seg = slice(rate_out // 20, rate_out - rate_out // 20)
    snr = 10 * np.log10(np.sum(want[seg] ** 2) / np.sum((y[seg] - want[seg]) ** 2))
    assert snr > 80, snr
    assert StreamResampler(24000, 24000)(x) is x


def test_a_speaker_that_stops_playing_is_said_as_such() -> None:
    """A stalled speaker (no callbacks, no end) was "the output device delivered no audio": a speaker plays audio,
    it delivers none. The microphone's stall keeps its words."""
    b = _backend()
    io = AudioIO(backend=b)
    io.start()
    io.check(stall_s=0.05)
    deadline = time.monotonic() + 0.2
    while time.monotonic() < deadline:  # the microphone goes on; the speaker calls back no more
        b.input.process(480)
        time.sleep(0.01)
    with pytest.raises(AudioDeviceError, match=r"^the output device \(MacBook Pro Speakers\) played nothing for"):
        io.check(stall_s=0.05)
    io.stop()
