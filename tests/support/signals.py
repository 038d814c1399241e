"""Test audio: `speechlike` (voiced, formant-coloured bursts with pauses: what an echo canceller must
tell apart), `hum` (a cheap pitch-drifting tone under a syllable envelope: input for a model to hear),
and `room_ir` (a noise-tail room response for the loop's echo test; the echo canceller's own scenes are
moshi_mlx/bench/echo_scenes.py)."""

import numpy as np

SR = 24000


def hum(
    n: int,
    rate: int = SR,
    seed: int = 0,
    pitch: float = 180.0,
    drift: float = 40.0,
    drift_rate: float = 1.0,
    syllables_hz: float = 3.0,
    noise: float = 0.02,
) -> np.ndarray:
    """n samples at `rate`: 0.3 * a syllable envelope * a sine whose pitch drifts by `drift` Hz, plus noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / rate
    env = 0.5 + 0.5 * np.sin(2 * np.pi * syllables_hz * t)
    return (
        0.3 * env * np.sin(2 * np.pi * (pitch + drift * np.sin(drift_rate * t)) * t)
        + noise * rng.standard_normal(t.size)
    ).astype(np.float32)


def speechlike(seconds, seed, f0=(110, 180), sr=SR):
    """Voiced harmonic bursts with drifting pitch, formant-like colouring, syllable envelope and pauses."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    f = np.interp(t, np.linspace(0, seconds, 12), rng.uniform(*f0, 12))
    phase = 2 * np.pi * np.cumsum(f) / sr
    x = np.zeros(n)
    for h in range(1, 30):
        amp = 1.0 / h
        x += amp * np.sin(h * phase + rng.uniform(0, 6.28))
    x += 0.3 * rng.standard_normal(n)  # fricative/noise part
    # formant-ish colouring: random 2-pole resonances via FFT shaping
    X = np.fft.rfft(x)
    fr = np.fft.rfftfreq(n, 1 / sr)
    shape = np.zeros_like(fr)
    for fc, bw in [(rng.uniform(400, 900), 200), (rng.uniform(1000, 2200), 300), (rng.uniform(2400, 3500), 400)]:
        shape += 1.0 / (1 + ((fr - fc) / bw) ** 2)
    shape += 0.05
    x = np.fft.irfft(X * shape, n)
    # syllables ~4 Hz, with pauses
    env = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * t + rng.uniform(0, 6)), 0, None) ** 0.7
    gate = np.repeat(rng.random(int(seconds * 2) + 1) > 0.25, sr // 2)[:n]
    x = x * env * gate
    return (x / (np.max(np.abs(x)) + 1e-9) * 0.5).astype(np.float32)


def room_ir(seed, delay_ms=40, rt60=0.25, length_ms=150, sr=SR):
    rng = np.random.default_rng(seed)
    n = int(length_ms * sr / 1000)
    d = int(delay_ms * sr / 1000)
    h = np.zeros(d + n)
    tail = rng.standard_normal(n) * np.exp(-6.9 * np.arange(n) / (rt60 * sr))
    tail[0] = 3.0
    h[d:] = tail
    return h / np.sqrt(np.sum(h**2)) * 0.5
