"""Simulated laptop scenes for the echo canceller: what `bench echo` and tests/dialog/test_echo.py run.

A scene is Moshi's voice played through a mildly distorting loudspeaker into a room (an image-source
impulse response from `pyroomacoustics`, RT60 0.3 s, speaker and microphone 12 cm apart on a laptop),
optionally on a loudspeaker whose clock runs `drift_ppm` fast (a Bluetooth or USB speaker beside the
built-in microphone), plus the user's voice from 60 cm away and microphone noise. The voices are two
espeak-ng recordings committed under tests/assets/echo/ (24 kHz, a few seconds each), tiled with pauses.

Every component of the microphone is kept apart, so that the measures (`measures`) can tell the echo
removed from the user kept. `pyroomacoustics` is a test/bench dependency (the `test` extra).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..audio import MODEL_RATE as SR

VOICES = Path(__file__).resolve().parents[2] / "tests" / "assets" / "echo"
ROOM = (4.6, 3.8, 2.7)  # metres
RT60 = 0.3
DEVICE_LATENCY_MS = 12.0  # output + input buffering between the played reference and the microphone
NOISE_DB = -40.0  # microphone noise against the echo's speech level


class Scene(NamedTuple):
    far: np.ndarray  # the reference: what the loop pushes, Moshi's voice at the loop's sample count
    mic: np.ndarray  # echo + user + noise
    echo: np.ndarray
    user: np.ndarray  # the user as the microphone hears it (reverberant): what must come out
    echo_only: slice  # a stretch with the echo alone, after start-up (or after the path change)
    double_talk: slice | None  # the user and the echo together
    change_at: int | None  # sample where the echo path changes
    ceiling_db: float  # echo removal of an exact copy of the linear path (distortion and noise remain)


@functools.cache
def voice(name: str) -> np.ndarray:
    import soundfile as sf

    x, sr = sf.read(VOICES / f"{name}.flac", dtype="float32")
    if sr != SR:
        raise ValueError(f"{name}.flac is {sr} Hz, expected {SR}")
    return x


def _tile(x: np.ndarray, n: int, gap_s: float, start: int) -> np.ndarray:
    """`x` repeated with `gap_s` of silence between copies, from sample `start`, cut to n samples."""
    unit = np.concatenate([x, np.zeros(int(gap_s * SR), np.float32)])
    reps = int(np.ceil(max(n - start, 0) / unit.size)) + 1
    out = np.zeros(n, np.float32)
    body = np.tile(unit, reps)[: max(n - start, 0)]
    out[start : start + body.size] = body
    return out


@functools.cache
def room_ir(source: tuple[float, float, float], mic: tuple[float, float, float]) -> np.ndarray:
    """Image-source impulse response of ROOM at RT60 (pyroomacoustics), without its fixed lead-in delay."""
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(RT60, ROOM)
    room = pra.ShoeBox(ROOM, fs=SR, materials=pra.Material(absorption), max_order=min(max_order, 30))
    room.add_source(list(source))
    room.add_microphone(list(mic))
    room.compute_rir()
    rir = room.rir
    assert rir is not None
    h = np.asarray(rir[0][0], np.float64)
    lead = pra.constants.get("frac_delay_length") // 2  # the fractional-delay filter's own delay
    h = h[lead : lead + int(0.45 * SR)]
    return (h / np.sqrt(np.sum(h**2))).astype(np.float64)


LAPTOP_SPEAKER = (2.0, 1.5, 0.80)  # under the keyboard
LAPTOP_MIC = (2.0, 1.55, 1.05)  # above the screen
MOVED_SPEAKER = (2.7, 1.0, 0.80)  # the laptop moved on the table, its lid opened wider
MOVED_MIC = (2.7, 1.12, 1.16)
USER_MOUTH = (2.0, 2.1, 1.20)


def _conv(x: np.ndarray, h: np.ndarray, n: int) -> np.ndarray:
    """The first n samples of x * h (by FFT: a 0.45 s response over seconds of audio)."""
    size = 1 << int(np.ceil(np.log2(x.size + h.size)))
    return np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]


def loudspeaker(x: np.ndarray) -> np.ndarray:
    """A small loudspeaker driven near its limit: soft saturation of the peaks (harmonics ~ -30 dB)."""
    k = 0.6
    return (np.tanh(k * x) / k).astype(np.float32)


def _drifted(x: np.ndarray, ppm: float) -> np.ndarray:
    """What a microphone sampling at the nominal rate captures of `x` played by a clock `ppm` fast."""
    if not ppm:
        return x
    import soxr

    y = soxr.resample(x, SR * (1 + ppm * 1e-6), SR, quality="VHQ")
    out = np.zeros_like(x)
    out[: min(x.size, y.size)] = y[: x.size]
    return out


def _level(x: np.ndarray) -> float:
    """RMS over the active 20 ms frames (speech level, pauses left out)."""
    f = x[: x.size // 480 * 480].reshape(-1, 480).astype(np.float64)
    e = np.mean(f**2, axis=1)
    act = e > 1e-3 * e.max()
    return float(np.sqrt(np.mean(e[act])))


def make_scene(
    seconds: float = 8.0,
    *,
    user_db: float | None = None,
    user_from: float = 4.0,
    drift_ppm: float = 0.0,
    extra_delay_ms: float = 0.0,
    change_at: float | None = None,
    seed: int = 0,
) -> Scene:
    """One scene (see the module docstring). `user_db`: the user's speech level against the echo's
    (None: no user); `change_at`: seconds at which the laptop moves (another impulse response)."""
    n = int(seconds * SR)
    rng = np.random.default_rng(seed)
    moshi = voice("moshi")
    far = _tile(moshi, n, 0.35, 0) * 0.6  # Moshi speaks first (its greeting)
    played = _drifted(loudspeaker(far), drift_ppm)
    lag = int(round((DEVICE_LATENCY_MS + extra_delay_ms) * SR / 1000))
    played = np.concatenate([np.zeros(lag, np.float32), played])[:n]
    h1 = room_ir(LAPTOP_SPEAKER, LAPTOP_MIC)
    echo = _conv(played, h1, n)
    linear_in = np.concatenate([np.zeros(lag), _drifted(far, drift_ppm)])[:n]
    linear = _conv(linear_in, h1, n)
    c = None
    if change_at is not None:
        c = int(change_at * SR)
        h2 = room_ir(MOVED_SPEAKER, MOVED_MIC)
        echo[c:] = _conv(played, h2, n)[c:]
        linear[c:] = _conv(linear_in, h2, n)[c:]
    scale = 0.1 / _level(echo)  # echo at -20 dBFS speech level
    echo, linear = echo * scale, linear * scale
    user = np.zeros(n)
    dt = None
    if user_db is not None:
        u0 = int(user_from * SR)
        dry = _tile(voice("user"), n, 0.5, u0)
        user = _conv(dry, room_ir(USER_MOUTH, LAPTOP_MIC), n)
        user *= 10 ** (user_db / 20) * _level(echo) / _level(user[u0:])
        dt = slice(u0, n)
    noise = rng.standard_normal(n) * _level(echo) * 10 ** (NOISE_DB / 20)
    mic = echo + user + noise
    eo = slice(c + n // 8, n) if c is not None else slice(n // 3, int(user_from * SR) if user_db is not None else n)
    ceiling = 10 * np.log10(np.sum(echo[eo] ** 2) / np.sum((echo[eo] - linear[eo] + noise[eo]) ** 2))
    f32 = np.float32
    return Scene(far.astype(f32), mic.astype(f32), echo.astype(f32), user.astype(f32), eo, dt, c, float(ceiling))


# -- measures ------------------------------------------------------------------------------------
HOP = 480  # 20 ms frames for the running measures


def _frame_energy(x: np.ndarray) -> np.ndarray:
    m = x.size // HOP * HOP
    return np.sum(x[:m].reshape(-1, HOP).astype(np.float64) ** 2, axis=1)


def erle_db(mic: np.ndarray, out: np.ndarray, echo: np.ndarray) -> float:
    """Echo removal: mic energy / output energy over the frames where the echo is speaking."""
    ee, em, eo = _frame_energy(echo), _frame_energy(mic), _frame_energy(out)
    act = ee > 1e-3 * ee.max()
    return float(10 * np.log10(np.sum(em[act]) / np.sum(eo[act])))


def time_to_db(mic: np.ndarray, out: np.ndarray, echo: np.ndarray, start: int, target: float = 10.0) -> float:
    """Seconds from `start` until echo removal over 200 ms windows (active frames) stays >= `target` dB for
    the next second; inf if never."""
    ee, em, eo = _frame_energy(echo), _frame_energy(mic), _frame_energy(out)
    act = ee > 1e-3 * ee.max()
    w, span = 10, 50  # 200 ms windows, held for 1 s
    f0 = start // HOP
    ok = []
    for f in range(f0, ee.size - w + 1):
        a = act[f : f + w]
        if a.sum() < 3:
            ok.append(None)  # too little echo to judge
            continue
        ok.append(10 * np.log10(np.sum(em[f : f + w][a]) / np.sum(eo[f : f + w][a])) >= target)
    for i in range(len(ok)):
        ahead = [v for v in ok[i : i + span] if v is not None]
        if ok[i] and len(ahead) >= 10 and all(ahead) and i + span <= len(ok):
            return (i + w) * HOP / SR  # the window's end: when the removal was reached
    return float("inf")


def user_gain_db(out: np.ndarray, user: np.ndarray) -> tuple[float, float]:
    """The user's level in the output (projection on the clean user) over the whole stretch, and the
    10th percentile over the 20 ms frames where the user speaks (how much the worst frames lose)."""
    u, o = user.astype(np.float64), out.astype(np.float64)
    g = float(np.dot(o, u) / np.dot(u, u))
    eu = _frame_energy(u)
    act = np.nonzero(eu > 1e-2 * eu.max())[0]
    m = u.size // HOP * HOP
    uf, of = u[:m].reshape(-1, HOP)[act], o[:m].reshape(-1, HOP)[act]
    gf = np.sum(of * uf, axis=1) / np.sum(uf * uf, axis=1)
    return 20 * np.log10(max(g, 1e-6)), float(np.percentile(20 * np.log10(np.maximum(gf, 1e-6)), 10))


def stoi(clean: np.ndarray, out: np.ndarray) -> float:
    from pystoi import stoi as _stoi

    return float(_stoi(clean.astype(np.float64), out.astype(np.float64), SR, extended=False))
