"""SttSession over a file, against the reference's file transcription (Mimi codes, text tokens)."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.errors import ConfigError
from moshi_mlx.loading.hub import resolve_model_files
from moshi_mlx.loading.mimi import load_mimi
from moshi_mlx.stt.session import SttSession
from support.stt import STT, make_repo


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> SttSession:
    files = resolve_model_files(make_repo(tmp_path_factory.mktemp("stt")))
    return SttSession.from_files(files, dtype=mx.float32)


def test_a_file_is_fed_and_transcribed_as_the_reference_does(session):
    from support.stt import goldens

    g = goldens()
    frames = session.frames_of(g["file_pcm"])
    assert frames.shape[0] == g["file_tokens"].shape[0] == 7 + 17 + 3  # prefix, 1.3 s padded to frames, delay
    session.reset()
    codes, tokens = [], []
    state = session.mimi.init_state(1)
    for frame in frames:
        c, state = session.mimi.stream_encode(mx.array(frame).reshape(1, 1, -1), state)
        codes.append(np.array(c[0, :, 0]))
        tokens.append(session.encode_step(frame).token)
    np.testing.assert_array_equal(np.stack(codes), g["file_codes"])
    np.testing.assert_array_equal(tokens, g["file_tokens"])
    # and its words, timed as the reference's script times them (the model's delay taken off)
    expected = json.loads((STT / "timestamps.json").read_text())[-1]
    assert expected["tokens"] == g["file_tokens"].tolist() and expected["offset"] == session.offset == 0.24
    got = session.transcript(tokens, [None] * len(tokens)).words
    assert [w.text for w in got] == [w[0] for w in expected["words"]] and len(got) >= 5
    np.testing.assert_allclose([[w.start, w.end] for w in got], [w[1:] for w in expected["words"]], atol=1e-9)


def test_the_mimi_must_hold_the_models_codebooks(session):
    from support import ASSETS

    small = load_mimi(
        ASSETS / "e2e" / "tokenizer-e351c8d8-checkpoint125.safetensors", config=ASSETS / "e2e" / "mimi_config.json"
    )
    with pytest.raises(ConfigError, match="reads 32 Mimi codebooks but this Mimi holds 10"):
        SttSession(small, session.lm, session.text.sp)
