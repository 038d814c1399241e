"""`python -m moshi_mlx.bench echo`: the echo canceller on simulated laptop scenes (bench/echo_scenes.py).

Per case: echo removal (ERLE, mic energy / output energy while Moshi's echo speaks) in a stretch with
the echo alone, the time until 10 dB is removed (from the start, and after the echo path changes),
during double talk the user's gain in the output and the intelligibility (STOI) of the output against
the clean user (the microphone's own STOI beside it), and the CPU time per second of audio; then the
time to re-converge when the laptop moves at other moments of Moshi's speech (MOVES: worst and median). The
ceiling is what removing the exact linear echo path would leave (loudspeaker distortion and noise).
"+suppressor" is the same canceller with its residual echo suppressor on (`--echo-suppressor`).
WebRTC's AEC3 (`pywebrtc-audio`, run at 48 kHz) is measured on the same scenes when it is installed.
Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from ..audio import FRAME
from . import echo_scenes as sc

Canceller = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (reference, mic) -> output, streamed inside


class Case(NamedTuple):
    name: str
    kwargs: dict


CASES = [
    Case("echo only", {}),
    Case("double talk, user 0 dB", {"user_db": 0.0, "seconds": 10.0, "user_from": 5.0}),
    Case("double talk, user -6 dB", {"user_db": -6.0, "seconds": 10.0, "user_from": 5.0}),
    Case("path change at 5 s", {"change_at": 5.0, "seconds": 10.0}),
    Case("+250 ms delay", {"extra_delay_ms": 250.0}),
    Case("drift 10 ppm", {"drift_ppm": 10.0, "seconds": 12.0}),
    Case("drift 20 ppm", {"drift_ppm": 20.0, "seconds": 12.0}),
    Case("drift 50 ppm", {"drift_ppm": 50.0, "seconds": 12.0}),
]
# the laptop moved at these moments of the 10 s path-change scene (re-convergence depends on what Moshi is
# saying then: a move just before an utterance ends leaves its reverberation to cancel in the new room)
MOVES = (3.5, 4.0, 4.5, 5.0, 5.5, 6.0)
MOVES_CASE = "path change at 3.5-6 s"


class Row(NamedTuple):
    erle_db: float
    t10_s: float
    reconverge_s: float  # nan without a path change
    gain_db: float  # nan without double talk
    gain_p10_db: float
    stoi_out: float
    stoi_mic: float
    cpu_ms_per_s: float


def ours(**options) -> Canceller:
    def run(far: np.ndarray, mic: np.ndarray) -> np.ndarray:
        from ..dialog.echo import EchoCanceller

        ec = EchoCanceller(**options)
        out = np.zeros_like(mic)
        for i in range(0, mic.size - FRAME + 1, FRAME):  # as the model loop: the reference, then the mic frame
            ec.push_reference(far[i : i + FRAME])
            out[i : i + FRAME] = ec.process(mic[i : i + FRAME])
        return np.concatenate([out[ec.latency :], np.zeros(ec.latency, np.float32)])

    return run


def webrtc_aec3() -> Canceller | None:
    """WebRTC AEC3 through `pywebrtc-audio` (48 kHz, 10 ms frames), its output delay taken out; None if absent."""
    try:
        import pywebrtc_audio  # pyright: ignore[reportMissingImports]  (the optional bench extra)
    except ImportError:
        return None
    import soxr

    def run(far: np.ndarray, mic: np.ndarray) -> np.ndarray:
        f48, m48 = soxr.resample(far, sc.SR, 48_000), soxr.resample(mic, sc.SR, 48_000)
        aec = pywebrtc_audio.EchoCanceller(sample_rate=48_000)
        out = np.zeros_like(m48)
        for i in range(0, m48.size - 479, 480):
            out[i : i + 480] = aec.process(m48[i : i + 480].astype(np.float32), f48[i : i + 480].astype(np.float32))
        y = soxr.resample(out, 48_000, sc.SR)[: mic.size].astype(np.float32)
        # its output lags the microphone by a few ms: the lag that matches the first second best
        n = min(sc.SR, y.size)
        lags = range(0, 480)
        lag = max(lags, key=lambda k: float(np.dot(y[k : k + n - 480], mic[: n - 480])))
        return np.concatenate([y[lag:], np.zeros(lag, np.float32)])

    return run


def measure(canceller: Canceller, scene: sc.Scene) -> Row:
    t0 = time.process_time()
    out = canceller(scene.far, scene.mic)
    cpu = time.process_time() - t0
    eo = scene.echo_only
    erle = sc.erle_db(scene.mic[eo], out[eo], scene.echo[eo])
    t10 = sc.time_to_db(scene.mic, out, scene.echo, 0)
    nan = float("nan")
    re = sc.time_to_db(scene.mic, out, scene.echo, scene.change_at) if scene.change_at is not None else nan
    g = p10 = so = sm = nan
    if scene.double_talk is not None:
        dt = scene.double_talk
        g, p10 = sc.user_gain_db(out[dt], scene.user[dt])
        so, sm = sc.stoi(scene.user[dt], out[dt]), sc.stoi(scene.user[dt], scene.mic[dt])
    return Row(erle, t10, re, g, p10, so, sm, 1000 * cpu / (scene.mic.size / sc.SR))


def _f(x: float, fmt: str, width: int, unit: str = "") -> str:
    if np.isnan(x):
        return "-".rjust(width)
    if np.isinf(x):
        return "never".rjust(width)
    return (format(x, fmt) + unit).rjust(width)


HEADER = (
    f"{'case':<24} {'canceller':<12} {'ERLE dB':>7} {'ceiling':>7} {'to 10 dB':>8} {'re-conv':>7} "
    f"{'user dB':>7} {'worst10%':>8} {'STOI':>5} {'(mic)':>5} {'CPU ms/s':>8}"
)


def format_row(case: str, who: str, ceiling: float, r: Row) -> str:
    return (
        f"{case:<24} {who:<12} {_f(r.erle_db, '.1f', 7)} {_f(ceiling, '.1f', 7)} {_f(r.t10_s, '.2f', 8, ' s')} "
        f"{_f(r.reconverge_s, '.2f', 7, ' s')} {_f(r.gain_db, '+.1f', 7)} {_f(r.gain_p10_db, '+.1f', 8)} "
        f"{_f(r.stoi_out, '.2f', 5)} {_f(r.stoi_mic, '.2f', 5)} {_f(r.cpu_ms_per_s, '.0f', 8)}"
    )


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-webrtc", action="store_true", help="skip WebRTC AEC3 even when pywebrtc-audio is installed")
    p.add_argument(
        "--case",
        nargs="+",
        choices=[c.name for c in CASES] + [MOVES_CASE],
        metavar="CASE",
        help="only these cases (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    cancellers: list[tuple[str, Canceller]] = [("moshi_mlx", ours()), ("+suppressor", ours(suppress=1.0))]
    aec3 = None if args.no_webrtc else webrtc_aec3()
    if aec3 is not None:
        cancellers.append(("webrtc aec3", aec3))
    elif not args.no_webrtc:
        print("(pywebrtc-audio is not installed: WebRTC AEC3 not measured)")
    print(HEADER)
    for case in CASES:
        if args.case and case.name not in args.case:
            continue
        scene = sc.make_scene(**case.kwargs)
        for who, c in cancellers:
            print(format_row(case.name, who, scene.ceiling_db, measure(c, scene)), flush=True)
    if not args.case or MOVES_CASE in args.case:
        print(f"\nre-convergence (to 10 dB), the laptop moved at {', '.join(f'{m:g}' for m in MOVES)} s:")
        for who, c in cancellers:
            times = reconvergence(c)
            each = " ".join(_f(t, ".2f", 5) for t in times)
            worst = _f(max(times), ".2f", 5, " s")
            print(f"{who:<12} {each}   worst {worst}, median {np.median(times):.2f} s", flush=True)
    return 0


def reconvergence(canceller: Canceller) -> list[float]:
    """Seconds to 10 dB after the laptop moves, for each moment in MOVES (10 s scenes)."""
    times = []
    for m in MOVES:
        scene = sc.make_scene(10.0, change_at=m)
        assert scene.change_at is not None
        times.append(sc.time_to_db(scene.mic, canceller(scene.far, scene.mic), scene.echo, scene.change_at))
    return times
