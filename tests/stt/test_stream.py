"""Stt against the reference's LMGen on the tiny STT model (tests/reference/make_stt_fixtures.py)."""

from __future__ import annotations

import json

import mlx.core as mx
import numpy as np
import pytest
import sentencepiece

from moshi_mlx.config import LmConfig
from moshi_mlx.errors import ConfigError
from moshi_mlx.loading.lm import load_lm
from moshi_mlx.stt.feed import time_offset
from moshi_mlx.stt.stream import Stt
from moshi_mlx.stt.words import timed_words
from support.stt import CONFIG, STT, TOKENIZER, WEIGHTS, goldens


def run(stt: Stt, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Text tokens, text logits and extra heads of each step."""
    state = stt.init_state()
    tokens, logits, heads = [], [], []
    for frame in codes:
        out, state = stt.advance(state, mx.array(frame[None]))
        assert out.extra_heads is not None
        mx.eval(out, Stt.state_arrays(state))
        tokens.append(int(out.text_token[0]))
        logits.append(np.array(out.text_logits[0]))
        heads.append(np.array(out.extra_heads[0]))
    return np.array(tokens), np.stack(logits), np.stack(heads)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op-by-op"])
def test_greedy_text_tokens_and_extra_heads_equal_the_reference_in_float32(compiled):
    g = goldens()
    lm = load_lm(WEIGHTS, CONFIG, dtype=mx.float32)
    assert lm.cfg.dep_q == 0 and lm.cfg.n_q == 32 and not lm.depformer.slices
    tokens, logits, heads = run(Stt(lm, compile=compiled), g["codes"])
    np.testing.assert_array_equal(tokens, g["text_tokens"])  # 40 steps, the 16-step ring wraps twice
    np.testing.assert_allclose(logits, g["text_logits"], atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(heads, g["extra_heads"], atol=1e-5)


def test_a_compiled_step_gives_the_op_by_op_tokens_and_extra_heads(monkeypatch):
    g = goldens()
    lm = load_lm(WEIGHTS, CONFIG, dtype=mx.float32)
    monkeypatch.delenv("MOSHI_MLX_COMPILE", raising=False)
    assert Stt(lm).compiled  # the default
    monkeypatch.setenv("MOSHI_MLX_COMPILE", "0")
    assert not Stt(lm).compiled
    fast = run(Stt(lm, compile=True, window_bucket=4), g["codes"])  # the 16-slot ring: windows of 4, 8, 12, then all 16
    slow = run(Stt(lm, compile=False, window_bucket=None), g["codes"])  # op by op over the whole ring, as the reference
    for a, b in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_new_compute_dtype_traces_the_compiled_step_again():
    g = goldens()
    lm = load_lm(WEIGHTS, CONFIG, dtype=mx.float32)
    stt, op_by_op = Stt(lm), Stt(lm, compile=False)
    frames = g["codes"][:3]
    before = run(stt, frames)[1]
    lm.set_compute_dtype(mx.bfloat16)  # the step's inputs keep their shapes and dtypes: only the key sees it
    after = run(stt, frames)[1]
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, run(op_by_op, frames)[1])


def test_the_released_config_reads_as_stt():
    cfg = LmConfig.from_json(CONFIG)
    assert cfg.is_stt and cfg.depformer is None and cfg.user_codebooks == 32
    assert cfg.stt is not None and (cfg.stt.audio_delay_seconds, cfg.stt.audio_silence_prefix_seconds) == (0.24, 0.5)
    assert (cfg.extra_heads_num_heads, cfg.extra_heads_dim) == (4, 6)
    assert time_offset(cfg.stt, 12.5) == 0.24  # the reference truncates the 7 prefix frames (0.56 s) to 0 s


@pytest.mark.parametrize(
    "change,words",
    [
        ({"dep_q": 8}, "speech-to-text model generates no audio: dep_q must be 0"),
        ({"model_type": "tts"}, "model_type 'tts' makes it Kyutai's TTS"),
        ({"model_type": "moshi"}, "stt_config belongs to speech-to-text models"),
        ({"stt_config": {"audio_delay_seconds": -1}}, "audio_delay_seconds = -1 is out of range"),
        ({"stt_config": [1]}, "stt_config: expected a JSON object"),
        ({"extra_heads_dim": 0}, "extra_heads_dim = 0"),
    ],
)
def test_bad_stt_configs_are_refused_by_name(change, words):
    raw = json.loads(CONFIG.read_text())
    with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
        LmConfig.from_kyutai(raw | change)


def test_a_moshi_model_is_no_stt():
    from support.lm import CONFIG as MOSHI_CONFIG
    from support.lm import model

    with pytest.raises(ConfigError, match="not a speech-to-text model"):
        Stt(model("torch"))
    assert not LmConfig.from_json(MOSHI_CONFIG).is_stt


def test_word_timestamps_are_the_references():
    sp = sentencepiece.SentencePieceProcessor()
    sp.Load(str(TOKENIZER))
    cases = json.loads((STT / "timestamps.json").read_text())
    assert sum(len(c["words"]) for c in cases) > 20
    for case in cases:
        got = [[w.text, w.start, w.end] for w in timed_words(case["tokens"], sp, 12.5, case["offset"])]
        assert [w[0] for w in got] == [w[0] for w in case["words"]]
        times = np.reshape([w[1:] for w in got], (-1, 2))
        np.testing.assert_allclose(times, np.reshape([w[1:] for w in case["words"]], (-1, 2)), atol=1e-12)


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op-by-op"])
def test_stream_delays_give_the_references_tokens_and_extra_heads(tmp_path, compiled):
    """Per-stream delays (text 1, audio 0..3), as the reference's LMGen runs them with dep_q 0: nothing for the
    first max(delays) steps, then the token sampled max(delays) - 1 steps before; greedy float32, exact."""
    g = goldens()
    raw = json.loads(CONFIG.read_text()) | {"delays": [1] + [k % 4 for k in range(32)]}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    stt = Stt(load_lm(WEIGHTS, tmp_path / "config.json", dtype=mx.float32), compile=compiled)
    assert stt.output_lag == 2
    state, tokens, heads = stt.init_state(), [], []
    for frame in g["codes"]:
        out, state = stt.advance(state, mx.array(frame[None]))
        mx.eval(out, Stt.state_arrays(state))
        tokens.append(int(out.text_token[0]) if out.ready else -1)
        heads.append(np.array(out.extra_heads[0]))
    np.testing.assert_array_equal(tokens, g["delayed_text_tokens"])
    ready = g["delayed_text_tokens"] >= 0
    np.testing.assert_allclose(np.array(heads)[ready], g["delayed_extra_heads"][ready], atol=1e-5)
