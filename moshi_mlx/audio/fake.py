"""FakeStream: sounddevice's stream interface without a sound card, driven by a test.

It accepts the keyword arguments of `sounddevice.Stream`/`InputStream`/`OutputStream` and calls
the callback with their signatures; nothing happens until the test calls `process()`, or a
`FakeClock` thread does it at a chosen pace. Input comes from `push_input`, output collects in
`played()`. `fail()` makes the device vanish as PortAudio would report it (stream stops,
`finished_callback` runs); a callback raising `CallbackStop`/`CallbackAbort` (sounddevice's or
ours, matched by name) or anything else stops it as well.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import numpy as np


class CallbackStop(Exception):
    pass


class CallbackAbort(Exception):
    pass


class FakeStreamError(RuntimeError):
    """Raised by a failed FakeStream's start(), as `sounddevice.PortAudioError` would be."""


class FakeStream:
    """One fake PortAudio stream of kind 'input', 'output' or 'duplex' (float32 only)."""

    def __init__(
        self,
        samplerate: float | None = None,
        blocksize: int | None = None,
        device=None,
        channels: int | Sequence[int] | None = None,
        dtype: str = "float32",
        latency=None,
        callback: Callable | None = None,
        finished_callback: Callable | None = None,
        kind: str = "duplex",
        **_: object,
    ) -> None:
        if kind not in ("input", "output", "duplex"):
            raise ValueError(f"kind must be input, output or duplex, got {kind!r}")
        if dtype != "float32":
            raise ValueError("FakeStream only does float32")
        self.kind = kind
        self.samplerate = float(samplerate or 48_000)
        self.blocksize = int(blocksize or 0)
        self.device = device
        ch = channels or 1
        self._in_ch, self._out_ch = (ch, ch) if isinstance(ch, int) else (int(ch[0]), int(ch[1]))
        self.channels = (
            self._in_ch if kind == "input" else self._out_ch if kind == "output" else (self._in_ch, self._out_ch)
        )
        self.dtype = dtype
        self.latency = 0.01 if latency in (None, "low", "high") else latency
        self._callback = callback
        self._finished_callback = finished_callback
        self._pending_in: list[np.ndarray] = []
        self._in_offset = 0
        self._played: list[np.ndarray] = []
        self._status = 0
        self.active = False
        self.stopped = True
        self.closed = False
        self.failed: str | None = None
        self.frames_processed = 0
        self.timeline: list[tuple[int, float]] = []  # (first frame of a callback, monotonic time it ran)
        self.input_starved = 0  # frames delivered as silence because the test pushed nothing

    # -- sounddevice interface -----------------------------------------------------------------
    def start(self) -> None:
        if self.closed:
            raise FakeStreamError("stream is closed")
        if self.failed:
            raise FakeStreamError(f"device error: {self.failed}")
        self.active, self.stopped = True, False

    def stop(self, ignore_errors: bool = True) -> None:
        self._finish()

    def abort(self, ignore_errors: bool = True) -> None:
        self._finish()

    def close(self, ignore_errors: bool = True) -> None:
        self._finish()
        self.closed = True

    def __enter__(self) -> FakeStream:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- test driving --------------------------------------------------------------------------
    def push_input(self, pcm: np.ndarray) -> None:
        """Queues microphone samples ([T] or [T, C], at this stream's rate)."""
        pcm = np.asarray(pcm, np.float32)
        self._pending_in.append(pcm[:, None] if pcm.ndim == 1 else pcm)

    def pending_input(self) -> int:
        return sum(len(p) for p in self._pending_in) - self._in_offset

    def time_of(self, frame: int) -> float:
        """Monotonic time at which sample `frame` went through a callback (interpolated within its block)."""
        starts = [f for f, _ in self.timeline]
        i = max(0, int(np.searchsorted(starts, frame, side="right")) - 1)
        f0, t0 = self.timeline[i]
        return t0 + (frame - f0) / self.samplerate

    def played(self) -> np.ndarray:
        """Everything the callback wrote so far, [T, C]."""
        if not self._played:
            return np.zeros((0, self._out_ch), np.float32)
        return np.concatenate(self._played)

    def set_status(self, flags: int) -> None:
        """Status flags passed to the next callback (non-zero reads as an over/underflow)."""
        self._status = flags

    def fail(self, message: str = "device unplugged") -> None:
        """Simulates the device vanishing mid-stream."""
        self.failed = message
        self._finish()

    def process(self, frames: int | None = None) -> bool:
        """Runs one callback of `frames` (default: blocksize); returns False if the stream is not running
        (or, as a blocking-mode stream, has no callback to run)."""
        if not self.active or self._callback is None:
            return False
        frames = frames or self.blocksize or 512
        args: list = []
        if self.kind != "output":
            args.append(self._take_input(frames))
        outdata = None
        if self.kind != "input":
            outdata = np.full((frames, self._out_ch), np.nan, np.float32)  # NaN: must be overwritten
            args.append(outdata)
        status, self._status = self._status, 0
        self.timeline.append((self.frames_processed, time.monotonic()))
        try:
            self._callback(*args, frames, _Time(time.monotonic()), _Status(status))
        except Exception as e:  # noqa: BLE001 (PortAudio stops the stream on any callback exception)
            name = type(e).__name__
            if outdata is not None and name == "CallbackStop":
                self._played.append(outdata.copy())
            self.failed = None if name in ("CallbackStop", "CallbackAbort") else f"callback raised {e!r}"
            self._finish()
            return False
        if outdata is not None:
            self._played.append(outdata.copy())
        self.frames_processed += frames
        return True

    def _take_input(self, frames: int) -> np.ndarray:
        out = np.zeros((frames, self._in_ch), np.float32)
        filled = 0
        while filled < frames and self._pending_in:
            head = self._pending_in[0]
            take = min(frames - filled, len(head) - self._in_offset)
            chunk = head[self._in_offset : self._in_offset + take]
            out[filled : filled + take] = chunk if chunk.shape[1] == self._in_ch else chunk.mean(axis=1, keepdims=True)
            filled += take
            self._in_offset += take
            if self._in_offset == len(head):
                self._pending_in.pop(0)
                self._in_offset = 0
        self.input_starved += frames - filled
        return out

    def _finish(self) -> None:
        was_active = self.active
        self.active, self.stopped = False, True
        if was_active and self._finished_callback is not None:
            self._finished_callback()


