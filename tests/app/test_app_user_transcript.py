"""The app showing and saving the user's words when the model transcribes them (run --transcribe-user's model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from app import controller as c  # noqa: E402
from moshi_mlx.dialog.events import FrameResult  # noqa: E402
from support.app_fakes import ScriptModel  # noqa: E402
from support.app_window import WAIT_MS, App, RealModelApp  # noqa: E402


class TwoSidedModel(ScriptModel):
    """ScriptModel (Moshi says a word every 2 frames) whose STT side hears "hello there" at frames 1 and 3."""

    user_lag_s = 0.03  # the STT model's delay: its words come this long after they were said
    # the user's side by frame: (text, the word it completed, whether it starts a word); a space starts a word
    heard: dict[int, tuple[str, str | None, bool]] = {1: ("hello", None, True), 3: (" there", "hello", True)}

    def step(self, pcm) -> FrameResult:
        k = self.steps
        result = super().step(pcm)
        if k in self.heard:
            text, done, start = self.heard[k]
            return result._replace(user_text=text, user_word=done, user_word_start=start)
        return result

    def flush_user_word(self) -> str | None:
        return "there" if self.steps > max(self.heard) else None


def _talk(a: App, *shown: str) -> None:
    """Starts a conversation, waits until the transcript shows each of `shown`, stops it."""
    w = a.window
    w.start_button.click()
    a.wait_state(c.RUNNING)
    for text in shown:
        a.qtbot.waitUntil(lambda text=text: text in w.transcript.toPlainText(), timeout=WAIT_MS)
    w.start_button.click()
    a.wait_state(c.READY)


def test_the_users_words_show_as_their_own_turns_and_are_saved_with_their_times(qtbot, tmp_path: Path) -> None:
    a = App(qtbot, tmp_path, factory=lambda files, temperature: TwoSidedModel)
    try:
        _talk(a, "YOU", "MOSHI", "there")  # "there": frame 3 (Moshi's: 1)
        text = a.presenter.copy_transcript()
        assert "You: hello" in text and "there" in text and "Moshi: " in text
        dest = a.presenter.save_conversation(str(tmp_path / "saved"))
        assert dest is not None
        lines = [json.loads(x) for x in (dest / "transcript.jsonl").read_text().splitlines()]
        said = [(x["word"], x["t"]) for x in lines if x.get("speaker") == "user"]
        # timed back by the model's lag: a frame's time less 0.03 s ("hello" at model step 1, "there" at step 3;
        # a loaded machine may skip frames before them, which moves both along the timeline)
        assert [word for word, _ in said] == ["hello", "there"]
        for _, t in said:
            assert (t + 0.03) / 0.08 == pytest.approx(round((t + 0.03) / 0.08), abs=1e-6) and t >= 0.05
        assert said[1][1] - said[0][1] >= 2 * 0.08 - 1e-6
    finally:
        a.close()


class LateHearingModel(TwoSidedModel):
    """Moshi says a word every 2 frames (frames 0, 2, 4...); the user said "hello" at frame 1 and "there" at
    frame 3, which the STT side gives 6 frames late (at frames 7 and 9), after Moshi's later words."""

    user_lag_s = 6 * 0.08
    heard = {7: ("hel", None, True), 8: ("lo", None, False), 9: (" there", "hello", True)}  # "lo": after Moshi's


def test_the_users_late_words_go_among_moshis_by_when_they_were_said(qtbot, tmp_path: Path) -> None:
    from support.app_fakes import SCRIPT

    a = App(qtbot, tmp_path, factory=lambda files, temperature: LateHearingModel)
    try:
        w = a.window
        _talk(a, "there", SCRIPT[6])
        # the words shown come in the order they were said (frames 0, 1, 2, 3, 4...), not the order they came;
        # a loaded machine may skip input frames, which moves all words along the timeline together
        want = f"{SCRIPT[0]}\nYou: hello\nMoshi: {SCRIPT[1]}\nYou: there\nMoshi: {' '.join(SCRIPT[2:7])}"
        assert a.presenter.copy_transcript().startswith(want)
        assert f"{SCRIPT[0]}\nYOU hello\nMOSHI {SCRIPT[1]}\nYOU there\nMOSHI {SCRIPT[2]}" in w.transcript.toPlainText()
        dest = a.presenter.save_conversation(str(tmp_path / "saved"))
        assert dest is not None
        assert (dest / "transcript.txt").read_text().startswith(want)
        lines = [json.loads(x) for x in (dest / "transcript.jsonl").read_text().splitlines()]
        times = [x["t"] for x in lines if "t" in x]
        assert times == sorted(times), "the saved transcript's lines in order of time"
        said = [(x.get("speaker"), x["word"]) for x in lines if "word" in x][:4]
        assert said == [("moshi", SCRIPT[0]), ("user", "hello"), ("moshi", SCRIPT[1]), ("user", "there")]
    finally:
        a.close()


