"""The app with a PersonaPlex model: the persona box (voice picker, role), remembered, fed to the real pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402

from app import controller as c  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from support import ASSETS  # noqa: E402
from support.app_window import RealModelApp  # noqa: E402
from support.personaplex import ASSETS as PLEX  # noqa: E402
from support.personaplex import personaplex_folder  # noqa: E402

ROLE = "You are a pirate who sells boats."


def _settings(tmp_path: Path, folder: Path) -> AppSettings:
    s = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    s.local_folder = str(folder)
    return s


def test_a_voice_and_a_role_are_chosen_fed_and_remembered(qtbot, tmp_path: Path) -> None:
    folder = personaplex_folder(tmp_path / "personaplex")
    settings = _settings(tmp_path, folder)
    a = RealModelApp(qtbot, settings, tmp_path)
    w = a.window
    assert w.persona_box.isEnabled() and w.persona_voice_combo.currentData() == "NATF2"
    a.dialogs.choose_file = lambda *_a, **_k: str(PLEX / "voice.wav")  # the file dialog: a person picks voice.wav
    w.persona_voice_file.click()
    assert w.persona_voice_combo.currentText() == "voice.wav" and settings.persona_voice == str(PLEX / "voice.wav")
    w.role_edit.clear()
    qtbot.keyClicks(w.role_edit, ROLE)
    qtbot.keyClick(w.role_edit, Qt.Key.Key_Return)
    assert settings.role == ROLE

    w.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.RUNNING, timeout=60_000)
    stats: list = []
    a.ctl.stats.connect(stats.append)
    qtbot.waitUntil(lambda: len(stats) > 20, timeout=60_000)
    w.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.READY, timeout=30_000)
    assert not a.dialogs.open_boxes, [b.informativeText() for b in a.dialogs.open_boxes]
    (voice, role), = a.personas  # fmt: skip
    assert (voice.name, voice.audio is not None, role) == ("voice", True, ROLE)
    assert any(s.output_db > -100 for s in stats), "Moshi speaks after the prompt"
    assert a.presenter.shutdown()
    w.close()

    settings.sync()
    again = RealModelApp(qtbot, _settings(tmp_path, folder), tmp_path)  # the next run of the app
    assert again.window.persona_voice_combo.currentData() == str(PLEX / "voice.wav")
    assert again.window.role_edit.text() == ROLE
    again.window.persona_voice_combo.setCurrentIndex(again.window.persona_voice_combo.findData("NATF2"))
    assert again.presenter.settings.persona_voice == "NATF2"


def test_a_moshi_model_has_no_persona_box(qtbot, tmp_path: Path) -> None:
    a = RealModelApp(qtbot, _settings(tmp_path, ASSETS / "e2e"), tmp_path)
    assert not a.window.persona_box.isEnabled()


def test_a_voice_that_is_gone_says_so_in_a_dialog(qtbot, tmp_path: Path) -> None:
    settings = _settings(tmp_path, personaplex_folder(tmp_path / "personaplex"))
    settings.persona_voice = str(tmp_path / "gone.wav")
    a = RealModelApp(qtbot, settings, tmp_path)
    a.window.start_button.click()
    qtbot.waitUntil(lambda: bool(a.dialogs.open_boxes), timeout=30_000)
    box = a.dialogs.open_boxes[-1]
    assert box.text() == "Voice problem" and "gone.wav" in box.informativeText()
    assert "Persona (PersonaPlex) → Voice" in box.informativeText()
    assert a.personas == [] and a.ctl.state != c.LOADING


def test_a_folder_without_presets_offers_no_voice_prompt(qtbot, tmp_path: Path) -> None:
    from moshi_mlx.release import DEFAULT_ROLE

    a = RealModelApp(qtbot, _settings(tmp_path, personaplex_folder(tmp_path / "bare", voices=False)), tmp_path)
    combo = a.window.persona_voice_combo
    assert [combo.itemText(i) for i in range(combo.count())] == ["No voice prompt"]
    a.window.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.RUNNING, timeout=60_000)
    a.window.start_button.click()
    qtbot.waitUntil(lambda: a.ctl.state == c.READY, timeout=30_000)
    assert a.personas == [(None, DEFAULT_ROLE)] and not a.dialogs.open_boxes
