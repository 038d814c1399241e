"""Echo cancellation: remove Moshi's own voice from the microphone, keep the user's.

Moshi hears the microphone while it speaks; through laptop speakers it hears itself and answers
its own echo. Muting the microphone while Moshi talks would stop the user from interrupting, so
the echo is subtracted instead: an adaptive filter learns the path speaker -> room -> microphone
from the signal that was actually played (the "reference", pushed by the model loop) and removes
its estimate. The user's voice is not in the reference and passes through linearly, untouched.

- Clocks: a separate speaker (Bluetooth, USB) runs on its own clock, tens of ppm away from the
  microphone's, so the echo slides along the reference and a fixed filter falls behind. The
  reference is resampled onto the microphone's timeline (windowed-sinc interpolation) at a ratio
  that a loop keeps tracking: the shadow filter's impulse response (it follows a sliding echo at
  once) is compared with itself 0.25 s earlier, and the ratio moves until it stops sliding
  (`_track_drift`).
- Filters: partitioned-block frequency-domain, overlap-save, 3.3 ms blocks, after a bulk delay that a
  GCC-PHAT estimator finds (a Bluetooth speaker adds 150-300 ms) from the echo's first speech frame.
  They adapt with a Kalman gain per partition and frequency bin (Enzner and Vary's frequency-domain
  Kalman filter): the step is large while a filter is uncertain and shrinks with what the error holds
  that the far signal cannot explain (noise, the user's voice in double talk). The uncertainty starts
  from a room-shaped prior (early taps first), which is what makes it converge in a fraction of a second.
- Echo path changes and double talk look alike to one filter (the error suddenly grows). So there are
  two: the main filter weighs the error heavily (it waits for proof: double talk barely moves it), the
  shadow lightly and steps 1.5 times its Kalman gain (bold: start-up, a changed room, a drifting
  clock). The main filter takes the shadow's taps when the shadow cancels 3 dB better, the shadow
  is put back onto the main filter when it falls 6 dB behind (it diverged in double talk), and the
  output cross-fades to the shadow's while it cancels better.
- A changed room is told from double talk by what the microphone holds of the main filter's echo
  estimate (the projection of one on the other): the user adds to the echo and leaves it whole, a
  moved laptop takes it away (`CHANGED`). The shadow then forgets its old reverberation tail.
- A faster learner for a new room (`_refit`): the Kalman gains are diagonal (they ignore how neighbouring
  taps' errors go together, which speech makes strong), so a new room's reverberation, which cancelling the
  decay after an utterance needs out to ~100 ms, comes slowly. When the main filter falls under 10 dB (a moved
  laptop, the start, or the user talking) or a path change is detected, the whole response is fitted by
  least squares on the audio since (`echo_fit`) at the end of every frame for up to 1 s and becomes the
  shadow's taps. A fit cannot learn to cancel the user: the user is not in the reference, and a fit only
  meets audio after its window. In double talk it just leaves the shadow worse than the main filter, so the
  window closes early and rests longer.
- Optional residual echo suppression (`suppress`, off by default): a gentle spectral gain that dims
  what the linear filter leaves where the microphone holds only Moshi's echo, with a gain floor,
  held open wherever the microphone holds more than the echo estimate explains (the user).

We measured WebRTC's AEC3 (`pywebrtc-audio`) on the same simulated rooms (`python -m
moshi_mlx.bench echo`): more echo removed, but its suppressor cuts the user by 7-10 dB during double
talk, which turns a full-duplex dialog back into a half-duplex one, so it is not used.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..audio import FRAME, MODEL_RATE
from .echo_fit import fit_response

_HALF = 8  # interpolation kernel: 2 * _HALF taps
_PHASES = 512  # fractional positions tabulated
_NEVER = -(1 << 62)
# Kalman noise weights (see _Filters): the main filter waits for proof, the shadow adapts boldly
MAIN_NOISE, SHADOW_NOISE = 64.0, 0.5
# the shadow's steps beyond the Kalman gain: it overshoots a little, which follows a new room sooner
SHADOW_STEP = 1.5
# a path change: the microphone holds less than this share of the echo the main filter predicts (in
# double talk it holds all of it, the user besides: >= 0.9 on the bench's scenes with the user 6 dB above
# to 6 dB below the echo; it falls under 0.75 within 80 ms of the laptop moving while Moshi speaks)
CHANGED = 0.75
# a GCC-PHAT peak this many times its mean is taken at once as the first bulk delay (a frame of microphone
# noise alone peaks at ~13x, the echo's first speech frame at ~28x)
FIRST_PEAK = 20.0
# seconds of far speech after the first bulk delay at which the filters' uncertainty is renewed (`_relook`):
# 28.5 dB removed in the bench's echo-only stretch (28.4 with the speaker 250 ms late) against 27.4 (27.2) without
RELOOK_S = 0.24
# the least-squares refit (`_refit`): a window opens when the main filter leaves more than FIT_WHEN of the echo
# it predicts (a-priori, under 10 dB removed: a moved laptop, the user talking, the start) or a path change is
# detected; once FIT_MIN_S of audio is there, a fit on the last FIT_MAX_S of it is made at the end of every frame,
# until FIT_UNTIL_S; it closes earlier, at FIT_PROVE_S, if no fit left the shadow with under FIT_BETTER of the
# main filter's error over the next frame (double talk), or as soon as a fit left it worse than the main filter.
# No window opens for FIT_REST_S after one that helped, and after one that did not for FIT_IDLE_S, doubled after
# each further one up to FIT_IDLE_MAX_S (a long double talk costs little CPU; a detected path change opens a window
# at any time)
FIT_WHEN = 0.1
FIT_MIN_S, FIT_UNTIL_S, FIT_MAX_S, FIT_PROVE_S = 0.06, 1.0, 0.5, 0.25
FIT_REST_S, FIT_IDLE_S, FIT_IDLE_MAX_S = 0.5, 1.0, 4.0
FIT_BETTER = 0.5
# the fit's ridge weight on the first taps (it grows as the room prior falls)
FIT_RIDGE = 1e-2


def _sinc_table() -> np.ndarray:
    """Kaiser-windowed sinc kernels, [_PHASES + 1, 2 * _HALF]: row q interpolates at fraction q / _PHASES."""
    frac = np.arange(_PHASES + 1)[:, None] / _PHASES
    t = np.arange(-_HALF + 1, _HALF + 1)[None, :] - frac  # tap offsets from the wanted position
    k = np.sinc(t * 0.95) * 0.95 * np.kaiser(2 * _HALF, 8.0)[None, :]  # cut-off at 0.95 Nyquist
    return k / k.sum(axis=1, keepdims=True)


# each partition's taps are cut back to one block (the overlap-save constraint: two FFTs) every this many blocks,
# in turn; every other block costs nothing measurable in echo removal and saves a third of the update's time
CONSTRAIN_EVERY = 2
MAIN, SHADOW = 0, 1  # the two filters' rows in _Filters


class _Filters:
    """The main and the shadow filter: partitioned frequency-domain filters, each adapted by a diagonal
    Kalman gain (per partition and bin), kept in one array (row MAIN, row SHADOW) so that both are updated
    by the same few vectorised operations.

    `noise` weighs the error spectrum (what the far signal does not explain: noise, the user, what is
    not learned yet) against a filter's own uncertainty: small adapts boldly, large waits for proof.
    """

    def __init__(self, prior: np.ndarray, bins: int, block: int) -> None:
        self.prior, self.B = prior, block
        self.noise = np.array([MAIN_NOISE, SHADOW_NOISE], np.float32)[:, None, None] / prior.shape[0]
        self.step = np.array([1.0, SHADOW_STEP], np.float32)[:, None, None]
        self.w = np.zeros((2, prior.shape[0], bins), np.complex64)
        self.pk = np.zeros((2, prior.shape[0], bins), np.float32)  # uncertainty of every tap (partition x bin)
        self.renew()
        self.psi = np.zeros((2, 1, bins), np.float32)  # smoothed error spectra
        self._zeros = np.zeros((2, block), np.float32)
        self._turn = 0

    def renew(self) -> None:
        """Both filters' uncertainty back to the prior."""
        self.pk[:] = self.prior[None]

    def take(self, dst: int, src: int) -> None:
        self.w[dst] = self.w[src]
        self.pk[dst] = self.pk[src]

    def echo(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Both filters' echo spectra [2, bins] and their last B samples in time [2, B]."""
        Y = (self.w * X).sum(axis=1)  # (einsum takes 4x as long here)
        return Y, np.fft.irfft(Y, axis=1)[:, self.B :]

    def update(self, X: np.ndarray, ax2: np.ndarray, e: np.ndarray) -> None:
        """One Kalman step of both filters from the far spectra X [P, bins] (ax2 = |X|^2) and errors e [2, B]."""
        E = np.fft.rfft(np.concatenate([self._zeros, e], axis=1), axis=1)[:, None, :]
        self.psi = 0.5 * self.psi + 0.5 * (E.real**2 + E.imag**2)
        A2 = 0.9995**2  # state transition: the room keeps changing a little
        pk, w = self.pk, self.w
        mu = pk * (self.step / (np.einsum("pk,fpk->fk", ax2, pk)[:, None, :] + self.noise * self.psi + 1e-12))
        # pk <- A2 * max(1 - mu |X|^2 / 2, 0.05) * pk + (1 - A2) |w|^2 (a step beyond the gain must not make
        # the uncertainty negative), in place
        t = mu * ax2
        t *= -0.5 * A2
        t += A2
        np.maximum(t, 0.05 * A2, out=t)
        pk *= t
        w2 = np.square(w.real)
        w2 += np.square(w.imag)
        w2 *= 1 - A2
        pk += w2
        w += mu * (np.conj(X) * E)
        # each partition's taps cut to B (overlap-save: the last B are circular), a share of them per block
        K = CONSTRAIN_EVERY
        rows = slice(self._turn % K, None, K)
        self._turn += 1
        g = np.fft.irfft(self.w[:, rows], axis=2)
        self.w[:, rows] = np.fft.rfft(g[..., : self.B], n=2 * self.B, axis=2)


class EchoStats(NamedTuple):
    delay_ms: float  # bulk delay in use (speaker reference -> microphone)
    erle_db: float  # recent echo reduction estimate while Moshi speaks (mic energy / output energy)
    far_active: bool
    drift_ppm: float  # speaker clock against the microphone's, as tracked


class EchoCanceller:
    """Streaming echo canceller for 24 kHz mono float32 (any frame size, multiple of `block`).

    Usage per frame on one thread: `push_reference(played)` with everything the speaker played
    since the last call, then `process(mic_frame)`; `skip(n)` when microphone frames are dropped.

    Args:
        rate: sample rate of both signals.
        filter_ms: echo tail the filter models after the bulk delay (room reverberation).
        max_delay_ms: largest bulk delay the estimator searches.
        block: samples per adaptation block (3.3 ms at 24 kHz: more updates per second converge faster on speech).
        drift: follow the speaker's clock when it differs from the microphone's (separate devices).
        suppress: residual echo suppression strength (0 = off, 1 = full); dims what the linear filter
            leaves where only the echo is heard, never below `floor_db`.
        floor_db: the suppressor's lowest gain.
    """

    def __init__(
        self,
        rate: int = MODEL_RATE,
        filter_ms: float = 160.0,
        max_delay_ms: float = 400.0,
        block: int = 80,
        drift: bool = True,
        suppress: float = 0.0,
        floor_db: float = -12.0,
    ) -> None:
        if not 0.0 <= suppress <= 1.0:
            raise ValueError(f"suppress must be between 0 and 1, not {suppress}")
        self.rate, self.B, self.drift, self.suppress = rate, block, drift, suppress
        self.floor = 10 ** (floor_db / 20)
        self.P = max(1, int(round(filter_ms * rate / 1000 / block)))
        self.max_delay = int(max_delay_ms * rate / 1000) // block * block
        self._pre = 2 * block  # filter taps kept before the estimated peak
        self._est_frame = FRAME
        n = self._est_frame + self.max_delay + self._est_frame
        self._est_fft = 1 << int(np.ceil(np.log2(n)))
        self._fit_max = int(FIT_MAX_S * rate)
        self._hist_len = self.max_delay + (self.P + 2) * block + 2 * self._est_frame + self._fit_max
        self._raw_len = self._hist_len + 4 * _HALF
        self._kernels = _sinc_table()
        # Kalman prior: the variance of partition p's taps decays like a room's energy (RT60 ~ 0.4 s),
        # from 2 partitions before the bulk delay on
        t = np.maximum(np.arange(self.P) - 2, 0) * block / rate
        self._prior = (0.05 * 10 ** (-6 * t / 0.4))[:, None].astype(np.float32)
        self.reset()

    def reset(self) -> None:
        bins = self.B + 1
        # the played signal as pushed (raw), and resampled onto the microphone's clock (far)
        self._raw = np.zeros(self._raw_len, np.float32)
        self._raw_count = 0
        self._pos = 0.0  # raw position of the next far sample
        self._ratio = 1.0  # raw samples per microphone sample
        self._far = np.zeros(self._hist_len, np.float32)  # far[abs index % len]
        self._far_count = 0  # far samples made (absolute index of the next one)
        self._near_count = 0  # near samples processed
        self._near_hist = np.zeros(self._est_frame, np.float32)
        self._mic = np.zeros(self._hist_len, np.float32)  # mic[abs index % len]
        self._fit_from: int | None = None  # where the least-squares fit's window starts (`_refit`)
        self._fit_rest = 0  # no fit window opens before this sample
        self._fit_idle = FIT_IDLE_S  # the rest after a window whose fits did not help
        self._fit_made = self._fit_helped = False  # a fit was made in this window; one cancelled better
        self._frame_err = np.zeros(2)  # each filter's a-priori error energy over the current frame
        self._f = _Filters(self._prior, bins, self.B)  # MAIN cautious: the output; SHADOW bold: proposes taps
        self._sm = self._ss = 1e-6  # smoothed error energies of both filters
        self._dy = self._yy = 1e-9  # smoothed mic . main echo estimate, and its energy (path change test)
        self._use = 0.0  # the output's share from the shadow filter
        self._d0 = 0  # far lag (samples) of partition 0, a multiple of B
        self._cross = np.zeros(self._est_fft // 2 + 1, np.complex128)
        self._est_frames = 0
        self._delay_votes: list[int] = []
        self._locked = False  # a bulk delay was found
        self._since_lock = _NEVER  # blocks of far activity since then
        self._mic_e = self._out_e = 1e-9
        self._far_active = False
        self._cache_j = np.full(self.P + 8, _NEVER, np.int64)  # window end / B of each cached spectrum
        self._cache_x = np.zeros((2 * (self.P + 8), bins), np.complex64)  # twice: see _far_spectra
        self._cache_a2 = np.zeros((2 * (self.P + 8), bins), np.float32)
        # drift tracking: the main filter's response at the last look, and far activity since
        self._h_then: np.ndarray | None = None
        self._n_then = self._active_since = 0
        # residual suppressor: overlap-add synthesis state and smoothed spectra
        self._res_tail = np.zeros(self.B, np.float32)
        self._res_prev = np.zeros(self.B, np.float32)
        self._res_gain = np.ones(bins)

    # -- inputs ----------------------------------------------------------------------------------
    def push_reference(self, far: np.ndarray) -> None:
        """Appends what the speaker played (24 kHz), in order, as it becomes known."""
        far = np.asarray(far, np.float32)
        if far.size > self._raw_len:
            self._raw_count += far.size - self._raw_len
            self._pos = max(self._pos, self._raw_count - self._raw_len / 2)
            far = far[-self._raw_len :]
        idx = (self._raw_count + np.arange(far.size)) % self._raw_len
        self._raw[idx] = far
        self._raw_count += far.size
        self._resample()

    def _resample(self) -> None:
        """Makes every far sample (the microphone's clock) that the raw samples received allow."""
        k = int(np.floor((self._raw_count - 1 - _HALF - self._pos) / self._ratio)) + 1
        if k <= 0:
            return
        pos = self._pos + self._ratio * np.arange(k)
        i0 = np.floor(pos).astype(np.int64)
        q = np.rint((pos - i0) * _PHASES).astype(np.int64)
        taps = i0[:, None] + np.arange(-_HALF + 1, _HALF + 1)[None, :]
        vals = self._raw[taps % self._raw_len]
        vals[(taps < 0) | (taps < self._raw_count - self._raw_len)] = 0.0
        out = np.einsum("nk,nk->n", vals, self._kernels[q]).astype(np.float32)
        idx = (self._far_count + np.arange(k)) % self._hist_len
        self._far[idx] = out
        self._far_count += k
        self._pos += self._ratio * k

    def skip(self, n: int) -> None:
        """The loop dropped `n` microphone samples: keep the two timelines aligned."""
        self._near_count += n
        self._fit_from = None

    @property
    def delay_ms(self) -> float:
        return 1000.0 * self._d0 / self.rate

    @property
    def latency(self) -> int:
        """Samples the output lags the microphone (the suppressor's overlap-add), 0 without it."""
        return self.B if self.suppress else 0

    @property
    def drift_ppm(self) -> float:
        return 1e6 * (self._ratio - 1.0)

    def stats(self) -> EchoStats:
        return EchoStats(self.delay_ms, 10 * np.log10(self._mic_e / self._out_e), self._far_active, self.drift_ppm)

    # -- processing --------------------------------------------------------------------------------
    def _far_window(self, end: int, length: int) -> np.ndarray:
        """far[end - length : end] by absolute index; samples not made (yet or ever) read as 0."""
        start, a = end - length, (end - length) % self._hist_len
        made = max(0, self._far_count - self._hist_len) <= start and end <= self._far_count
        if made and a + length <= self._hist_len:
            return self._far[a : a + length].copy()  # all made, in one piece of the ring
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
        self._mic[(start + np.arange(near.size)) % self._hist_len] = near
        self._estimate_delay(near, start)
        out = np.empty_like(near)
        self._frame_err[:] = 0.0
        for b in range(0, near.size, self.B):
            out[b : b + self.B] = self._block(near[b : b + self.B], start + b)
        self._near_count += near.size
        if self._fit_from is not None:
            self._refit()
        if self.drift:
            self._track_drift()
        return out

    def _far_spectra(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """X[k]: spectrum of the 2B far samples ending d0 + k*B before this block's end, and |X[k]|^2. [P, B+1]

        Windows recur block after block (partition k now is partition k-1 of the last block), so
        spectra are cached by window end; a window that held samples not yet made is redone. Window j
        is kept at slot -j (mod C) and again C slots on, so the P partitions are one slice of the cache.
        """
        B, P, C = self.B, self.P, self._cache_j.shape[0]
        j0 = (n + B - self._d0) // B  # window ends are multiples of B: j * B
        q0 = -j0 % C
        js = j0 - np.arange(P)
        slots = (q0 + np.arange(P)) % C
        stale = np.nonzero(self._cache_j[slots] != js)[0]
        if stale.size:
            frames = np.stack([self._far_window(int(js[k]) * B, 2 * B) for k in stale])
            X = np.fft.rfft(frames, axis=1)
            for q in (slots[stale], slots[stale] + C):
                self._cache_x[q] = X
                self._cache_a2[q] = X.real**2 + X.imag**2
            complete = js[stale] * B <= self._far_count
            self._cache_j[slots[stale]] = np.where(complete, js[stale], _NEVER)
        return self._cache_x[q0 : q0 + P], self._cache_a2[q0 : q0 + P]

    def _block(self, d: np.ndarray, n: int) -> np.ndarray:
        B = self.B
        X, ax2 = self._far_spectra(n)  # [P, B+1]
        last = self._far_window(n + B - self._d0, B)
        self._far_active = float(np.dot(last, last)) / B > 1e-8
        f = self._f
        if not self._far_active and not f.w[MAIN].any():
            return self._suppress(d.copy(), None, d) if self.suppress else d.copy()
        Y, y = f.echo(X)
        e = d - y
        Ym, ym, em, es = Y[MAIN], y[MAIN], e[MAIN], e[SHADOW]
        a = 0.9  # error energies over ~30 ms
        err = np.einsum("fb,fb->f", e, e)
        self._frame_err += err
        self._sm = a * self._sm + (1 - a) * float(err[MAIN])
        self._ss = a * self._ss + (1 - a) * float(err[SHADOW])
        if self._far_active:
            self._dy = a * self._dy + (1 - a) * float(np.dot(d, ym))
            self._yy = a * self._yy + (1 - a) * float(np.dot(ym, ym))
            if self._dy < CHANGED * self._yy and self._mic_e > 10.0 * self._out_e:
                self._path_changed(n)
            elif self._sm > FIT_WHEN * self._yy and self._fit_from is None and n >= self._fit_rest and self._locked:
                self._open_fit(n)
            self._active_since += 1
            self._since_lock += 1
            if self._since_lock == int(RELOOK_S * self.rate / self.B):
                self._relook()
            self._mic_e = 0.99 * self._mic_e + 0.01 * float(np.dot(d, d))
            self._out_e = 0.99 * self._out_e + 0.01 * float(np.dot(em, em))
            f.update(X, ax2, e)
        # two-path control: the main filter takes a clearly better shadow (a path change), a shadow
        # that fell far behind (double talk) is put back
        if self._ss < 0.5 * self._sm:
            f.take(MAIN, SHADOW)
            self._sm = self._ss
        elif self._ss > 4.0 * self._sm:
            f.take(SHADOW, MAIN)
            self._ss = self._sm
            self._h_then = None  # the drift tracker watches the shadow
        # the output: the main filter's, or the shadow's while it cancels better (start-up, a changed
        # room); cross-faded over the block
        use = 1.0 if self._ss < self._sm else 0.0
        ramp = np.linspace(self._use, use, B, endpoint=False) if use != self._use else use
        self._use = use
        out = (em + ramp * (es - em)).astype(np.float32)
        if self.suppress:
            out = self._suppress(out, Ym, d)
        return out

    def _relook(self) -> None:
        """The filters' uncertainty shrinks faster than their error in the first fraction of a second (the
        Kalman gain is diagonal: it ignores how the taps' errors correlate), which leaves them slow to
        finish. Once, RELOOK_S of far speech after the bulk delay is found, it is put back to the prior."""
        self._f.renew()

    def _path_changed(self, n: int) -> None:
        """The echo no longer follows the main filter's estimate: the laptop moved. The user cannot cause
        this (their voice adds to the microphone without taking the echo away). The shadow forgets its
        reverberation tail (20 ms after the strongest partition on): a tail of the old room added to the
        new one's doubles the echo it leaves while it learns the new one."""
        strongest = int(np.argmax(np.sum(np.abs(self._f.w[MAIN]) ** 2, axis=1)))
        self._f.w[SHADOW, strongest + 1 + int(np.ceil(0.02 * self.rate / self.B)) :] = 0.0
        self._dy = self._yy = 1e-9
        if self._fit_from is None:
            self._open_fit(n)

    def _open_fit(self, n: int) -> None:
        self._fit_from, self._fit_made, self._fit_helped = n, False, False

    def _refit(self) -> None:
        """The echo path fitted by least squares (echo_fit) on the audio since the fit's window opened becomes
        the shadow's taps, at the end of every frame; the output follows the shadow while it cancels better
        than the main filter, which takes its taps once it cancels much better. A fit cannot cancel the user
        (the user is not in the reference, and a fit is only ever applied to audio after its window), so
        in double talk it only leaves the shadow worse than the main filter: the window then closes early,
        and rests longer (it costs CPU)."""
        assert self._fit_from is not None
        age = self._near_count - self._fit_from
        worse = self._fit_made and self._frame_err[SHADOW] > self._frame_err[MAIN]
        if self._fit_made and self._frame_err[SHADOW] < FIT_BETTER * self._frame_err[MAIN]:
            self._fit_helped = True
        closing = age > FIT_UNTIL_S * self.rate or (age > FIT_PROVE_S * self.rate and not self._fit_helped)
        closing = closing or (self._fit_helped and worse)
        if closing:
            rest = FIT_REST_S if self._fit_helped else self._fit_idle
            self._fit_idle = FIT_IDLE_S if self._fit_helped else min(2 * self._fit_idle, FIT_IDLE_MAX_S)
            self._fit_from, self._fit_rest = None, self._near_count + int(rest * self.rate)
            return
        end = min(self._near_count, self._far_count + self._d0)  # the microphone the far signal made so far explains
        if end - self._fit_from < FIT_MIN_S * self.rate:
            return
        L = self.P * self.B
        start = max(self._fit_from, end - self._fit_max)
        x = self._far_window(end - self._d0, end - start + L - 1)
        d = self._mic[np.arange(start, end) % self._hist_len]
        lam = FIT_RIDGE * np.repeat(self._prior[0, 0] / self._prior[:, 0], self.B)
        h = fit_response(x, d, lam, self._response())
        self._f.w[SHADOW] = np.fft.rfft(h.reshape(self.P, self.B), n=2 * self.B, axis=1)
        self._fit_made = True

    # -- residual echo suppression --------------------------------------------------------------------
    def _suppress(self, e: np.ndarray, Y: np.ndarray | None, d: np.ndarray) -> np.ndarray:
        """Spectral gain on the filter's output (sqrt-Hann overlap-add, one block of delay).

        The residual is taken as a share of the echo estimate's spectrum (what a linear filter at this
        echo removal leaves) and dimmed only where it dominates the output; where the output holds
        more than the echo explains (the user), the gain stays near 1.
        """
        B = self.B
        frame = np.concatenate([self._res_prev, e])
        self._res_prev = e.copy()
        win = np.sqrt(np.hanning(2 * B + 1)[:-1])
        F = np.fft.rfft(frame * win)
        if Y is not None and self._far_active:
            echo_pow = np.abs(Y) ** 2 / B  # echo estimate's spectrum, on the scale of F
            # what this filter leaves of the echo, assumed no better than 20 dB in any bin
            erle = min(max(self._mic_e / self._out_e, 1.0), 100.0)
            resid = echo_pow / erle
            out_pow = np.abs(F) ** 2 + 1e-12
            g = 1.0 - self.suppress * 4.0 * resid / out_pow
            target = np.clip(g, self.floor, 1.0)
        else:
            target = np.ones(B + 1)
        # fast to open (the user starts), slower to close
        self._res_gain = np.where(target > self._res_gain, target, 0.6 * self._res_gain + 0.4 * target)
        y = np.fft.irfft(F * self._res_gain) * win
        out = (self._res_tail + y[:B]).astype(np.float32)
        self._res_tail = y[B:].astype(np.float32)
        return out

    # -- clock drift -----------------------------------------------------------------------------
    def _response(self) -> np.ndarray:
        """The shadow filter's impulse response over its whole span (partitions joined)."""
        return np.fft.irfft(self._f.w[SHADOW], axis=1)[:, : self.B].reshape(-1)

    def _track_drift(self) -> None:
        """Every ~0.25 s of far speech with the filter converged: how far did its impulse response slide
        since the last look? The peak of its correlation with the response then (lags -4..4, parabolic
        between the neighbours of the best) gives the shift; the resampling ratio absorbs its rate."""
        if self._active_since < 0.25 * self.rate / self.B:  # 0.25 s of far activity since the last look
            return
        converged = self._mic_e / self._out_e > 10.0  # 10 dB
        if not converged:
            self._h_then, self._active_since = None, 0
            return
        h = self._response()
        if self._h_then is not None:
            lags = range(-4, 5)
            r = [
                float(np.dot(h[max(k, 0) : h.size + min(k, 0)], self._h_then[max(-k, 0) : h.size - max(k, 0)]))
                for k in lags
            ]
            i = int(np.argmax(r))
            if 0 < i < len(r) - 1 and r[i - 1] - 2 * r[i] + r[i + 1] < 0:
                # samples, > 0: the echo came later
                tau = lags[i] + 0.5 * (r[i - 1] - r[i + 1]) / (r[i - 1] - 2 * r[i] + r[i + 1])
                rate_err = tau / (self._near_count - self._n_then)
                # the far timeline runs ahead when the echo comes later: slow it down
                step = float(np.clip(0.7 * rate_err, -40e-6, 40e-6))
                self._ratio = float(np.clip(self._ratio - step, 1 - 1e-3, 1 + 1e-3))
        self._h_then, self._n_then, self._active_since = h, self._near_count, 0

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
        if self._est_frames < 2:
            return
        g = np.fft.irfft(self._cross / (np.abs(self._cross) + 1e-12), self._est_fft)[: self.max_delay + 1]
        s = int(np.argmax(g))
        if g[s] < 6.0 * (np.mean(np.abs(g)) + 1e-12):  # no clear peak (noise, double talk)
            return
        lag = self.max_delay - s  # near[t] ~ far[t - lag]
        self._delay_votes = (self._delay_votes + [lag])[-3:]
        votes = self._delay_votes
        # the first delay is taken from one frame when its peak is unmistakable (microphone noise alone
        # peaks at ~13x the mean): the echo is then cancelled from its first syllable; later moves need
        # three frames that agree
        first = not self._locked and g[s] >= FIRST_PEAK * np.mean(np.abs(g))
        if first or (len(votes) == 3 and max(votes) - min(votes) <= self.B // 2):
            if not self._locked:
                self._since_lock = 0
            self._locked = True
            d0 = max(0, (lag - self._pre) // self.B * self.B)
            if d0 != self._d0:
                self._shift_filters((d0 - self._d0) // self.B)
                self._d0 = d0
                self._cache_j[:] = _NEVER
                self._h_then = None

    def _shift_filters(self, k: int) -> None:
        """Partition p of the new filter is partition p + k of the old one (same absolute lag)."""
        w = self._f.w
        old = w.copy()
        w[:] = 0
        if k >= 0:
            if k < self.P:
                w[:, : self.P - k] = old[:, k:]
        elif -k < self.P:
            w[:, -k:] = old[:, : self.P + k]
        self._f.renew()
