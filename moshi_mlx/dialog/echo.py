"""Echo cancellation: remove Moshi's own voice from the microphone, keep the user's.

Moshi hears the microphone while it speaks; through laptop speakers it hears itself and answers
its own echo. Muting the microphone while Moshi talks would stop the user from interrupting, so
the echo is subtracted instead: an adaptive filter learns the path speaker -> room -> microphone
from the signal that was actually played (the "reference", count-aligned with the microphone by
the model loop) and removes its estimate. The user's voice is not in the reference and passes
through linearly, untouched.

The filter is a partitioned-block frequency-domain adaptive filter (overlap-save, normalised per
frequency bin), placed after a bulk delay that a GCC-PHAT cross-correlation estimator finds (a
Bluetooth speaker adds 150-300 ms). Double talk (user and Moshi at once) would make a single
adaptive filter diverge; two filters guard against it: a background filter always adapts, the
foreground filter that produces the output only copies it while the background cancels better,
and the background is put back when it falls far behind.

We measured the WebRTC AEC3 binding on PyPI (`pywebrtc-audio` 0.2.0, a first release) on the
same synthetic room: 18 dB echo reduction alone, but its suppressor attenuated the user by 10 dB
during double talk and delays the output by ~9 ms, so it is not used.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..audio import FRAME, MODEL_RATE


class EchoStats(NamedTuple):
    delay_ms: float  # bulk delay in use (speaker reference -> microphone)
    erle_db: float  # recent echo reduction estimate while Moshi speaks (mic energy / output energy)
    far_active: bool


class EchoCanceller:
    """Streaming echo canceller for 24 kHz mono float32 (any frame size, multiple of `block`).

    Usage per frame on one thread: `push_reference(played)` with everything the speaker played
    since the last call, then `process(mic_frame)`; `skip(n)` when microphone frames are dropped.

    Args:
        rate: sample rate of both signals.
        filter_ms: echo tail the filter models after the bulk delay (room reverberation).
        max_delay_ms: largest bulk delay the estimator searches.
        block: samples per adaptation block (5 ms at 24 kHz: more updates per second converge faster on speech).
        mu: background filter step size (0 < mu <= 1).
    """

    def __init__(
        self,
        rate: int = MODEL_RATE,
        filter_ms: float = 160.0,
        max_delay_ms: float = 400.0,
        block: int = 120,
        mu: float = 1.0,
        reg: float = 0.5,
    ) -> None:
        self.rate, self.B, self.mu, self.reg = rate, block, mu, reg

        self.P = max(1, int(round(filter_ms * rate / 1000 / block)))
        self.max_delay = int(max_delay_ms * rate / 1000) // block * block
        self._pre = 2 * block  # filter taps kept before the estimated peak
        self._est_frame = FRAME
        n = self._est_frame + self.max_delay + self._est_frame
        self._est_fft = 1 << int(np.ceil(np.log2(n)))
        self._hist_len = self.max_delay + (self.P + 2) * block + 2 * self._est_frame
        self.reset()

    def reset(self) -> None:
        bins = self.B + 1
        self._far = np.zeros(self._hist_len, np.float32)  # far[abs index % len]
        self._far_count = 0  # far samples received (absolute index of the next one)
        self._near_count = 0  # near samples processed
        self._near_hist = np.zeros(self._est_frame, np.float32)
        self._wf = np.zeros((self.P, bins), np.complex128)  # foreground (output) filter
        self._wb = np.zeros((self.P, bins), np.complex128)  # background (adapting) filter
        self._pxx = np.full(bins, 1e-3)
        self._sf = self._sb = 1e-6  # smoothed error energies of both filters
        self._d0 = 0  # far lag (samples) of partition 0, a multiple of B
        self._cross = np.zeros(self._est_fft // 2 + 1, np.complex128)
        self._est_frames = 0
        self._delay_votes: list[int] = []
        self._mic_e = self._out_e = 1e-9
        self._far_active = False
        self._cache_j = np.full(self.P + 8, -(1 << 62), np.int64)  # window end / B of each cached spectrum
        self._cache_x = np.zeros((self.P + 8, bins), np.complex128)

    # -- inputs ----------------------------------------------------------------------------------
    def push_reference(self, far: np.ndarray) -> None:
        """Appends what the speaker played (24 kHz), in order, as it becomes known."""
        far = np.asarray(far, np.float32)
        if far.size > self._hist_len:
            self._far_count += far.size - self._hist_len
            far = far[-self._hist_len :]
        idx = (self._far_count + np.arange(far.size)) % self._hist_len
        self._far[idx] = far
        self._far_count += far.size

    def skip(self, n: int) -> None:
        """The loop dropped `n` microphone samples: keep the two timelines aligned."""
        self._near_count += n

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self._d0 / self.rate

    def stats(self) -> EchoStats:
        return EchoStats(self.delay_ms, 10 * np.log10(self._mic_e / self._out_e), self._far_active)

    # -- processing --------------------------------------------------------------------------------
    def _far_window(self, end: int, length: int) -> np.ndarray:
        """far[end - length : end] by absolute index; samples not received (yet or ever) read as 0."""
        idx = np.arange(end - length, end)
        out = self._far[idx % self._hist_len]
        out[(idx < 0) | (idx >= self._far_count) | (idx < self._far_count - self._hist_len)] = 0.0
        return out

    def process(self, near: np.ndarray) -> np.ndarray:
        """Returns `near` (24 kHz mic audio, length a multiple of `block`) with the echo removed."""
        near = np.asarray(near, np.float32)
        if near.size % self.B:
            raise ValueError(f"frame of {near.size} samples is not a multiple of the {self.B}-sample block")
        start = self._near_count
        self._estimate_delay(near, start)
        out = np.empty_like(near)
        for b in range(0, near.size, self.B):
            out[b : b + self.B] = self._block(near[b : b + self.B], start + b)
        self._near_count += near.size
        return out

    def _far_spectra(self, n: int) -> np.ndarray:
        """X[k]: spectrum of the 2B far samples ending d0 + k*B before this block's end. [P, B+1]

        Windows recur block after block (partition k now is partition k-1 of the last block), so
        spectra are cached by window end; a window that held samples not yet received is redone.
        """
        B, P = self.B, self.P
        j0 = (n + B - self._d0) // B  # window ends are multiples of B: j * B
        js = j0 - np.arange(P)
        slots = js % self._cache_j.shape[0]
        stale = np.nonzero(self._cache_j[slots] != js)[0]
        if stale.size:
            frames = np.stack([self._far_window(int(js[k]) * B, 2 * B) for k in stale])
            self._cache_x[slots[stale]] = np.fft.rfft(frames, axis=1)
            complete = js[stale] * B <= self._far_count
            self._cache_j[slots[stale]] = np.where(complete, js[stale], -(1 << 62))
        return self._cache_x[slots]

    def _block(self, d: np.ndarray, n: int) -> np.ndarray:
        B = self.B
        X = self._far_spectra(n)  # [P, B+1]
        last = self._far_window(n + B - self._d0, B)
        self._far_active = float(np.dot(last, last)) / B > 1e-8
        if not self._far_active and not self._wf.any():
            return d.copy()
        yf = np.fft.irfft(np.sum(self._wf * X, axis=0))[B:]
        yb = np.fft.irfft(np.sum(self._wb * X, axis=0))[B:]
        ef, eb = d - yf, d - yb
        a = 0.9  # error energies over ~50 ms
        self._sf = a * self._sf + (1 - a) * float(np.dot(ef, ef))
        self._sb = a * self._sb + (1 - a) * float(np.dot(eb, eb))
        if self._far_active:
            self._mic_e = 0.99 * self._mic_e + 0.01 * float(np.dot(d, d))
            self._out_e = 0.99 * self._out_e + 0.01 * float(np.dot(ef, ef))
            # background: normalised frequency-domain LMS with the gradient constrained to B taps
            # per-bin far power over the filter span; rises at once (a word's onset after a pause
            # would otherwise meet a stale small normaliser and overshoot), decays smoothly
            p_now = np.sum(np.abs(X) ** 2, axis=0)
            self._pxx = np.maximum(p_now, 0.8 * self._pxx + 0.2 * p_now)
            E = np.fft.rfft(np.concatenate([np.zeros(B), eb]))
            # regularised by a share of the mean power: bins the far signal barely excites (between
            # pitch harmonics) learn slowly instead of amplifying noise into the filter
            reg = self.reg * float(np.mean(self._pxx)) + 2 * B * 1e-6
            grad = np.conj(X) * (self.mu * E / (self._pxx + reg))
            g = np.fft.irfft(grad, axis=1)
            g[:, B:] = 0.0
            self._wb += np.fft.rfft(g, axis=1)
        # two-path control: adopt a better background, restore a diverged one
        if self._sb < 0.5 * self._sf:
            self._wf[:] = self._wb
            self._sf = self._sb
        elif self._sb > 1.5 * self._sf:
            self._wb[:] = self._wf
            self._sb = self._sf
        return ef.astype(np.float32)

    # -- bulk delay ------------------------------------------------------------------------------
    def _estimate_delay(self, near: np.ndarray, start: int) -> None:
        """GCC-PHAT over a running average of cross-spectra; moves the filter when the peak moves."""
        L = self._est_frame
        seg = near[-L:] if near.size >= L else np.concatenate([self._near_hist, near])[-L:]
        self._near_hist = seg
        end = start + near.size
        far = self._far_window(end, L + self.max_delay)
        if float(np.dot(far[-L:], far[-L:])) / L < 1e-6 or float(np.dot(seg, seg)) / L < 1e-8:
            return
        N = np.fft.rfft(seg, self._est_fft)
        F = np.fft.rfft(far, self._est_fft)
        self._cross = 0.85 * self._cross + 0.15 * np.conj(N) * F
        self._est_frames += 1
        if self._est_frames < 4 or self._est_frames % 2:
            return
        g = np.fft.irfft(self._cross / (np.abs(self._cross) + 1e-12), self._est_fft)[: self.max_delay + 1]
        s = int(np.argmax(g))
        if g[s] < 6.0 * (np.mean(np.abs(g)) + 1e-12):  # no clear peak (noise, double talk)
            return
        lag = self.max_delay - s  # near[t] ~ far[t - lag]
        self._delay_votes = (self._delay_votes + [lag])[-3:]
        if len(self._delay_votes) == 3 and max(self._delay_votes) - min(self._delay_votes) <= self.B // 2:
            d0 = max(0, (lag - self._pre) // self.B * self.B)
            if d0 != self._d0:
                self._shift_filters((d0 - self._d0) // self.B)
                self._d0 = d0
                self._cache_j[:] = -(1 << 62)

    def _shift_filters(self, k: int) -> None:
        """Partition p of the new filter is partition p + k of the old one (same absolute lag)."""
        for w in (self._wf, self._wb):
            old = w.copy()
            w[:] = 0
            if k >= 0:
                if k < self.P:
                    w[: self.P - k] = old[k:]
            elif -k < self.P:
                w[-k:] = old[: self.P + k]