# -- the "Show what I say" switch: the STT model loaded with Moshi (run --transcribe-user's model and preflight) ---
def _real_app(qtbot, tmp_path: Path, moshi: Path, stt: Path) -> RealModelApp:
    """The real model factory over the tiny Moshi and STT models of tests/support/stt.py (the STT model from a
    folder, as the Presenter's `user_model` allows)."""
    from PySide6.QtCore import QSettings

    from app.settings import AppSettings

    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.local_folder = str(moshi)
    return RealModelApp(qtbot, settings, tmp_path, user_model=str(stt))


@pytest.fixture(autouse=True)
def keeps_up(monkeypatch):
    """The live preflight times the tiny models against the step budget (stt/speed.py): a loaded test machine
    must not turn the user's transcript off where a test does not ask it to."""
    monkeypatch.setenv("MOSHI_MLX_STEP_BUDGET_MS", "100000")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from support.stt import make_moshi_repo, make_repo

    root = tmp_path_factory.mktemp("models")
    return make_moshi_repo(root / "moshi"), make_repo(root / "stt")


def test_show_what_i_say_loads_the_stt_model_with_moshi_and_is_remembered(qtbot, tmp_path: Path, tiny_models) -> None:
    from PySide6.QtCore import QSettings

    from app.settings import AppSettings

    a = _real_app(qtbot, tmp_path, *tiny_models)
    w = a.window
    assert w.user_check.isEnabled() and not w.user_check.isChecked(), "off by default"
    assert "kyutai/stt-1b-en_fr-mlx" in w.user_check.toolTip() and "downloaded once" in w.user_check.toolTip()
    w.user_check.click()
    assert a.settings.transcribe_user
    w.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.RUNNING, timeout=60_000)
    w.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.READY, timeout=30_000)
    assert not a.dialogs.open_boxes, [b.informativeText() for b in a.dialogs.open_boxes]
    # its cost per frame, measured once loaded, where the precision's notes are kept
    assert "Your words are transcribed live: the speech-to-text step adds" in w.status.quant_label.toolTip()
    (pipe,) = a.built
    assert pipe.user is not None and pipe.user_lag_s == pytest.approx(0.24), "the loop's pipeline transcribes the user"
    assert pipe.mimi.num_codebooks == 32  # the dialog's own Mimi codes, all the STT model reads
    a.settings.sync()
    assert AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat)).transcribe_user
    w.user_check.click()  # off again: the loaded model no longer matches and goes
    assert not a.settings.transcribe_user and a.ctl.state == c.IDLE
    assert a.presenter.shutdown()


def test_show_what_i_say_is_refused_in_one_dialog_where_both_models_do_not_fit(
    qtbot, tmp_path: Path, tiny_models, monkeypatch
) -> None:
    from moshi_mlx.loading import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 100_000)  # what the preflight reads
    a = _real_app(qtbot, tmp_path, *tiny_models)
    w = a.window
    w.user_check.click()  # both models are on this computer: refused at once
    assert len(a.dialogs.open_boxes) == 1 and not w.user_check.isChecked() and not a.settings.transcribe_user
    box = a.dialogs.open_boxes[0]
    assert box.text() == "Cannot show what you say"
    assert "Moshi with the user's live transcript needs about" in box.informativeText()
    box.accept()
    qtbot.waitUntil(lambda: not a.dialogs.open_boxes, timeout=5000)

    a.settings.transcribe_user = True  # remembered from a roomier machine: refused at Start, nothing loads
    w.start_button.click()
    assert len(a.dialogs.open_boxes) == 1 and a.ctl.state == c.IDLE and not a.built
    assert "needs about" in a.dialogs.open_boxes[0].informativeText()
    assert a.presenter.shutdown()


