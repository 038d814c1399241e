"""Moshi's text stream -> words, as the tokens arrive (its "inner monologue" transcript).

Moshi emits one text token per 80 ms step; most are padding. The others are sentencepiece pieces where
"▁" marks the start of a word, so a word is complete when the next word starts (or at `flush`).
This is the one place that turns pieces into words: the console shows `shown`, transcripts and
recordings list `word`s, timed by the token that started them (`starts_word`).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import sentencepiece

from .errors import ConfigError

WORD_START = "\u2581"  # sentencepiece's "▁"


class TextStep(NamedTuple):
    shown: str  # text to append to a live transcript, possibly ""
    word: str | None  # the word this token completed (it started with an earlier token), if any
    starts_word: bool  # this token is the first piece of a new word (the time to give that word)


class TextStream:
    """Turns text tokens into display text and completed words.

    Args:
        tokenizer: a sentencepiece model file or a loaded SentencePieceProcessor.
        padding_ids: tokens that carry no text (Moshi: 3 = padding, 0 = end of padding).
    """

    def __init__(
        self,
        tokenizer: str | os.PathLike | sentencepiece.SentencePieceProcessor,
        padding_ids: tuple[int, ...] = (0, 3),
    ):
        if isinstance(tokenizer, sentencepiece.SentencePieceProcessor):
            self.sp = tokenizer
        else:
            self.sp = sentencepiece.SentencePieceProcessor()
            try:
                self.sp.Load(str(tokenizer))
            except (OSError, RuntimeError) as e:
                raise ConfigError(f"{tokenizer}: not a sentencepiece model ({e})") from None
        self.padding_ids = frozenset(int(i) for i in padding_ids)
        self._word: list[int] = []  # pieces of the word being spelled
        self._started = False  # some text was emitted (a new word then needs a space)

    def push(self, token: int) -> TextStep:
        """Add one text token."""
        token = int(token)
        if token in self.padding_ids or not 0 <= token < self.sp.GetPieceSize():
            return TextStep("", None, False)
        if self.sp.IsControl(token):
            return TextStep("", None, False)
        piece = self.sp.IdToPiece(token)
        done = None
        if piece.startswith(WORD_START) and self._word:
            done = self._decode(self._word)
            self._word = []
        starts = not self._word
        before = self._decode(self._word)
        self._word.append(token)
        after = self._decode(self._word)
        # a bare "▁" piece already showed its space: the word it "completes" is empty and adds none
        lead = " " if piece.startswith(WORD_START) and (done or (done is None and self._started)) else ""
        self._started = True
        delta = after[len(before) :] if after.startswith(before) else after
        return TextStep(lead + delta, done or None, starts)

    def flush(self) -> str | None:
        """The word being spelled, if any (at the end of a turn or stream)."""
        if not self._word:
            return None
        word, self._word = self._decode(self._word), []
        return word

    def _decode(self, ids: list[int]) -> str:
        return self.sp.DecodeIds(ids) if ids else ""
