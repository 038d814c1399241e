"""The dialog transcribing the user live (run --transcribe-user) on the tiny Moshi and STT models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.errors import MemoryBudgetError
from moshi_mlx.loading import memory
from moshi_mlx.loading.hub import resolve_model_files
from moshi_mlx.pipeline import MoshiPipeline, Sampling
from moshi_mlx.stt.session import SttSession
from moshi_mlx.stt.user import check_dialog_fits
from support.cli import run_module
from support.signals import speechlike
from support.stt import make_moshi_repo, make_repo

GREEDY = Sampling(temp=0.0, text_temp=0.0, seed=1)


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    return make_moshi_repo(root / "moshi"), make_repo(root / "stt")


def test_the_user_is_transcribed_from_the_dialogs_own_codes_and_moshi_is_unchanged(repos):
    moshi, stt = (resolve_model_files(r) for r in repos)
    pcm = speechlike(1.2, 3)
    frames = pcm[: len(pcm) // 1920 * 1920].reshape(-1, 1920)
    alone = MoshiPipeline.from_files(moshi, GREEDY)
    both = MoshiPipeline.from_files(moshi, GREEDY, user_files=stt)
    assert both.mimi.num_codebooks == 32 and alone.mimi.num_codebooks == 8 and both.user_lag_s == 0.24
    session = SttSession.from_files(stt)  # the STT model alone, on its own Mimi, over the same frames
    heard = []
    for frame in frames:
        a, b = alone.step(frame), both.step(frame)
        assert a.token == b.token and (a.pcm is None) == (b.pcm is None)
        if a.pcm is not None:
            np.testing.assert_array_equal(a.pcm, b.pcm)  # Moshi reads the first 8 of the 32 codes: the same
        heard.append((b.user_text, b.user_word))
        s = session.step(frame)  # the same tokens, so the same text and words
        assert (b.user_text, b.user_word, b.user_word_start) == (s.text, s.word, s.word_start)
    assert any(text for text, _ in heard)


def test_moshi_and_the_stt_model_must_fit_in_memory_together(repos, monkeypatch):
    moshi, stt = (resolve_model_files(r) for r in repos)
    check_dialog_fits(moshi, stt)
    monkeypatch.setattr(memory, "available_bytes", lambda: 100_000)
    with pytest.raises(
        MemoryBudgetError, match="Moshi with the user's live transcript needs about .* Turn the user's transcript off"
    ):
        check_dialog_fits(moshi, stt)


def test_run_records_the_users_words_with_their_times(repos, tmp_path):
    moshi, stt = repos
    wav = tmp_path / "user.wav"
    sf.write(wav, speechlike(2.0, 3), 24_000)
    r = run_module(
        "moshi_mlx.run",
        "--hf-repo",
        moshi,
        "--transcribe-user",
        stt,
        "--input",
        wav,
        "--output",
        tmp_path / "moshi.wav",
        "--transcript",
        tmp_path / "t.json",
        "--record",
        tmp_path / "rec",
        "--temp",
        "0",
        "--text-temp",
        "0",
    )
    assert r.code == 0, r.why()
    doc = json.loads((tmp_path / "t.json").read_text())
    assert doc["user_words"] and all(0 <= w["t"] <= 2.0 for w in doc["user_words"])
    lines = [json.loads(x) for x in (tmp_path / "rec" / "transcript.jsonl").read_text().splitlines()]
    said = [x for x in lines if x.get("speaker") == "user"]
    assert [x["word"] for x in said] == [w["word"] for w in doc["user_words"]]
    assert lines[0]["user_transcript_model"] == str(stt)  # the header says which model heard the user
    # both sides in order of time: the file's lines, and the document's `conversation`
    times = [x["t"] for x in lines[1:]]
    assert times == sorted(times)
    both = doc["conversation"]
    assert [x["t"] for x in both] == sorted(x["t"] for x in both)
    assert sorted((x["t"], x["word"]) for x in both if x["speaker"] == "user") == [
        (w["t"], w["word"]) for w in doc["user_words"]
    ]
    assert len(both) == len(doc["words"]) + len(doc["user_words"])


@pytest.mark.parametrize(
    "case,words",
    [("moshi-as-stt", "is not a speech-to-text model"), ("mimi-of-10-codebooks", "needs 32 Mimi codebooks of 32")],
)
def test_a_transcriber_that_does_not_fit_is_refused_before_loading(repos, tmp_path, case, words):
    from support.cli import E2E, assert_one_line_error

    moshi, stt = repos
    if case == "moshi-as-stt":
        stt = moshi
    else:
        moshi = E2E  # its tiny Mimi holds 10 codebooks
    wav = tmp_path / "user.wav"
    sf.write(wav, speechlike(0.5, 3), 24_000)
    r = run_module(
        "moshi_mlx.run", "--hf-repo", moshi, "--transcribe-user", stt, "--input", wav, "--output", tmp_path / "o.wav"
    )
    assert_one_line_error(r, 2, words)
    assert "loading the model" not in r.err


def test_the_console_gives_each_side_its_labelled_lines_once_the_user_is_transcribed_with_when_it_was_said():
    import io

    from moshi_mlx.dialog.console import ConsoleView
    from moshi_mlx.dialog.events import Text

    out = io.StringIO()
    view = ConsoleView(out, io.StringIO(), live=False)
    pieces = (("hello", 0.0, "moshi"), (" there", 0.08, "moshi"), (" hi", 0.04, "user"), (" you", 0.16, "user"))
    for text, t, who in (*pieces, (" yes", 0.64, "moshi"), (" ok", 12.34, "user")):
        view.handle(Text(text, t, round(t / 0.08), who))
    # a user's turn says when it was said (its words come late: the terminal cannot put them back among Moshi's)
    assert out.getvalue() == "hello there\nyou (0.0 s): hi you\nmoshi: yes\nyou (12.3 s): ok"
