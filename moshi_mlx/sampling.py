"""Temperature and top-k sampling with explicit PRNG keys (runs are repeatable given a seed)."""

from __future__ import annotations

import mlx.core as mx

# What a sampling setting may be, (lowest, highest) both included: `pipeline.Sampling` refuses anything else,
# and front ends check them when they read a command line or a setting.
TEMP_RANGE = (0.0, 100.0)  # 0: greedy; far past any useful temperature: catches typos, not taste
TOP_K_RANGE = (1, 2**20)  # past any vocabulary: a k at least the vocabulary samples from every token
SEED_RANGE = (0, 2**64 - 1)  # mx.random.key takes an unsigned 64-bit seed


def sample(logits: mx.array, temp: float, top_k: int, key: mx.array | None) -> mx.array:
    """Draw one token per row of logits [B, V] -> int32 [B].

    temp <= 0 is greedy (argmax, first index on ties, as the reference). top_k <= 0 or >= V samples
    from the whole distribution; otherwise only from the k largest logits (and any tied with the k-th).

    Sampling is the Gumbel-max trick: the argmax of logits / temp plus Gumbel noise is distributed as
    softmax(logits / temp). It is exact, and few operations for a compiled step (a step samples 9 times):
    the k-th largest logit (one partition), the noise, one fused select-and-add, one argmax; the inverse-CDF
    draw that mx.random.categorical makes for a single row took 22 operations with its top-k gather.
    """
    if temp <= 0.0:
        return mx.argmax(logits, axis=-1).astype(mx.int32)
    x = logits.astype(mx.float32)
    vocab = x.shape[-1]
    noise = mx.random.gumbel(x.shape, key=key)
    scored = x / temp + noise
    if 0 < top_k < vocab:  # the ranking of logits / temp is that of the logits
        kth = mx.partition(x, vocab - top_k, axis=-1)[..., vocab - top_k : vocab - top_k + 1]
        scored = mx.where(x >= kth, scored, -mx.inf)
    return mx.argmax(scored, axis=-1).astype(mx.int32)
