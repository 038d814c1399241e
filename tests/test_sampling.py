"""Temperature / top-k sampling with explicit keys."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from moshi_mlx.sampling import draw, noise_width, sample, step_noise


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


def test_a_steps_noise_is_one_generation_cut_for_each_draw():
    """`step_noise`: one piece [B, w] per draw, a next key unlike the key, the same pieces from the same key,
    different ones from the next key; a greedy draw (width 0) takes none."""
    key = mx.random.key(5)
    next_key, pieces = step_noise(key, 3, [25, 0, 250, 250])
    assert [p.shape for p in pieces] == [(3, 25), (3, 0), (3, 250), (3, 250)]
    assert next_key.shape == key.shape and next_key.dtype == key.dtype
    assert not mx.array_equal(next_key, key).item()
    again_key, again = step_noise(key, 3, [25, 0, 250, 250])
    assert mx.array_equal(again_key, next_key).item()
    assert all(mx.array_equal(a, b).item() for a, b in zip(pieces, again))
    _, later = step_noise(next_key, 3, [25, 0, 250, 250])
    assert not mx.array_equal(later[0], pieces[0]).item()
    assert not mx.array_equal(pieces[2], pieces[3]).item()  # two draws never share their noise
    assert noise_width(0.0, 25, 100) == 0 and noise_width(0.7, 25, 100) == 25 and noise_width(0.7, 0, 100) == 100


def test_the_extreme_random_words_give_finite_noise():
    """Words 0 and 2^32 - 1 are uniforms strictly inside (0, 1): finite Gumbel noise, a token among the
    candidates (a uniform of 0 or 1 would make an infinite score that wins whatever the logits)."""
    logits = mx.array([[0.0, 50.0, -3.0, 1.0]])
    for word in (0, 2**32 - 1):
        bits = mx.full((1, 4), word, mx.uint32)
        assert draw(logits, 1.0, 0, bits).item() == 1  # equal noise everywhere: the best logit wins
        assert draw(logits, 1.0, 2, bits[:, :2]).item() == 1
