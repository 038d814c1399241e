"""Runs the real app window on a real X display (Xvfb) during a fake conversation and grabs it.

Usage: python tests/support/screenshot_app.py OUT_DIR   (DISPLAY must point at an X server)
Writes OUT_DIR/window.png (the X server's pixels: QScreen.grabWindow) and OUT_DIR/info.json
(transcript text, widget geometry) for tests/test_app_screenshot.py; then the same as window-min.png and
info-min.json with the window at its minimum size.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

SCRIPTS = [
    "Hello, I'm Moshi. How are you doing today?",
    "Oh, that sounds like a lovely trip. What did you like most about Lisbon? The food, the light, or the music?",
]


def main(out: Path) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "xcb")
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from app import controller as c
    from app.dialogs import Dialogs
    from app.presenter import Presenter
    from app.settings import AppSettings
    from app.window import MainWindow
    from moshi_mlx.loading import hub
    from support.app_fakes import ConversationModel, LiveFakeBackend, write_fake_weights

    qapp = QApplication([sys.argv[0]])
    tmp = Path(tempfile.mkdtemp(prefix="moshi-shot-"))
    settings = AppSettings(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    weights = write_fake_weights(tmp / "hub")

    def resolver(choice, progress, cancelled):  # as if already downloaded: the status shows the release
        return hub.ModelFiles(*(weights / n for n in choice.files), None, choice.quant, choice.repo)

    model = ConversationModel(SCRIPTS, every=2)
    window = MainWindow()
    ctl = c.Controller(audio_backend=LiveFakeBackend(speed=1.0), recordings=tmp / "rec", parent=window)
    presenter = Presenter(
        window,
        ctl,
        settings,
        Dialogs(window),
        model_factory=lambda f, t: lambda: model,
        resolver=resolver,
        device_poll_ms=0,
    )
    window.show()

    def pump_until(cond, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit(f"timed out; state {ctl.state}, transcript {window.transcript.toPlainText()!r}")
            qapp.processEvents()
            time.sleep(0.005)

    window.start_button.click()
    pump_until(lambda: window.transcript.transcript_text().endswith("today?"))
    window.start_button.click()
    pump_until(lambda: ctl.state == c.READY)
    window.start_button.click()
    pump_until(lambda: "the light," in window.transcript.transcript_text())
    end = time.monotonic() + 0.3
    pump_until(lambda: time.monotonic() > end)
    ok = _grab(window, qapp, out, "")
    window.resize(1, 1)  # as small as its layout lets it be
    end = time.monotonic() + 0.3
    pump_until(lambda: time.monotonic() > end)
    ok = _grab(window, qapp, out, "-min") and ok
    presenter.shutdown()
    window.close()
    return 0 if ok else 1


def _grab(window, qapp, out: Path, suffix: str) -> bool:
    screen = window.screen()
    shot = screen.grabWindow(window.winId())
    ok = shot.save(str(out / f"window{suffix}.png"), "PNG")
    tr = window.transcript
    info = {
        "saved": ok,
        "platform": qapp.platformName(),
        "dpr": shot.devicePixelRatio(),
        "window": [window.width(), window.height()],
        "transcript_text": tr.toPlainText(),
        "transcript_rect": _rect(tr, window),
        "button_rect": _rect(window.start_button, window),
        "button_text": window.start_button.text(),
        "meters_rect": _rect(window.meters, window),
        "status_rect": _rect(window.status, window),
        "settings_rect": _rect(window.settings_panel, window),
        "input_level": window.meters.input.level_db,
        "output_level": window.meters.output.level_db,
        "status": [window.status.model_label.text(), window.status.quant_label.text(), window.status.rtf_label.text()],
    }
    (out / f"info{suffix}.json").write_text(json.dumps(info, indent=1))
    return ok


def _rect(widget, window) -> list[int]:
    p = widget.mapTo(window, widget.rect().topLeft())
    return [p.x(), p.y(), widget.width(), widget.height()]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
