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
    assert len(frames) == g["file_tokens"].shape[0] == 7 + 17 + 3  # prefix, 1.3 s padded to frames, delay
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


def test_the_end_of_a_turn_is_said_live_after_words_as_kyutais_live_script_says_it(session, tmp_path):
    """`transcribe --mic` over a model with the end-of-turn head: the loop reports the turn's end (before that
    step's text, which begins the next turn) and the terminal ends the line there."""
    import io

    from moshi_mlx.audio.file_port import FileAudioPort
    from moshi_mlx.dialog.console import ConsoleView
    from moshi_mlx.dialog.events import Text, TurnEnded
    from moshi_mlx.dialog.loop import FRAME, ModelLoop
    from support.signals import speechlike

    pcm = speechlike(3.0, 3)  # the tiny model's head passes 0.5 twice in it
    files = resolve_model_files(make_repo(tmp_path / "stt"))
    loop = ModelLoop(lambda: SttSession.from_files(files, dtype=mx.float32)).start()
    port = FileAudioPort(pcm, type("Sink", (), {"write": lambda self, x: None})())
    loop.begin_session(port)
    assert port.exhausted.wait(60) and loop.end_session(10)
    loop.close()
    events = []
    while not loop.events.empty():
        events.append(loop.events.get())
    out = io.StringIO()
    view = ConsoleView(out, io.StringIO(), live=False)
    for ev in events:
        view.handle(ev)

    session.reset()
    p = [session.encode_step(pcm[i * FRAME : (i + 1) * FRAME]).end_of_turn for i in range(len(pcm) // FRAME)]
    said = {round(ev.t / 0.08) for ev in events if isinstance(ev, Text)}
    ends = [round(ev.t / 0.08) for ev in events if isinstance(ev, TurnEnded)]
    assert ends and all(p[i] > 0.5 for i in ends), "said where the head passes 0.5"
    for i, prob in enumerate(p):  # once words came since the last end (its own step's words come after it)
        since = max([e for e in ends if e < i], default=0)
        assert (i in ends) == (prob > 0.5 and any(since <= k < i for k in said)), i
    lines = out.getvalue().rstrip("\n").split("\n")  # the last turn goes on after the last end
    assert len(lines) == len(ends) + 1 and all(line.endswith(" [end of turn]") for line in lines[:-1])
    assert not any(line.startswith(" ") for line in lines), "a line after a turn's end starts with its word"
