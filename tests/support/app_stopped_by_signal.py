"""The real app (fake sound card and model) after one conversation, run as `python -m app` runs it, until a
stop signal: tests/test_exit.py sends it and checks what the app keeps.

Usage: python tests/support/app_stopped_by_signal.py TMP   (prints "ready" once the conversation is on
screen and the app listens for signals)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main(tmp: Path) -> int:
    from PySide6.QtCore import QSettings, QTimer
    from PySide6.QtWidgets import QApplication

    from app import controller as c
    from app.__main__ import run_window
    from app.dialogs import Dialogs
    from app.presenter import Presenter
    from app.settings import AppSettings
    from app.window import MainWindow
    from moshi_mlx.loading import hub
    from support.app_fakes import ConversationModel, LiveFakeBackend, write_fake_weights

    qapp = QApplication([sys.argv[0]])
    settings = AppSettings(QSettings(str(tmp / "s.ini"), QSettings.Format.IniFormat))
    weights = write_fake_weights(tmp / "hub")

    def resolver(choice, progress, cancelled):
        return hub.ModelFiles(*(weights / n for n in choice.files), None, choice.quant, choice.repo)

    window = MainWindow()
    ctl = c.Controller(audio_backend=LiveFakeBackend(speed=1.0), parent=window)  # recordings in a temporary folder
    dialogs = Dialogs(window)
    presenter = Presenter(
        window,
        ctl,
        settings,
        dialogs,
        model_factory=lambda f, t: lambda: ConversationModel(["Hello, I'm Moshi. How are you doing today?"], every=2),
        resolver=resolver,
        device_poll_ms=0,
    )
    window.show()
    window.start_button.click()
    deadline = time.monotonic() + 30
    while not window.transcript.transcript_text().endswith("today?"):
        if time.monotonic() > deadline:
            return 3
        qapp.processEvents()
        time.sleep(0.005)
    QTimer.singleShot(0, lambda: print("ready", flush=True))  # inside Qt's loop: the app's handlers are set
    return run_window(qapp, window, presenter, dialogs)


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
