"""`python -m moshi_mlx.bench loop`: latency the model loop itself adds, measured with fake devices.

Clicks go into a fake microphone at real-time pace; a fake model answers each frame with its
input after sleeping `compute` seconds; the click's capture (a microphone delivers a block once it
is recorded: its callback's time less the block's duration, plus the click's place in it) and its
playing (the speaker callback that played it, plus its place in the block) give the end-to-end time.
Subtracting the model's compute and one frame (80 ms: the wait for the frame to fill, then its playing)
leaves what the loop adds: polling, resampling, queueing and callback granularity, never below 0. The
fake clock does not catch up after a stall (a loaded machine), which would deliver overdue blocks at
once, squeeze the audio in time and show latencies below 0. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from typing import NamedTuple

import numpy as np

from ..audio import FRAME
from ..audio import MODEL_RATE as RATE
from ..audio.devices import AudioIO
from ..audio.fake import FakeClock, FakeStreamFactory
from ..cli.args import number
from ..dialog.events import FrameResult, SessionStarted
from ..dialog.loop import ModelLoop

CLICK_AT = FRAME - 40  # click position inside its frame: 40 samples (1.7 ms) before the frame is full


class LatencyResult(NamedTuple):
    clicks_sent: int
    clicks_heard: int
    added_ms: list[float]  # loop-added latency per click
    total_ms: list[float]  # end to end per click
    compute_ms: float


class _PassThrough:
    def __init__(self, compute_s: float) -> None:
        self.compute_s = compute_s

    def reset(self) -> None:
        pass

    def step(self, pcm: np.ndarray) -> FrameResult:
        if self.compute_s:
            time.sleep(self.compute_s)
        return FrameResult(pcm.copy())


def _click_train(rate: float, n_frames: int, every: int) -> tuple[np.ndarray, list[int]]:
    """Silence with a short 3 kHz burst near the end of every `every`-th frame (24 kHz timeline)."""
    x = np.zeros(int(n_frames * FRAME * rate / RATE), np.float32)
    burst = (np.hanning(48) * np.sin(2 * np.pi * 3000 * np.arange(48) / rate)).astype(np.float32)
    at = [int(round((k * FRAME + CLICK_AT) * rate / RATE)) for k in range(2, n_frames - 2, every)]
    for a in at:
        x[a : a + burst.size] = burst
    return x, at


def _find_clicks(y: np.ndarray, rate: float, n: int) -> list[int]:
    env = np.abs(y)
    found, i, gap = [], 0, int(0.04 * rate)
    thr = 0.25 * env.max() if env.size else 1.0
    while len(found) < n and i < env.size:
        hits = np.nonzero(env[i:] > thr)[0]
        if not hits.size:
            break
        j = i + int(hits[0])
        found.append(j)
        i = j + gap
    return found


def measure_latency(
    compute_s: float = 0.0,
    rate_in: float = 48_000,
    rate_out: float = 48_000,
    seconds: float = 3.0,
    block_ms: float = 10.0,
) -> LatencyResult:
    """Runs one fake session in real time and measures every click's trip (see module docstring)."""
    n_frames = int(seconds * RATE / FRAME)
    backend = FakeStreamFactory(input_rate=rate_in, output_rate=rate_out)
    io = AudioIO(backend=backend, block_ms=block_ms, prebuffer_ms=0)
    loop = ModelLoop(lambda: _PassThrough(compute_s), max_lag_frames=4).start()
    try:
        loop.begin_session(io)
        while True:
            ev = loop.events.get(timeout=10)
            if isinstance(ev, SessionStarted):
                break
        mic, clicks = _click_train(rate_in, n_frames, every=3)
        backend.input.push_input(mic)
        clock = FakeClock([backend.input, backend.output], block_s=block_ms / 1000, catch_up=False)
        with clock:
            while backend.input.pending_input() > 0:
                time.sleep(0.02)
            time.sleep(0.3 + compute_s)
        loop.end_session()
    finally:
        loop.close()
    played = backend.output.played()[:, 0]
    heard = _find_clicks(played, rate_out, len(clicks))
    total, added = [], []
    # a sample waits for the rest of its frame, then its answer plays from the start of the
    # answer frame: together one frame (80 ms) wherever it sits, inherent to 80 ms steps
    wait_ms = 1000.0 * FRAME / RATE
    for a, h in zip(clicks, heard):
        t_in = backend.input.time_of(a + 24) - block_ms / 1000  # the burst's middle, when it was recorded
        t_out = backend.output.time_of(h + 24)
        total.append(1000.0 * (t_out - t_in))
        added.append(total[-1] - 1000.0 * compute_s - wait_ms)
    return LatencyResult(len(clicks), len(heard), added, total, 1000.0 * compute_s)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=number(float, 0.5, 600), default=4.0, help="audio per measurement (default 4)")
    p.add_argument(
        "--compute-ms",
        type=number(float, 0, 1000),
        nargs="+",
        default=[0.0, 40.0],
        help="simulated model step times (default 0 40)",
    )


def run(args: argparse.Namespace) -> int:
    print("rates (in/out)      compute  clicks  added median / max   end-to-end median")
    for rate_in, rate_out in ((24_000, 24_000), (48_000, 48_000), (44_100, 48_000), (16_000, 44_100)):
        for c in args.compute_ms:
            r = measure_latency(c / 1000, rate_in, rate_out, args.seconds)
            med = float(np.median(r.added_ms)) if r.added_ms else float("nan")
            mx = max(r.added_ms) if r.added_ms else float("nan")
            tot = float(np.median(r.total_ms)) if r.total_ms else float("nan")
            print(
                f"{rate_in:>6g}/{rate_out:<6g}  {c:>8.0f} ms  {r.clicks_heard:>2}/{r.clicks_sent:<2}  "
                f"{med:>7.1f} / {mx:5.1f} ms  {tot:>10.1f} ms"
            )
    return 0
