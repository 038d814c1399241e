"""Text stream: padding skipped, pieces joined into words as they arrive (tiny sentencepiece model)."""

from __future__ import annotations

import io

import pytest
import sentencepiece

from moshi_mlx.errors import ConfigError
from moshi_mlx.text import TextStream

SENTENCES = [
    "hello there how are you doing today",
    "the weather is lovely and the birds are singing",
    "moshi listens and speaks at the same time",
    "a tiny tokenizer splits unusual words into pieces",
] * 20


@pytest.fixture(scope="module")
def sp() -> sentencepiece.SentencePieceProcessor:
    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(SENTENCES),
        model_writer=model,
        vocab_size=45,
        model_type="unigram",
        hard_vocab_limit=False,
        pad_id=3,
        minloglevel=2,
    )
    return sentencepiece.SentencePieceProcessor(model_proto=model.getvalue())


def stream_of(sp, text: str, pad: int = 3) -> list[int]:
    tokens = []
    for piece in sp.EncodeAsIds(text):
        tokens += [piece, pad, 0]  # padding and end-of-padding between pieces, as Moshi emits
    return tokens


def test_words_complete_as_next_word_starts(sp):
    text = "moshi speaks unusual words"
    pieces = [sp.IdToPiece(i) for i in sp.EncodeAsIds(text)]
    assert len(pieces) > len(text.split()), f"no multi-piece word to join: {pieces}"
    ts = TextStream(sp, padding_ids=(0, 3))
    live, words, starts = "", [], []
    for tok in stream_of(sp, text):
        delta, done, starts_word = ts.push(tok)
        live += delta
        if done is not None:
            words.append(done)
        if starts_word:
            starts.append(len(live) - len(delta.lstrip()))
    last = ts.flush()
    assert words + [last] == text.split()
    assert live == text
    # each word's first piece, and only it, says that a word starts (where its time comes from)
    assert starts == [i for i in range(len(text)) if text[i] != " " and (i == 0 or text[i - 1] == " ")]
    assert ts.flush() is None


def test_padding_only_gives_nothing(sp):
    ts = TextStream(sp, padding_ids=(0, 3))
    assert all(ts.push(t) == ("", None, False) for t in [3, 0, 3, 3, 10_000, -1])
    assert ts.flush() is None


def test_bad_model_file(tmp_path):
    bad = tmp_path / "tok.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ConfigError, match="sentencepiece"):
        TextStream(bad)


def test_a_bare_word_start_piece_gives_one_space_and_no_empty_word():
    """Sentencepiece has a piece that is only "▁"; after it, the next word must not add a second space."""
    from support import ASSETS

    stream = TextStream(ASSETS / "e2e" / "tokenizer_spm_32k_3.model")
    sp = stream.sp
    bare = sp.PieceToId("\u2581")
    assert sp.IdToPiece(bare) == "\u2581"
    ids = sp.EncodeAsIds("hello there") + [bare] + sp.EncodeAsIds("the cat")
    shown, words = "", []
    for i in ids:
        delta, word, _ = stream.push(i)
        shown += delta
        words += [word] if word is not None else []
    words += [stream.flush()]
    assert "  " not in shown and shown.split() == "hello there the cat".split()
    assert "" not in words and " ".join(words) == "hello there the cat"
