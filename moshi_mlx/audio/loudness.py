"""Integrated loudness (ITU-R BS.1770-4, LUFS) and normalization to a target, as `pyloudnorm` computes them.

PersonaPlex's reference normalizes a voice prompt to -24 LUFS with pyloudnorm's default meter (K-weighting
from RBJ-cookbook biquads, 400 ms blocks overlapping 75 %, gates at -70 LUFS and -10 LU). The same steps and
dtypes here (the filtered signal kept in the input's float32, as pyloudnorm writes it back into a copy of the
input), so the prompt's Mimi codes match the reference's; numpy only (a biquad loop, ~0.2 s for 10 s of audio).
"""

from __future__ import annotations

import math

import numpy as np


def _biquad(kind: str, gain_db: float, q: float, fc: float, rate: int) -> tuple[list[float], list[float]]:
    a_ = 10 ** (gain_db / 40.0)
    w0 = 2.0 * math.pi * (fc / rate)
    alpha = math.sin(w0) / (2.0 * q)
    c, s = math.cos(w0), 2 * math.sqrt(a_) * alpha
    if kind == "high_shelf":
        b = [
            a_ * ((a_ + 1) + (a_ - 1) * c + s),
            -2 * a_ * ((a_ - 1) + (a_ + 1) * c),
            a_ * ((a_ + 1) + (a_ - 1) * c - s),
        ]
        a = [(a_ + 1) - (a_ - 1) * c + s, 2 * ((a_ - 1) - (a_ + 1) * c), (a_ + 1) - (a_ - 1) * c - s]
    else:  # high_pass
        b = [(1 + c) / 2, -(1 + c), (1 + c) / 2]
        a = [1 + alpha, -2 * c, 1 - alpha]
    return [v / a[0] for v in b], [v / a[0] for v in a]


def _lfilter(b: list[float], a: list[float], x: np.ndarray) -> np.ndarray:
    """scipy.signal.lfilter for one biquad (direct form II transposed, float64)."""
    b0, b1, b2 = b
    _, a1, a2 = a
    z0 = z1 = 0.0
    out = []
    append = out.append
    for v in x.tolist():
        y = b0 * v + z0
        z0 = b1 * v - a1 * y + z1
        z1 = b2 * v - a2 * y
        append(y)
    return np.array(out, np.float64)


def integrated_loudness(pcm: np.ndarray, rate: int, block_s: float = 0.4, overlap: float = 0.75) -> float:
    """Gated loudness of mono `pcm` in LUFS (-inf for silence); ValueError if shorter than one block."""
    x = np.array(pcm, dtype=pcm.dtype if np.issubdtype(pcm.dtype, np.floating) else np.float32).reshape(-1)
    if x.shape[0] < block_s * rate:
        raise ValueError(f"audio shorter than one {block_s * 1000:.0f} ms loudness block")
    for kind, gain, q, fc in (("high_shelf", 4.0, 1 / math.sqrt(2), 1500.0), ("high_pass", 0.0, 0.5, 38.0)):
        x[:] = _lfilter(*_biquad(kind, gain, q, fc, rate), x)  # written back in the input's dtype, as pyloudnorm
    step = 1.0 - overlap
    blocks = int(np.round((x.shape[0] / rate - block_s) / (block_s * step))) + 1
    z = np.zeros(blocks)
    for j in range(blocks):
        lo, hi = int(block_s * (j * step) * rate), int(block_s * (j * step + 1) * rate)
        z[j] = (1.0 / (block_s * rate)) * np.sum(np.square(x[lo:hi]))
    with np.errstate(divide="ignore", invalid="ignore"):
        loud = -0.691 + 10.0 * np.log10(z)
        gated = z[loud >= -70.0]
        relative = -0.691 + 10.0 * np.log10(np.mean(gated)) - 10.0 if gated.size else -np.inf
        kept = z[(loud > relative) & (loud > -70.0)]
        mean = np.nan_to_num(np.mean(kept)) if kept.size else 0.0
        return float(-0.691 + 10.0 * np.log10(mean))


def normalize_loudness(pcm: np.ndarray, rate: int, target_lufs: float, loudness: float | None = None) -> np.ndarray:
    """`pcm` scaled to `target_lufs` (computed in float64, as pyloudnorm under NumPy 2); silence is returned as is.
    `loudness`: pcm's integrated_loudness, when the caller has it already."""
    loudness = integrated_loudness(pcm, rate) if loudness is None else loudness
    if not math.isfinite(loudness):
        return np.array(pcm, np.float64)
    return np.power(10.0, (target_lufs - loudness) / 20.0) * np.asarray(pcm, np.float64)
