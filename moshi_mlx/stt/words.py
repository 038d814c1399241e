"""Text tokens of an STT model -> words with start and end times, as the reference computes them
(`tokens_to_timestamped_text` in delayed-streams-modeling's scripts/stt_from_file_pytorch.py).

The model marks word boundaries with the end-of-padding token (0): everything between two of them is one
word, timed by the boundaries' steps. Several words between two boundaries (spoken quickly) get as many
steps each as they have tokens, the last one the rest. The last segment ends at the tokenizer's EOS, else
one second later or at the end. Tokens up to the padding id (0..3) carry no text.

One difference: where the last segment has no EOS and more than a second of tokens follow, the reference
slices its tokens with a float index and raises; here it ends int(frame_rate) steps later (0.96 s).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import sentencepiece

END_OF_PADDING = 0  # the reference's `end_of_padding_id`


class TimedWord(NamedTuple):
    text: str
    start: float  # seconds into the audio
    end: float


def timed_words(
    tokens,
    sp: sentencepiece.SentencePieceProcessor,
    frame_rate: float,
    offset: float,
    padding_id: int = 3,
) -> list[TimedWord]:
    """Words of a whole token sequence (one token per step) with their times in seconds.

    Args:
        tokens: text tokens, one per step from the first fed frame (silence prefix included).
        offset: seconds subtracted from step times (`feed.time_offset`); times are clamped at 0.
    """
    tokens = np.asarray(tokens, dtype=np.int64).reshape(-1)
    words: list[TimedWord] = []

    def timed(text: str, start: int, end: int) -> None:
        words.append(TimedWord(text, max(0.0, start / frame_rate - offset), max(0.0, end / frame_rate - offset)))

    def segment(start: int, end: int) -> None:
        ids = tokens[start:end]
        text = sp.DecodeIds([int(t) for t in ids[ids > padding_id]])
        inside = text.split()
        if len(inside) == 1:
            timed(text, start, end)
            return
        for word in inside[:-1]:  # quickly spoken words with no boundary between them
            n = len(sp.EncodeAsIds(word))
            timed(word, start, start + n)
            start += n
        if inside:
            timed(inside[-1], start, end)

    bounds = np.flatnonzero(tokens == END_OF_PADDING)
    if not bounds.size:
        return []
    for a, b in zip(bounds[:-1], bounds[1:]):
        segment(int(a) + 1, int(b))
    last = int(bounds[-1]) + 1
    eos = np.flatnonzero(tokens[last:] == sp.eos_id())
    end = last + int(eos[0]) if eos.size else min(tokens.shape[0], last + int(frame_rate))
    segment(last, end)
    return words