class _Time:
    def __init__(self, now: float) -> None:
        self.currentTime = now
        self.inputBufferAdcTime = now
        self.outputBufferDacTime = now


class _Status:
    def __init__(self, flags: int) -> None:
        self.flags = flags
        self.input_overflow = bool(flags & 1)
        self.output_underflow = bool(flags & 2)

    def __bool__(self) -> bool:
        return self.flags != 0


class FakeStreamFactory:
    """Stands in for sounddevice when building `AudioIO`: hands out FakeStreams and keeps them.

    Args:
        input_rate / output_rate: the fake devices' own rates ("48 kHz mic, 44.1 kHz speaker").
        devices: what `list_devices()` should report, as sounddevice's `query_devices()` dicts.
    """

    def __init__(
        self, input_rate: float = 48_000, output_rate: float = 48_000, devices: list[dict] | None = None
    ) -> None:
        self.input_rate, self.output_rate = input_rate, output_rate
        self.devices = (
            devices
            if devices is not None
            else [
                {
                    "name": "Fake Microphone",
                    "index": 0,
                    "hostapi": 0,
                    "max_input_channels": 1,
                    "max_output_channels": 0,
                    "default_samplerate": input_rate,
                },
                {
                    "name": "Fake Speakers",
                    "index": 1,
                    "hostapi": 0,
                    "max_input_channels": 0,
                    "max_output_channels": 2,
                    "default_samplerate": output_rate,
                },
            ]
        )
        self.default = (0, 1)
        self.streams: list[FakeStream] = []

    def open(self, kind: str, **kw) -> FakeStream:
        stream = FakeStream(kind=kind, **kw)
        self.streams.append(stream)
        return stream

    def query_devices(self) -> list[dict]:
        return self.devices

    @property
    def input(self) -> FakeStream:
        return next(s for s in reversed(self.streams) if s.kind == "input")

    @property
    def output(self) -> FakeStream:
        return next(s for s in reversed(self.streams) if s.kind == "output")


class FakeClock:
    """Ticks fake streams from a thread at `speed` times real time (a stand-in for the sound card).

    Each tick runs every stream's callback for `block_s` seconds of audio; `on_tick(k)` runs
    first, so a test can push microphone audio just in time. After a stall (a loaded machine) the
    overdue ticks run back to back, unless `catch_up=False`: then the clock goes on from now, as if
    the devices had paused, so no burst squeezes their audio into less wall-clock time than it lasts
    (what latency measurements need).
    """

    def __init__(
        self,
        streams: list[FakeStream],
        block_s: float = 0.01,
        speed: float = 1.0,
        on_tick: Callable[[int], None] | None = None,
        catch_up: bool = True,
    ) -> None:
        self.streams, self.block_s, self.speed, self.on_tick = streams, block_s, speed, on_tick
        self.catch_up = catch_up
        self.ticks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fake-audio-clock", daemon=True)

    def start(self) -> FakeClock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def __enter__(self) -> FakeClock:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        period = self.block_s / self.speed
        next_t = time.monotonic()
        while not self._stop.is_set():
            if self.on_tick is not None:
                self.on_tick(self.ticks)
            for s in self.streams:
                s.process(int(round(s.samplerate * self.block_s)))
            self.ticks += 1
            next_t += period
            if not self.catch_up:
                next_t = max(next_t, time.monotonic())
            delay = next_t - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
