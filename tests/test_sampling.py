"""Temperature / top-k sampling with explicit keys."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from moshi_mlx.sampling import sample


def test_greedy_is_argmax():
    logits = mx.array([[0.1, 3.0, 2.9, -1.0], [5.0, 5.0, 1.0, 0.0]])
    assert sample(logits, 0.0, 0, None).tolist() == [1, 0]  # ties: first index, as torch.argmax


def test_a_vanishing_temperature_is_greedy_not_random():
    """`run --temp 1e-300` is accepted (0 to 100): logits / temp overflowed float32 to infinities, and the draw
    was uniform among them, where a temperature that small is argmax."""
    logits = mx.array([[1.0, 3.0, 2.0, -1.0], [-30.0, -2.0, -40.0, -1.0]])
    for temp in (1e-300, 1e-40, 1e-9):
        for top_k in (0, 2):
            draws = {tuple(sample(logits, temp, top_k, mx.random.key(i)).tolist()) for i in range(16)}
            assert draws == {(1, 3)}, (temp, top_k, draws)


def test_top_k_restricts_to_the_k_best():
    rng = np.random.default_rng(0)
    logits = mx.array(rng.normal(size=(64, 50)).astype(np.float32))
    best = set()
    got = sample(logits, 5.0, 3, mx.random.key(1))  # hot: without top-k anything goes
    order = np.argsort(-np.array(logits), axis=-1)[:, :3]
    for row, tok in enumerate(got.tolist()):
        assert tok in order[row], (row, tok)
        best.add(tok == order[row, 0])
    assert best == {True, False}
    assert (sample(logits, 1.0, 1, mx.random.key(2)) == mx.argmax(logits, -1)).all().item()


def test_frequencies_follow_softmax_of_scaled_logits():
    logits = mx.array([[0.0, 1.0, 2.0, 3.0]] * 4000)
    draws = np.array(sample(logits, 2.0, 0, mx.random.key(3)))
    freq = np.bincount(draws, minlength=4) / draws.size
    p = np.exp(np.arange(4) / 2.0)
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.03)


def test_top_k_frequencies_follow_the_softmax_of_the_k_best():
    logits = mx.array([[3.0, -1.0, 0.0, 2.0, 1.0, -2.0]] * 6000)
    draws = np.array(sample(logits, 1.5, 3, mx.random.key(4)))
    freq = np.bincount(draws, minlength=6) / draws.size
    p = np.zeros(6)
    p[[0, 3, 4]] = np.exp(np.array([3.0, 2.0, 1.0]) / 1.5)
    np.testing.assert_allclose(freq, p / p.sum(), atol=0.02)


def test_same_key_same_draw():
    logits = mx.array(np.random.default_rng(1).normal(size=(8, 100)).astype(np.float32))
    a = sample(logits, 0.8, 25, mx.random.key(9))
    b = sample(logits, 0.8, 25, mx.random.key(9))
    c = sample(logits, 0.8, 25, mx.random.key(10))
    assert mx.array_equal(a, b).item() and not mx.array_equal(a, c).item()
