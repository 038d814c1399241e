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


def _user_turn_ends(stt, pcm) -> list[float]:
    """When the user finished a turn (the model's delay taken off), as `transcribe --mic` says it over `pcm`."""
    session, ends = SttSession.from_files(resolve_model_files(stt)), []
    for i in range(len(pcm) // 1920):
        if session.step(pcm[i * 1920 : (i + 1) * 1920]).turn_end:
            ends.append(round(max(0.0, i * 0.08 - 0.24), 3))
    return ends


def test_run_records_the_users_words_and_turn_ends_with_their_times(repos, tmp_path):
    moshi, stt = repos
    wav = tmp_path / "user.wav"
    pcm = speechlike(3.0, 3)  # the tiny STT model's end-of-turn head passes 0.5 twice in it
    sf.write(wav, pcm, 24_000, subtype="FLOAT")
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
    assert doc["user_words"] and all(0 <= w["t"] <= 3.0 for w in doc["user_words"])
    lines = [json.loads(x) for x in (tmp_path / "rec" / "transcript.jsonl").read_text().splitlines()]
    said = [x for x in lines if x.get("speaker") == "user" and "word" in x]
    assert [x["word"] for x in said] == [w["word"] for w in doc["user_words"]]
    assert lines[0]["user_transcript_model"] == str(stt)  # the header says which model heard the user
    # both sides in order of time: the file's lines, and the document's `conversation`
    times = [x["t"] for x in lines[1:]]
    assert times == sorted(times)
    both = doc["conversation"]
    assert [x["t"] for x in both] == sorted(x["t"] for x in both)
    assert sorted((x["t"], x["word"]) for x in both if x["speaker"] == "user" and "word" in x) == [
        (w["t"], w["word"]) for w in doc["user_words"]
    ]
    # the ends of the user's turns, as transcribe --mic says them, in the document and the recording
    ends = _user_turn_ends(stt, pcm)
    assert ends and doc["user_end_of_turn"] == ends
    assert [x["t"] for x in both if x.get("end_of_turn")] == ends
    assert [x["t"] for x in lines if x.get("type") == "end_of_turn" and x["speaker"] == "user"] == ends
    assert len(both) == len(doc["words"]) + len(doc["user_words"]) + len(ends)


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


def test_the_console_ends_the_users_turn_on_its_line_or_on_a_labelled_line_of_its_own():
    import io

    from moshi_mlx.dialog.console import ConsoleView
    from moshi_mlx.dialog.events import Text, TurnEnded

    out = io.StringIO()
    view = ConsoleView(out, io.StringIO(), live=False)
    for ev in (
        Text("hi", 0.0, 0, "moshi"),
        Text(" hello", 0.1, 1, "user"),
        TurnEnded(0.5, "user"),  # the user's line is open: it ends there
        Text(" again", 1.0, 12, "user"),  # a new turn: labelled again
        Text(" yes", 1.6, 20, "moshi"),
        TurnEnded(1.4, "user"),  # late, Moshi's line is open: a line of its own
        Text(" ok", 2.0, 25, "moshi"),
    ):
        view.handle(ev)
    assert out.getvalue() == (
        "hi\nyou (0.1 s): hello [end of turn]\nyou (1.0 s): again\nmoshi: yes\nyou (1.4 s): [end of turn]\nmoshi: ok"
    )


@pytest.mark.parametrize("budget,kept", [("100000", True), ("1", False)], ids=["keeps-up", "too-slow"])
def test_live_the_users_transcript_is_timed_once_loaded_and_kept_only_where_it_keeps_up(
    repos, capsys, monkeypatch, budget, kept
):
    """run --transcribe-user, live on the fake sound card: the frame is timed with and without the STT step
    against the live step budget (MOSHI_MLX_STEP_BUDGET_MS forces each outcome); kept, the user's turns show;
    too slow, one line says why and the dialog goes on without them."""
    import _thread
    import re
    import threading
    import time

    from moshi_mlx.audio.fake import FakeClock, FakeStreamFactory
    from moshi_mlx.run import main

    monkeypatch.setenv("MOSHI_MLX_STEP_BUDGET_MS", budget)
    moshi, stt = repos
    backend = FakeStreamFactory(input_rate=24_000, output_rate=24_000)
    pcm = speechlike(1.5 if kept else 0.5, 3)

    def drive() -> None:
        deadline = time.monotonic() + 60
        while not any(s.kind == "output" for s in backend.streams) and time.monotonic() < deadline:
            time.sleep(0.02)
        backend.input.push_input(pcm)
        with FakeClock([backend.input, backend.output], speed=2.0):
            while backend.input.pending_input() > 0:
                time.sleep(0.02)
            time.sleep(0.3)
            _thread.interrupt_main()

    threading.Thread(target=drive, daemon=True).start()
    greedy = ["--temp", "0", "--text-temp", "0", "--no-echo-cancel"]
    assert main(["--hf-repo", str(moshi), "--transcribe-user", str(stt), *greedy], audio_backend=backend) == 130
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if kept:
        cost = r"the speech-to-text step adds \d+\.\d ms to each 80 ms frame \(\d+%\)"
        assert re.search(
            rf"^Your words are transcribed live: {cost}; a frame takes \d+ ms with it, \d+ ms without$", err, re.M
        )
        assert "you (" in out, out  # where live frames fall in the audio varies: the turn ends too (next test)
    else:
        (line,) = [x for x in err.splitlines() if "not transcribed" in x]
        assert re.fullmatch(
            r"Your words are not transcribed: on this machine the speech-to-text step adds \d+\.\d ms to each 80 ms "
            r"frame \(\d+%\), and a frame would take \d+ ms, over the 1 ms a live dialog can spend \(Moshi alone takes "
            r"\d+ ms already\)\. The conversation goes on without your transcript",
            line,
        )
        assert "you (" not in out and "transcribed live" not in err


def test_the_console_shows_where_the_user_finished_a_turn(repos):
    """The dialog's loop over the real pipeline transcribing the user, shown by the console: each turn's end as
    transcribe --mic says it, ending the user's labelled line (or on a labelled line of its own)."""
    import io

    from moshi_mlx.audio.file_port import FileAudioPort
    from moshi_mlx.dialog.console import ConsoleView
    from moshi_mlx.dialog.events import TurnEnded
    from moshi_mlx.dialog.loop import ModelLoop

    moshi, stt = repos
    pcm = speechlike(3.0, 3)
    files = resolve_model_files(moshi), resolve_model_files(stt)
    loop = ModelLoop(lambda: MoshiPipeline.from_files(files[0], GREEDY, user_files=files[1])).start()
    port = FileAudioPort(pcm, type("Sink", (), {"write": lambda self, x: None})())
    loop.begin_session(port)
    assert port.exhausted.wait(60) and loop.end_session(10)
    loop.close()
    out = io.StringIO()
    view, ends = ConsoleView(out, io.StringIO(), live=False), []
    while not loop.events.empty():
        ev = loop.events.get()
        view.handle(ev)
        if isinstance(ev, TurnEnded):
            ends.append(round(ev.t, 3))
    assert ends == _user_turn_ends(stt, pcm)
    lines = [x for x in out.getvalue().splitlines() if x.endswith(" [end of turn]")]
    assert len(lines) == len(ends) and all(x.startswith("you (") for x in lines), out.getvalue()


def test_a_step_budget_that_is_not_a_number_is_one_line_before_loading(repos, monkeypatch, capsys):
    from moshi_mlx.audio.fake import FakeStreamFactory
    from moshi_mlx.run import main

    monkeypatch.setenv("MOSHI_MLX_STEP_BUDGET_MS", "fast")
    moshi, stt = repos
    assert main(["--hf-repo", str(moshi), "--transcribe-user", str(stt)], audio_backend=FakeStreamFactory()) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: MOSHI_MLX_STEP_BUDGET_MS='fast' is not a number of milliseconds above 0")
    assert len(err.strip().splitlines()) == 1 and "loading the model" not in err


def test_the_cost_says_whether_moshi_alone_keeps_up():
    from moshi_mlx.stt.speed import TranscriptCost

    keeps = TranscriptCost(alone_ms=50.0, both_ms=75.0, budget_ms=68.0)
    assert not keeps.fits and keeps.stt_ms == 25.0
    assert (
        "adds 25.0 ms to each 80 ms frame (31%)" in keeps.refusal()
        and "(Moshi alone keeps up (50 ms))" in keeps.refusal()
    )
    assert TranscriptCost(40.0, 60.0, 68.0).fits and TranscriptCost(70.0, 69.0, 68.0).stt_ms == 0.0
