"""One app window wired as `python -m app` wires it, with fakes where a test needs them (PySide6 needed)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from app import controller as c
from app.dialogs import Dialogs
from app.presenter import Presenter
from app.settings import AppSettings
from app.window import MainWindow

from .app_fakes import LiveFakeBackend, ScriptModel, write_fake_weights

WAIT_MS = 15_000


class App:
    """One window wired as `python -m app` wires it, with fakes where a test needs them."""

    def __init__(self, qtbot, tmp_path: Path, backend=None, factory=None, resolver=None, folder: bool = True) -> None:
        self.tmp = tmp_path
        self.settings = AppSettings(QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat))
        if folder:
            self.settings.local_folder = str(write_fake_weights(tmp_path / "weights"))
        self.backend = backend or LiveFakeBackend()
        self.models: list[ScriptModel] = []
        self.window = MainWindow()
        # closed by the test or, after it, by qtbot: not a person quitting, so nothing to ask
        qtbot.addWidget(self.window, before_close_func=lambda _w: self.presenter.shutdown())
        self.dialogs = Dialogs(self.window)
        self.ctl = c.Controller(audio_backend=self.backend, recordings=tmp_path / "recordings", parent=self.window)
        kw = {"resolver": resolver} if resolver else {}
        self.presenter = Presenter(
            self.window,
            self.ctl,
            self.settings,
            self.dialogs,
            model_factory=factory or self.factory,
            device_poll_ms=0,
            **kw,
        )
        self.qtbot = qtbot
        self.window.show()

    def factory(self, files, temperature):
        def build() -> ScriptModel:
            self.models.append(ScriptModel())
            return self.models[-1]

        return build

    def wait_state(self, state: str, timeout: int = WAIT_MS) -> None:
        self.qtbot.waitUntil(lambda: self.ctl.state == state, timeout=timeout)

    def wait_error(self, timeout: int = WAIT_MS):
        self.qtbot.waitUntil(lambda: bool(self.dialogs.open_boxes), timeout=timeout)
        return self.dialogs.open_boxes[-1]

    def close(self) -> None:
        assert self.presenter.shutdown()


class RealModelApp:
    """A window wired as the app wires it, with the real model factory, keeping the personas it is given and the
    models it builds. `presenter_kw`: the Presenter's other arguments (user_model...)."""

    def __init__(self, qtbot, settings: AppSettings, tmp_path: Path, **presenter_kw) -> None:
        from app.models import frame_model_factory

        self.settings = settings
        self.window = MainWindow()
        qtbot.addWidget(self.window, before_close_func=lambda _w: self.presenter.shutdown())
        self.dialogs = Dialogs(self.window)
        self.ctl = c.Controller(
            audio_backend=LiveFakeBackend(speed=2.0), recordings=tmp_path / "rec", parent=self.window
        )
        self.personas: list = []
        self.built: list = []

        def factory(files, temperature, persona=None):
            self.personas.append(persona)
            build = frame_model_factory(files, temperature, persona)

            def keep():
                self.built.append(build())
                return self.built[-1]

            return keep

        self.presenter = Presenter(
            self.window, self.ctl, settings, self.dialogs, model_factory=factory, device_poll_ms=0, **presenter_kw
        )
        self.window.show()
