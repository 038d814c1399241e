"""Single-producer / single-consumer float32 ring buffer for real-time audio.

One thread writes (`write`), one other thread reads (`read_into`, `discard`); neither ever blocks
or takes a lock, so the audio callback can use either end. Positions are ever-growing integers:
the producer only stores `_written`, the consumer only stores `_read`, and each publishes its
position after the samples are copied, so the other side never sees a half-written region.
Counters are owned by the side that updates them (overruns: producer, underruns: consumer).
"""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """Lock-free SPSC ring of float32 samples (mono).

    Args:
        capacity: how many samples it can hold; a write that does not fit keeps what fits and
            drops the rest (counted as an overrun), so a stalled reader never blocks the writer.
    """

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"ring capacity must be positive, got {capacity}")
        self._buf = np.zeros(capacity, dtype=np.float32)
        self._written = 0  # total samples ever written (producer-owned)
        self._read = 0  # total samples ever consumed (consumer-owned)
        self.overruns = 0  # writes that did not fit entirely (producer-owned)
        self.overrun_samples = 0
        self.underruns = 0  # reads that found fewer samples than asked (consumer-owned)
        self.underrun_samples = 0

    @property
    def capacity(self) -> int:
        return self._buf.shape[0]

    @property
    def total_written(self) -> int:
        return self._written

    @property
    def total_read(self) -> int:
        return self._read

    def available(self) -> int:
        """Samples waiting to be read (safe from either thread: a momentary lower bound for the reader)."""
        return self._written - self._read

    def free(self) -> int:
        """Room for writing (a lower bound for the writer)."""
        return self.capacity - (self._written - self._read)

    # -- producer side -------------------------------------------------------------------------
    def write(self, samples: np.ndarray) -> int:
        """Appends `samples` (1-D); returns how many fit. The rest is dropped and counted."""
        n = samples.shape[0]
        w = self._written
        room = self.capacity - (w - self._read)
        take = n if n <= room else room
        if take < n:
            self.overruns += 1
            self.overrun_samples += n - take
        if take:
            cap = self.capacity
            start = w % cap
            first = min(take, cap - start)
            self._buf[start : start + first] = samples[:first]
            if take > first:
                self._buf[: take - first] = samples[first:take]
            self._written = w + take  # publish after the copy
        return take

    # -- consumer side -------------------------------------------------------------------------
    def read_into(self, out: np.ndarray, count_underrun: bool = True) -> int:
        """Copies up to `len(out)` samples into `out`; returns how many. The rest of `out` is untouched.

        A short read counts as an underrun unless `count_underrun` is False (used while priming).
        """
        want = out.shape[0]
        r = self._read
        have = self._written - r
        take = want if want <= have else have
        if take < want and count_underrun:
            self.underruns += 1
            self.underrun_samples += want - take
        if take:
            cap = self.capacity
            start = r % cap
            first = min(take, cap - start)
            out[:first] = self._buf[start : start + first]
            if take > first:
                out[first:take] = self._buf[: take - first]
            self._read = r + take  # publish after the copy
        return take

    def read(self, n: int) -> np.ndarray:
        """Returns up to `n` samples as a new array (consumer side, not for the audio callback)."""
        out = np.empty(min(n, self.available()), dtype=np.float32)
        got = self.read_into(out, count_underrun=False)
        return out[:got]

    def read_all(self) -> np.ndarray:
        return self.read(self.available())

    def discard(self, n: int) -> int:
        """Drops up to `n` of the oldest samples (consumer side); returns how many were dropped."""
        r = self._read
        take = min(n, self._written - r)
        self._read = r + take
        return take
