"""Temperature and top-k sampling with explicit PRNG keys (runs are repeatable given a seed)."""

from __future__ import annotations

import mlx.core as mx

# What a sampling setting may be, (lowest, highest) both included: `pipeline.Sampling` refuses anything else,
# and front ends check them when they read a command line or a setting.
TEMP_RANGE = (0.0, 100.0)  # 0: greedy; far past any useful temperature: catches typos, not taste
TOP_K_RANGE = (1, 2**20)  # past any vocabulary: a k at least the vocabulary samples from every token
SEED_RANGE = (0, 2**64 - 1)  # mx.random.key takes an unsigned 64-bit seed
# a temperature this small draws the argmax but for logits within ~1e-5 of it; below it, logits / temp may
# overflow float32 (1e-40: every logit infinite) and the draw would be uniform among them: greedy instead
GREEDY_BELOW = 1e-6
_KEY_WORDS = 2  # an MLX PRNG key: two uint32 words


def noise_width(temp: float, top_k: int, vocab: int) -> int:
    """The random words one row of a draw takes: one per candidate (the k best, or the whole vocabulary when
    top_k <= 0 or >= vocab), none for a greedy draw."""
    if temp <= GREEDY_BELOW:
        return 0
    return top_k if 0 < top_k < vocab else vocab


def step_noise(key: mx.array, batch: int, widths: list[int]) -> tuple[mx.array, list[mx.array]]:
    """(The next key, random words uint32 [batch, w] for each w of `widths`): every draw of a step from one
    generation of bits, cut in one split. A key split, its indexing and a noise draw per sample took about
    30 operations of a compiled step for Moshi's 9 draws; this takes 4. The next key is two of the
    generated words (`mx.random.split` is that generation: pairs of raw uint32 words)."""
    row = sum(widths) + _KEY_WORDS + (batch * (sum(widths) + _KEY_WORDS)) % 2  # a whole number of pairs
    bits = mx.random.split(key, batch * row // 2).reshape(batch, row)
    offsets = [sum(widths[: i + 1]) for i in range(len(widths))]
    *draws, last = mx.split(bits, offsets, axis=1)
    return last.reshape(-1)[:_KEY_WORDS], draws


def sample(logits: mx.array, temp: float, top_k: int, key: mx.array | None) -> mx.array:
    """Draw one token per row of logits [B, V] -> int32 [B], with noise made from `key` (see `draw`; a greedy
    draw takes no key)."""
    width = noise_width(temp, top_k, logits.shape[-1])
    if not width:
        return draw(logits, temp, top_k, None)
    assert key is not None, "a draw at a temperature needs a key"
    return draw(logits, temp, top_k, step_noise(key, logits.shape[0], [width])[1][0])


def draw(logits: mx.array, temp: float, top_k: int, bits: mx.array | None) -> mx.array:
    """Draw one token per row of logits [B, V] -> int32 [B]; `bits`: uint32 [B, noise_width(...)] random
    words (None for a greedy draw).

    temp <= 0 (or below GREEDY_BELOW) is greedy (argmax, first index on ties, as the reference). top_k <= 0 or
    >= V samples from the whole distribution; otherwise only from the k largest logits.

    Sampling is the Gumbel-max trick: the argmax of logits / temp plus Gumbel noise is distributed as
    softmax(logits / temp). It is exact, and few operations for a compiled step (a step samples 9 times):
    the k best (one partition), one fused operation making their noise from the random words and adding it
    to them divided by the temperature, one argmax. mx.random.categorical takes 22 operations here with the
    gather of the k best; noise over the whole vocabulary instead of the k best took twice as long for the
    text's 32000 tokens (938 vs 543 us).
    """
    if temp <= GREEDY_BELOW:
        return mx.argmax(logits, axis=-1).astype(mx.int32)
    assert bits is not None, "a draw at a temperature needs its random words"
    vocab = logits.shape[-1]
    if not 0 < top_k < vocab:
        return mx.argmax(_gumbel_scores(logits, temp, bits), axis=-1).astype(mx.int32)
    # the k best of logits / temp are the k best logits (dividing by a positive number keeps the order)
    idx = mx.argpartition(logits, kth=vocab - top_k, axis=-1)[..., vocab - top_k :]  # [B, k], unordered
    best = mx.take_along_axis(logits, idx, axis=-1)
    choice = mx.argmax(_gumbel_scores(best, temp, bits), axis=-1, keepdims=True)  # [B, 1]
    return mx.take_along_axis(idx, choice, axis=-1)[..., 0].astype(mx.int32)


def _gumbel_scores(logits: mx.array, temp: float, bits: mx.array) -> mx.array:
    """logits / temp + Gumbel noise made from uint32 words: u uniform in [2^-24, 1 - 2^-24] from the top 23
    bits (never 0 or 1), noise -log(-log(u)); elementwise, one fused operation in a compiled step."""
    u = (bits >> 9).astype(mx.float32) * (2.0**-23) + 2.0**-24
    return logits.astype(mx.float32) / temp - mx.log(-mx.log(u))
