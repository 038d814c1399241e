"""The app with the real FrameModel (MoshiPipeline) built from a folder: the tiny random-weight
model in tests/assets/e2e (Kyutai MLX repository layout), the fake sound card, the real ModelLoop."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings  # noqa: E402

from app import controller as c  # noqa: E402
from app.dialogs import Dialogs  # noqa: E402
from app.models import frame_model_factory, resolve_folder  # noqa: E402
from app.presenter import Presenter  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.window import MainWindow  # noqa: E402
from support import ASSETS  # noqa: E402
from support.app_fakes import LiveFakeBackend  # noqa: E402

E2E = ASSETS / "e2e"


def _open(qtbot, tmp_path: Path, folder: Path, backend, model_factory=None):
    """The window over a local folder, with the real controller and presenter (as the app starts)."""
    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.local_folder = str(folder)
    window = MainWindow()
    dialogs = Dialogs(window)
    ctl = c.Controller(audio_backend=backend, recordings=tmp_path / "rec", parent=window)
    kw = {} if model_factory is None else {"model_factory": model_factory}
    presenter = Presenter(window, ctl, settings, dialogs, device_poll_ms=0, **kw)
    qtbot.addWidget(window, before_close_func=lambda _w: presenter.shutdown())
    return window, dialogs, ctl, presenter


def test_real_pipeline_talks_through_the_window(qtbot, tmp_path: Path) -> None:
    before = sorted(t.name for t in threading.enumerate())
    built_on: list[str] = []

    def factory(files, temperature):
        build = frame_model_factory(files, temperature)  # the app's own factory: MoshiPipeline.from_files
        return lambda: built_on.append(threading.current_thread().name) or build()

    window, dialogs, ctl, presenter = _open(qtbot, tmp_path, E2E, LiveFakeBackend(speed=2.0), factory)
    stats = []
    ctl.stats.connect(stats.append)
    texts = []
    ctl.text.connect(texts.append)
    window.show()
    assert window.status.model_label.text() == "e2e"
    for _ in range(2):  # a second conversation reuses the loaded model
        window.start_button.click()
        qtbot.waitUntil(lambda: ctl.state == c.RUNNING, timeout=60_000)
        n = len(stats)
        qtbot.waitUntil(lambda n=n: len(stats) > n + 40, timeout=60_000)
        window.start_button.click()
        qtbot.waitUntil(lambda: ctl.state == c.READY, timeout=30_000)
        assert not dialogs.open_boxes, [b.informativeText() for b in dialogs.open_boxes]
    assert built_on == ["moshi-model-loop"]
    assert (window.status.model_label.text(), window.status.quant_label.text()) == ("e2e", "4-bit")
    assert all(s.output_db > -100 for s in stats if s.frame > 4), "the decoder speaks once the delays have filled"
    # the window shows exactly the text the model produced, as recorded with its timing
    rec = [json.loads(x) for x in (ctl.last_recording / "transcript.jsonl").read_text().splitlines()]
    words = [x["word"] for x in rec if "word" in x]
    assert words, "the random-weight model should say something in 40 frames"
    assert window.transcript.last_conversation_text().split() == words  # whole words, not pieces
    assert "".join(texts).replace(" ", "") == window.transcript.transcript_text().replace(" ", "").replace("\n", "")
    assert presenter.shutdown()
    assert sorted(t.name for t in threading.enumerate()) == before


def test_folder_with_a_broken_config_gives_a_dialog(qtbot, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "broken"
    shutil.copytree(E2E, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["dim"] = 96  # the weights are 128 wide
    (folder / "config.json").write_text(json.dumps(cfg))
    assert resolve_folder(folder).files.config == folder / "config.json"
    window, dialogs, ctl, presenter = _open(qtbot, tmp_path, folder, LiveFakeBackend())
    window.start_button.click()
    qtbot.waitUntil(lambda: bool(dialogs.open_boxes), timeout=60_000)
    box = dialogs.open_boxes[-1]
    assert box.text() == "Could not load the model" and "Traceback" not in box.informativeText()
    assert len(box.informativeText()) > 20, box.informativeText()
    assert "--" not in box.informativeText(), "the window's words, not the command line's"
    qtbot.waitUntil(lambda: ctl.state == c.IDLE, timeout=10_000)
    assert presenter.shutdown()


def test_a_hibiki_folder_runs_in_translate_mode_and_shows_the_english_as_spoken(qtbot, tmp_path: Path) -> None:
    from support.hibiki import make_hibiki_folder

    folder = make_hibiki_folder(tmp_path / "hibiki-1b-mlx-bf16")
    built = []

    def factory(files, temperature):
        build = frame_model_factory(files, temperature)  # the app's own factory
        return lambda: built.append(build()) or built[-1]

    window, dialogs, ctl, presenter = _open(qtbot, tmp_path, folder, LiveFakeBackend(speed=2.0), factory)
    texts = []
    ctl.text.connect(texts.append)
    window.show()
    window.start_button.click()
    qtbot.waitUntil(lambda: ctl.state == c.RUNNING, timeout=60_000)
    assert window.status.model_label.toolTip() == "Model: hibiki-1b-mlx-bf16 · translates French to English"
    qtbot.waitUntil(lambda: len("".join(texts).split()) > 3, timeout=60_000)
    window.start_button.click()
    qtbot.waitUntil(lambda: ctl.state == c.READY, timeout=30_000)
    assert not dialogs.open_boxes, [b.informativeText() for b in dialogs.open_boxes]
    assert type(built[0]).__name__ == "TranslationPipeline" and built[0].lm.cfg.model_type == "hibiki"
    assert "".join(texts).replace(" ", "") in window.transcript.transcript_text().replace(" ", "").replace("\n", "")
    assert presenter.shutdown()


def test_a_temporary_folder_mlx_cannot_use_is_a_load_dialog(qtbot, tmp_path: Path, monkeypatch) -> None:
    """MLX compiles its CPU kernels in TMPDIR at the first step: the app now says a TMPDIR it cannot use when
    the model loads ("Could not load the model", naming TMPDIR), as the command line does before loading."""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("TMPDIR", str(tmp_path / "a-file"))
    window, dialogs, ctl, presenter = _open(qtbot, tmp_path, ASSETS / "e2e", LiveFakeBackend())
    window.start_button.click()
    qtbot.waitUntil(lambda: bool(dialogs.open_boxes), timeout=60_000)
    box = dialogs.open_boxes[-1]
    assert box.text() == "Could not load the model" and "TMPDIR" in box.informativeText(), box.informativeText()
    qtbot.waitUntil(lambda: ctl.state == c.IDLE, timeout=10_000)
    assert presenter.shutdown()