def test_show_what_i_say_where_it_cannot_keep_up_is_said_in_one_dialog_and_the_talk_goes_on_without_it(
    qtbot, tmp_path: Path, tiny_models, monkeypatch
) -> None:
    monkeypatch.setenv("MOSHI_MLX_STEP_BUDGET_MS", "1")  # no frame takes under 1 ms: Moshi with it cannot keep up
    a = _real_app(qtbot, tmp_path, *tiny_models)
    w = a.window
    w.user_check.click()
    w.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.RUNNING, timeout=60_000)
    assert len(a.dialogs.open_boxes) == 1
    box = a.dialogs.open_boxes[0]
    assert box.text() == "Cannot show what you say"
    assert box.informativeText().startswith("Your words are not transcribed: on this machine the speech-to-text step")
    assert "“Show what I say” stays on" in box.informativeText()
    (pipe,) = a.built
    assert pipe.user is None and pipe.user_lag_s == 0.0 and pipe.mimi.num_codebooks == 8, "the dialog goes on alone"
    assert w.user_check.isChecked() and a.settings.transcribe_user
    w.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.READY, timeout=30_000)
    box.accept()
    assert a.presenter.shutdown()


class TurnTakingModel(TwoSidedModel):
    """Moshi says one word (frame 0); the user says "hello" (frame 1), finishes the turn (frame 3) and starts
    another, "again" (frame 5)."""

    heard = {1: ("hello", None, True), 5: (" again", None, True)}

    def __init__(self) -> None:
        from support.app_fakes import SCRIPT

        super().__init__(words=SCRIPT[:1])

    def step(self, pcm) -> FrameResult:
        k = self.steps
        result = super().step(pcm)
        return result._replace(user_turn_end=True, user_word="hello") if k == 3 else result


def test_the_users_turn_closes_where_the_model_says_it_ended(qtbot, tmp_path: Path) -> None:
    from support.app_fakes import SCRIPT

    a = App(qtbot, tmp_path, factory=lambda files, temperature: TurnTakingModel)
    try:
        _talk(a, "again")
        assert a.presenter.copy_transcript() == f"{SCRIPT[0]}\nYou: hello\nYou: again"
        assert a.window.transcript.toPlainText().endswith(f"{SCRIPT[0]}\nYOU hello\nYOU again")
        dest = a.presenter.save_conversation(str(tmp_path / "saved"))
        assert dest is not None
        lines = [json.loads(x) for x in (dest / "transcript.jsonl").read_text().splitlines()]
        (end,) = [x for x in lines if x.get("type") == "end_of_turn"]
        hello = next(x for x in lines if x.get("word") == "hello")
        assert end["speaker"] == "user" and hello["t"] < end["t"] == pytest.approx(end["t"])
        assert (end["t"] + 0.03) / 0.08 == pytest.approx(round((end["t"] + 0.03) / 0.08), abs=1e-6)
    finally:
        a.close()


def test_show_what_i_say_is_not_offered_for_hibiki_or_personaplex(qtbot, tmp_path: Path, tiny_models) -> None:
    from support.hibiki import make_hibiki_folder
    from support.personaplex import personaplex_folder

    a = _real_app(qtbot, tmp_path, *tiny_models)
    for folder in (make_hibiki_folder(tmp_path / "hibiki"), personaplex_folder(tmp_path / "plex", voices=False)):
        a.presenter.set_folder(str(folder))
        assert not a.window.user_check.isEnabled()
        assert a.window.user_check.toolTip().startswith("Show what I say is for a conversation with Moshi")
    a.presenter.set_folder(str(tiny_models[0]))
    assert a.window.user_check.isEnabled()
    assert a.presenter.shutdown()


def test_show_what_i_say_downloads_the_stt_model_after_moshi_with_progress(qtbot, tmp_path: Path, tiny_models) -> None:
    from moshi_mlx.loading.hub import resolve_model_files
    from moshi_mlx.release import STT_REPO

    moshi, stt = tiny_models
    asked: list[str] = []

    def resolver(choice, progress, cancelled):  # the hub: each repository's files, with progress
        asked.append(choice.repo)
        progress(1, 2, "model.safetensors")
        return resolve_model_files(stt if choice.repo == STT_REPO else moshi)

    a = _real_app(qtbot, tmp_path, moshi, Path(STT_REPO))
    a.presenter.resolver = resolver
    a.presenter.set_folder("")  # Kyutai's release, downloaded
    a.window.user_check.click()  # nothing here yet: checked at Start
    a.window.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.RUNNING, timeout=60_000)
    assert asked == ["kyutai/moshiko-mlx-q4", STT_REPO]
    assert not a.dialogs.open_boxes and a.built[0].user is not None
    a.window.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.READY, timeout=30_000)
    assert a.presenter.shutdown()


