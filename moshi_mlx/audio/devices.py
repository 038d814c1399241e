"""Sound devices: microphone and speaker at their own rates, exchanged with the model at 24 kHz.

Each device is opened as its own stream at its own default rate (a 44.1/48 kHz mic, a Bluetooth
headset that drops to 16/24 kHz when its mic opens), so input and output may differ. The audio
callbacks only copy samples between the device and lock-free rings (device rate); the model
loop thread drains and fills those rings through `AudioIO`, resampling with stateful sinc
streams, so nothing in a callback allocates models, locks or waits.

sounddevice (PortAudio) is imported only when a real device is opened or listed: importing this
module, and every test, works on a machine without PortAudio.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import AudioDeviceError, NoAudioDeviceError, device_setting
from . import MODEL_RATE
from .ring import RingBuffer

# tried in this order when a device refuses the default rate it reports (some ALSA hardware devices do)
COMMON_RATES = (48_000, 44_100, 32_000, 24_000, 16_000)


@dataclass(frozen=True)
class DeviceInfo:
    index: int
    name: str
    inputs: int  # max input channels
    outputs: int
    default_rate: float
    is_default_input: bool = False
    is_default_output: bool = False

    def describe(self) -> str:
        tags = [t for t, on in (("default in", self.is_default_input), ("default out", self.is_default_output)) if on]
        extra = f" [{', '.join(tags)}]" if tags else ""
        return f"{self.index:>3}  {self.name}  (in {self.inputs}, out {self.outputs}, {self.default_rate:g} Hz){extra}"


class SoundDeviceBackend:
    """sounddevice behind the small interface `AudioIO` needs (FakeStreamFactory has the same)."""

    def __init__(self) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # PortAudio missing: sounddevice raises at import
            raise NoAudioDeviceError(
                f"cannot use the sound card: {e}. On Linux install PortAudio "
                "(`sudo apt-get install libportaudio2`); on macOS reinstall sounddevice "
                "(`pip install --force-reinstall sounddevice`).",
                "any",
            ) from None
        self._sd = sd

    @property
    def default(self) -> tuple[int, int]:
        dev = self._sd.default.device
        return int(dev[0]), int(dev[1])

    def query_devices(self) -> list[dict]:
        return [dict(d) for d in self._sd.query_devices()]

    def open(self, kind: str, **kw):
        cls = {"input": self._sd.InputStream, "output": self._sd.OutputStream}[kind]
        return cls(**kw)


def _backend(backend=None):
    return SoundDeviceBackend() if backend is None else backend


def list_devices(backend=None) -> list[DeviceInfo]:
    """Every audio device PortAudio sees (or the fake backend's), with its default rate."""
    b = _backend(backend)
    d_in, d_out = b.default
    return [
        DeviceInfo(
            index=i,
            name=str(d["name"]),
            inputs=int(d["max_input_channels"]),
            outputs=int(d["max_output_channels"]),
            default_rate=float(d["default_samplerate"]),
            is_default_input=i == d_in,
            is_default_output=i == d_out,
        )
        for i, d in enumerate(b.query_devices())
    ]


def find_device(spec: int | str | None, kind: str, backend=None) -> DeviceInfo:
    """The device `_find_device` picks, refused if it reports no usable sample rate (0 Hz, NaN)."""
    info = _find_device(spec, kind, backend)
    if not (math.isfinite(info.default_rate) and info.default_rate >= 1):
        raise AudioDeviceError(
            f"{kind} device {info.index} ({info.name}) reports no usable sample rate "
            f"({info.default_rate:g} Hz): pick another one",
            hint=device_setting(kind),
        )
    return info


def _find_device(spec: int | str | None, kind: str, backend=None) -> DeviceInfo:
    """Picks the input or output device by index, by (case-insensitive) name substring, or the default.

    Raises:
        NoAudioDeviceError: there is no device of that kind at all.
        AudioDeviceError: no such device, several match, or it has no channels of that kind.
    """
    if kind not in ("input", "output"):
        raise ValueError(kind)
    b = _backend(backend)
    devices = list_devices(b)
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    if not usable:
        what = "microphone" if kind == "input" else "speaker"
        raise NoAudioDeviceError(f"there is no {what} here (no audio {kind} device found)", kind)
    listing = "\n".join(d.describe() for d in usable) or "(none)"
    hint = device_setting(kind)
    if isinstance(spec, str) and spec.strip().isdigit():
        spec = int(spec)
    if spec is None:
        idx = b.default[0 if kind == "input" else 1]
        match = [d for d in usable if d.index == idx]
        if not match:
            raise AudioDeviceError(f"there is no default {kind} device; pick one of:\n{listing}", hint=hint)
        return match[0]
    if isinstance(spec, int):
        match = [d for d in devices if d.index == spec]
        if not match:
            raise AudioDeviceError(f"no audio device number {spec}; {kind} devices are:\n{listing}", hint=hint)
        if match[0] not in usable:
            raise AudioDeviceError(
                f"device {spec} ({match[0].name}) has no {kind} channels; pick one of:\n{listing}", hint=hint
            )
        return match[0]
    needle = spec.lower()
    match = [d for d in usable if needle in d.name.lower()]
    exact = [d for d in match if d.name.lower() == needle]
    if len(exact) == 1 or len(match) == 1:
        return (exact or match)[0]
    if not match:
        raise AudioDeviceError(f"no {kind} device name contains {spec!r}; {kind} devices are:\n{listing}", hint=hint)
    names = "\n".join(d.describe() for d in match)
    raise AudioDeviceError(
        f"{spec!r} matches several {kind} devices; use a longer name or the number:\n{names}", hint=hint
    )


class StreamResampler:
    """Stateful mono float32 resampler with a fixed, short delay; identity when the rates agree.

    A Kaiser-windowed sinc evaluated at exact rational positions (a polyphase table, one row per
    distinct phase). Its delay is the filter's half-width, under 1 ms. soxr's streaming resampler
    holds back a varying share of each chunk (measured 1-20 ms in "LQ", up to 38 ms in "HQ" with
    80 ms chunks), and a tail held back misses its turn at the speaker until the next frame.
    Measured (48/44.1/16 kHz <-> 24 kHz): tones up to 8 kHz come back at > 87 dB SNR, 10 kHz at
    45 dB (cutoff 0.92 x the lower Nyquist frequency); delay 1.0-1.5 ms; ~1-4 % of one core.
    Output m is the input at time m / out_rate exactly: the delay is only in when it is ready.
    """

    def __init__(self, in_rate: float, out_rate: float, half_width: int = 24, beta: float = 8.0) -> None:
        self.in_rate, self.out_rate = float(in_rate), float(out_rate)
        self._in, self._out = int(round(in_rate)), int(round(out_rate))
        self.bypass = self._in == self._out
        if self.bypass:
            return
        g = np.gcd(self._in, self._out)
        self._step_num, self._den = self._in // g, self._out // g  # input advance per output = num/den
        fc = 0.92 * min(1.0, self._out / self._in)  # cutoff, in input-rate Nyquist units
        self._w = int(np.ceil(half_width / min(1.0, self._out / self._in)))  # half-width in input samples
        taps = np.arange(-self._w + 1, self._w + 1)  # input offsets around floor(position)
        frac = np.arange(self._den)[:, None] / self._den  # [phases, 1]
        x = taps[None, :] - frac  # distance from the exact position
        win = np.i0(beta * np.sqrt(np.clip(1 - (x / self._w) ** 2, 0, None))) / np.i0(beta)
        kernel = fc * np.sinc(fc * x) * win
        self._table = (kernel / kernel.sum(axis=1, keepdims=True)).astype(np.float32)  # unity DC gain
        self._taps = taps
        self._buf = np.zeros(self._w, np.float32)  # past input: starts silent (the filter's history)
        self._buf_start = -self._w  # absolute input index of _buf[0]
        self._received = 0
        self._m = 0  # next output index

    def __call__(self, x: np.ndarray, last: bool = False) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if self.bypass:
            return x
        self._buf = np.concatenate([self._buf, x])
        self._received += x.size
        # output m sits at input position m * num / den; it needs inputs up to floor(pos) + w
        avail = self._received if not last else self._received + self._w
        m_end = max(self._m, ((avail - self._w) * self._den) // self._step_num + 1)
        if last:
            self._buf = np.concatenate([self._buf, np.zeros(self._w, np.float32)])
        ms = np.arange(self._m, m_end)
        while ms.size and (ms[-1] * self._step_num) // self._den + self._w > avail - 1:
            ms = ms[:-1]
        if not ms.size:
            return np.zeros(0, np.float32)
        num = ms * self._step_num
        base, phase = num // self._den, num % self._den
        idx = base[:, None] + self._taps[None, :] - self._buf_start
        y = np.einsum("ij,ij->i", self._buf[idx], self._table[phase]).astype(np.float32)
        self._m = int(ms[-1]) + 1
        keep_from = (self._m * self._step_num) // self._den - self._w + 1  # oldest input still needed
        drop = max(0, keep_from - self._buf_start)
        self._buf, self._buf_start = self._buf[drop:], self._buf_start + drop
        return y

    def delay_s(self) -> float:
        """The filter's fixed delay, in seconds."""
        return 0.0 if self.bypass else self._w / self.in_rate


class AudioIO:
    """Microphone and speaker streams (or the microphone alone) with device-rate rings; the 24 kHz side belongs
    to one thread.

    The loop thread calls `read_input`, `write_output`, `read_reference` (what the speaker actually
    played: the far-end signal for echo cancellation) and `check` (raises if a device died).

    Args:
        input_device / output_device: index, name substring or None (default device).
        backend: None for sounddevice, or a FakeStreamFactory in tests.
        block_ms: callback size in milliseconds at the device rate.
        ring_s: capacity of each device-rate ring in seconds.
        prebuffer_ms: after running dry the speaker waits for this much audio before playing again,
            so that jitter in model step time does not chop the voice into clicks.
        keep_reference: record the played signal for echo cancellation.
        output: open a speaker; False: the microphone only (a transcript plays nothing): no output device
            is looked up or opened, `read_reference` is empty and `write_output` refuses audio.
    """

    def __init__(
        self,
        input_device: int | str | None = None,
        output_device: int | str | None = None,
        backend=None,
        block_ms: float = 10.0,
        ring_s: float = 4.0,
        prebuffer_ms: float = 40.0,
        keep_reference: bool = True,
        output: bool = True,
    ) -> None:
        if not output and output_device is not None:
            raise ValueError("an output device was named for input-only audio")
        self._backend = _backend(backend)
        self.input_info = find_device(input_device, "input", self._backend)
        self.has_output = output
        if output:
            find_device(output_device, "output", self._backend)  # a missing speaker fails now, not after loading
        self._output_spec = output_device
        self.output_info: DeviceInfo | None = None
        self._block_ms, self._ring_s, self._prebuffer_ms = block_ms, ring_s, prebuffer_ms
        self._keep_reference = keep_reference and output
        self._in_stream = self._out_stream = None
        self.input_rate = self.output_rate = 0.0  # the rates the streams opened at (see `start`)
        self._finished: str | None = None  # set from PortAudio's thread when a stream ends
        self.in_callbacks = self.out_callbacks = 0  # callback-owned counters
        self._out_starved = True

    # -- lifetime ------------------------------------------------------------------------------
    def start(self) -> None:
        """Opens the mic first (a Bluetooth headset may switch rate then), then the speaker, each at its default rate,
        or at the first of COMMON_RATES it accepts when it refuses that one."""
        self._in_stream, rate_in = self._open("input", self.input_info, self._input_cb)
        self.input_rate = rate_in
        self.mic = RingBuffer(int(rate_in * self._ring_s))  # the callbacks start with the stream, below
        self._to_model = StreamResampler(rate_in, MODEL_RATE)
        self._lost = 0  # microphone samples the ring dropped that `input_lost` has told, at 24 kHz
        self._last_progress = (time.monotonic(), 0, 0)
        if not self.has_output:
            self._in_stream.start()
            return
        # Re-read the output device now: opening a headset's mic can change its output rate.
        self.output_info = find_device(self._output_spec, "output", self._backend)
        self._out_stream, rate_out = self._open("output", self.output_info, self._output_cb)
        self.output_rate = rate_out
        self.speaker = RingBuffer(int(rate_out * self._ring_s))
        self.played = RingBuffer(int(rate_out * self._ring_s))
        self._prebuffer = int(rate_out * self._prebuffer_ms / 1000)
        self._scratch = np.zeros(int(rate_out), np.float32)  # 1 s: larger than any callback block
        self._out_channels = min(2, self.output_info.outputs)
        self._to_speaker = StreamResampler(MODEL_RATE, rate_out)
        self._ref_to_model = StreamResampler(rate_out, MODEL_RATE)
        self._in_stream.start()
        self._out_stream.start()

    def _open(self, kind: str, info: DeviceInfo, callback) -> tuple[Any, float]:
        """The stream of `kind` on `info`, and its rate: the device's default, else the first common rate it takes."""
        channels = 1 if kind == "input" else min(2, info.outputs)
        others = [float(r) for r in COMMON_RATES if r != info.default_rate]
        first: Exception | None = None
        for rate in (info.default_rate, *others):
            try:
                stream = self._backend.open(
                    kind,
                    samplerate=rate,
                    blocksize=int(rate * self._block_ms / 1000),
                    device=info.index,
                    channels=channels,
                    dtype="float32",
                    latency="low",
                    callback=callback,
                    finished_callback=lambda: self._on_finished(kind),
                )
            except Exception as e:  # noqa: BLE001 (PortAudioError and friends: the next rate, then said)
                first = first or e
                continue
            return stream, rate
        tried = ", ".join(f"{r:g}" for r in others[:-1]) + f" or {others[-1]:g}"
        raise AudioDeviceError(
            f"cannot open {kind} device {info.index} ({info.name}) at {info.default_rate:g} Hz (nor at {tried} Hz): "
            f"{first}. Check it is connected and not used exclusively by another program, or pick another device.",
            hint=device_setting(kind),
        )

    def stop(self) -> None:
        """Stops and closes the streams (idempotent, never raises)."""
        for s in (self._in_stream, self._out_stream):
            if s is None:
                continue
            try:
                s.stop()
                s.close()
            except Exception:  # noqa: BLE001 (a vanished device may fail to close; nothing to do)
                pass
        self._in_stream = self._out_stream = None

    close = stop

    def __enter__(self) -> AudioIO:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- real-time callbacks (PortAudio's thread) ----------------------------------------------
    def _input_cb(self, indata, frames, time_info, status) -> None:
        self.mic.write(indata[:, 0])
        self.in_callbacks += 1

    def _output_cb(self, outdata, frames, time_info, status) -> None:
        buf = self._scratch[:frames] if frames <= self._scratch.shape[0] else np.zeros(frames, np.float32)
        got = 0
        if self._out_starved and self.speaker.available() >= self._prebuffer:
            self._out_starved = False
        if not self._out_starved:
            got = self.speaker.read_into(buf)
            self._out_starved = got < frames
        buf[got:] = 0.0  # underrun plays silence
        outdata[:] = buf[:, None]
        if self._keep_reference:
            self.played.write(buf)
        self.out_callbacks += 1

    def _on_finished(self, kind: str) -> None:
        if self._finished is None:
            self._finished = kind

    # -- loop-thread side ----------------------------------------------------------------------
    def read_input(self) -> np.ndarray:
        """New microphone audio since the last call, 24 kHz mono float32."""
        return self._to_model(self.mic.read_all())

    def input_lost(self) -> int:
        """Microphone audio the ring had no room for since the last call, in 24 kHz samples: the loop stalled longer
        than the ring holds (`ring_s`). It came after what `read_input` returned last (a full ring keeps its oldest
        samples), so the loop puts as much silence there to keep the timeline."""
        total = round(self.mic.overrun_samples * MODEL_RATE / self.input_rate)
        lost, self._lost = total - self._lost, total
        return lost

    def write_output(self, pcm: np.ndarray) -> int:
        """Queues 24 kHz audio for the speaker; returns device-rate samples dropped (ring full)."""
        if not self.has_output:
            raise RuntimeError("this AudioIO has no speaker (opened with output=False)")
        x = self._to_speaker(pcm)
        return len(x) - self.speaker.write(x)

    def read_reference(self) -> np.ndarray:
        """What the speaker played since the last call (silence included), 24 kHz."""
        return self._ref_to_model(self.played.read_all()) if self._keep_reference else np.zeros(0, np.float32)

    def output_queued_s(self) -> float:
        """Audio written but not yet played, in seconds (speaker ring plus resampler); 0 without a speaker."""
        if not self.has_output:
            return 0.0
        return self.speaker.available() / self.output_rate + self._to_speaker.delay_s()

    def check(self, stall_s: float = 2.0) -> None:
        """Raises AudioDeviceError if a stream ended or stopped calling back for `stall_s` seconds."""
        if self._finished is not None:
            info = self.input_info if self._finished == "input" else self.output_info
            name = f"{info.name} " if info else ""
            raise AudioDeviceError(
                f"the {self._finished} device {name}stopped (unplugged, switched, or taken by another "
                "program). The recording so far is kept; restart to continue."
            )
        now = time.monotonic()
        t0, n_in, n_out = self._last_progress
        if self.in_callbacks != n_in and (self.out_callbacks != n_out or not self.has_output):
            self._last_progress = (now, self.in_callbacks, self.out_callbacks)
        elif now - t0 > stall_s:
            which = "input" if self.in_callbacks == n_in else "output"
            info = self.input_info if which == "input" else self.output_info
            name = f" ({info.name})" if info else ""
            what = "delivered no audio" if which == "input" else "played nothing"  # a speaker plays
            raise AudioDeviceError(
                f"the {which} device{name} {what} for {now - t0:.1f} s. "
                "The recording so far is kept; check the device and restart."
            )
