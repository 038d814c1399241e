"""The app showing and saving the user's words when the model transcribes them (run --transcribe-user's model)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from app import controller as c  # noqa: E402
from moshi_mlx.dialog.events import FrameResult  # noqa: E402
from support.app_fakes import ScriptModel  # noqa: E402
from support.app_window import WAIT_MS, App  # noqa: E402

HEARD = {1: "hello", 3: " there"}  # the user's words, by frame (the model's text stream: a space starts a word)


class TwoSidedModel(ScriptModel):
    """ScriptModel (Moshi says a word every 2 frames) whose STT side hears "hello there" at frames 1 and 3."""

    user_lag_s = 0.03  # the STT model's delay: its words come this long after they were said

    def step(self, pcm) -> FrameResult:
        k = self.steps
        result = super().step(pcm)
        if k in HEARD:
            done = "hello" if k == 3 else None
            return result._replace(user_text=HEARD[k], user_word=done, user_word_start=True)
        return result

    def flush_user_word(self) -> str | None:
        return "there" if self.steps > 3 else None


def test_the_users_words_show_as_their_own_turns_and_are_saved_with_their_times(qtbot, tmp_path: Path) -> None:
    a = App(qtbot, tmp_path, factory=lambda files, temperature: TwoSidedModel)
    try:
        w = a.window
        w.start_button.click()
        a.wait_state(c.RUNNING)
        a.qtbot.waitUntil(lambda: "YOU" in w.transcript.toPlainText(), timeout=WAIT_MS)
        a.qtbot.waitUntil(lambda: "MOSHI" in w.transcript.toPlainText(), timeout=WAIT_MS)
        w.start_button.click()
        a.wait_state(c.READY)
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
