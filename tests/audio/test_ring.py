"""RingBuffer: wrap-around, overrun/underrun accounting, and a two-thread stress run."""

from __future__ import annotations

import threading

import numpy as np

from moshi_mlx.audio.ring import RingBuffer


def test_wraps_and_keeps_order() -> None:
    ring = RingBuffer(10)
    out = np.zeros(7, np.float32)
    seq = np.arange(100, dtype=np.float32)
    pos_w = pos_r = 0
    for step in range(30):
        n = 3 + step % 5
        pos_w += ring.write(seq[pos_w : pos_w + n]) if pos_w + n <= 100 else 0
        got = ring.read_into(out[: 1 + step % 7], count_underrun=False)
        np.testing.assert_array_equal(out[:got], seq[pos_r : pos_r + got])
        pos_r += got
    assert ring.overruns > 0  # sizes above were chosen to overflow sometimes
    assert ring.total_read == pos_r and ring.available() == ring.total_written - pos_r


def test_overrun_keeps_what_fits_and_counts_the_rest() -> None:
    ring = RingBuffer(8)
    assert ring.write(np.arange(5, dtype=np.float32)) == 5
    assert ring.write(np.arange(5, 10, dtype=np.float32)) == 3
    assert (ring.overruns, ring.overrun_samples) == (1, 2)
    np.testing.assert_array_equal(ring.read(100), np.arange(8, dtype=np.float32))


def test_underrun_counts_the_shortfall_and_leaves_the_tail_alone() -> None:
    ring = RingBuffer(8)
    ring.write(np.ones(3, np.float32))
    out = np.full(5, -1.0, np.float32)
    assert ring.read_into(out) == 3
    np.testing.assert_array_equal(out, [1, 1, 1, -1, -1])
    assert (ring.underruns, ring.underrun_samples) == (1, 2)
    assert ring.read_into(out[:0]) == 0 and ring.underruns == 1


def test_discard_drops_oldest() -> None:
    ring = RingBuffer(8)
    ring.write(np.arange(6, dtype=np.float32))
    assert ring.discard(4) == 4
    np.testing.assert_array_equal(ring.read_all(), [4, 5])
    assert ring.discard(3) == 0


def test_two_threads_lose_and_duplicate_nothing() -> None:
    ring = RingBuffer(257)  # odd size: wrap points move around
    total = 60_000
    seq = np.arange(total, dtype=np.float32)
    got: list[np.ndarray] = []

    def producer() -> None:
        pos = 0
        while pos < total:
            pos += ring.write(seq[pos : pos + 1 + pos % 61])

    def consumer() -> None:
        buf = np.empty(97, np.float32)
        n = 0
        while n < total:
            k = ring.read_into(buf[: 1 + n % 97], count_underrun=False)
            got.append(buf[:k].copy())
            n += k

    threads = [threading.Thread(target=producer), threading.Thread(target=consumer)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    np.testing.assert_array_equal(np.concatenate(got), seq)