def test_an_stt_download_that_fails_is_said_once_and_nothing_loads(qtbot, tmp_path: Path, tiny_models) -> None:
    from moshi_mlx.errors import OfflineError
    from moshi_mlx.loading.hub import resolve_model_files
    from moshi_mlx.release import STT_REPO

    moshi, _ = tiny_models

    def resolver(choice, progress, cancelled):  # Moshi's files are here; the STT model's host cannot be reached
        if choice.repo == STT_REPO:
            raise OfflineError(f"cannot get model.safetensors from {STT_REPO}: the hub cannot be reached")
        return resolve_model_files(moshi)

    a = _real_app(qtbot, tmp_path, moshi, Path(STT_REPO))
    a.presenter.resolver = resolver
    a.presenter.set_folder("")
    a.window.user_check.click()
    a.window.start_button.click()
    qtbot.waitUntil(lambda: bool(a.dialogs.open_boxes), timeout=WAIT_MS)
    (box,) = a.dialogs.open_boxes
    assert box.text() == "Could not download the speech-to-text model"
    assert (
        box.informativeText().endswith("Or turn off Show what I say.") and "cannot be reached" in box.informativeText()
    )
    assert a.ctl.state == c.IDLE and not a.built and a.presenter.download is None
    assert a.presenter.shutdown()


def test_the_transcript_view_places_each_word_by_time_keeping_a_words_pieces_together(qtbot) -> None:
    from PySide6.QtGui import QColor, QTextCursor

    from app.widgets.transcript import TranscriptView

    view = TranscriptView()
    qtbot.addWidget(view)
    view.begin_conversation("Conversation 1")
    view.append_text("Fine", "moshi", 0.0)
    view.append_text(" thanks", "moshi", 0.1)
    view.begin_conversation("Conversation 2")
    for text, speaker, t in (
        ("Hi", "moshi", 0.5),
        ("yo", "user", 0.1),  # said before Moshi's first word: the conversation opens with the user's turn
        (" there", "moshi", 0.66),
        (" friend", "moshi", 0.82),
        (" hel", "user", 0.7),  # between "there" and "friend": Moshi's turn splits
        (" how", "moshi", 0.98),
        ("lo", "user", 0.78),  # the rest of "hello", come after Moshi's next word: it stays with its word
    ):
        view.append_text(text, speaker, t)
    assert view.conversation_text(0) == "Fine thanks", "the conversation before is left as it was"
    assert view.conversation_text(1) == "You: yo\nMoshi: Hi there\nYou: hello\nMoshi: friend how"
    plain = view.toPlainText()
    assert plain.endswith("YOU yo\nMOSHI Hi there\nYOU hello\nMOSHI friend how")
    colours = {}
    for word in ("yo", "there", "hello", "friend"):
        cur = QTextCursor(view.document())
        cur.setPosition(plain.rindex(word) + 1)
        colours[word] = cur.charFormat().foreground().color()
    assert colours["yo"] == colours["hello"] == QColor("#2563eb"), "the user's words keep their colour"
    assert colours["there"] == colours["friend"] != QColor("#2563eb")


def test_a_late_end_of_turn_closes_the_users_paragraph_where_it_was_said(qtbot) -> None:
    from app.widgets.transcript import TranscriptView

    view = TranscriptView()
    qtbot.addWidget(view)
    view.begin_conversation("Conversation 1")
    for text, speaker, t in (("Hi", "moshi", 0.0), ("one", "user", 0.2), (" two", "user", 0.9), (" so", "moshi", 1.2)):
        view.append_text(text, speaker, t)
    view.end_turn("user", 0.5)  # come late: between "one" and "two"
    assert view.conversation_text(0) == "Hi\nYou: one\nYou: two\nMoshi: so"
    view.append_text(" three", "user", 1.0)  # after "two", before Moshi's "so": the turn "two" began goes on
    assert view.conversation_text(0) == "Hi\nYou: one\nYou: two three\nMoshi: so"
