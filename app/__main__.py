"""`python -m app` / `moshi-mlx-app`: the desktop app."""

from __future__ import annotations

import signal
import sys
import traceback
from collections.abc import Callable

from moshi_mlx.cli.args import CliParser, print_error
from moshi_mlx.cli.signals import SIGNALS, signal_status


class Stops:
    """Ctrl+C, SIGTERM and SIGHUP from the moment the app starts. Until the window can act on one it is only
    noted (a signal while Qt loads must not vanish into a Qt callback), then `on_stop`'s action runs once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._action: Callable[[], None] | None = None
        self._previous = {s: signal.getsignal(s) for s in (signal.SIGINT, *SIGNALS)}
        for s in self._previous:
            signal.signal(s, self._handle)

    def _handle(self, signum: int, _frame) -> None:
        if self.signum is None:
            self.signum = signum
            if self._action is not None:
                self._action()

    def on_stop(self, action: Callable[[], None]) -> None:
        """Runs `action` at the first stop signal: now, if one came already."""
        self._action = action
        if self.signum is not None:
            action()

    def restore(self) -> None:
        for s, h in self._previous.items():
            if h is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(s, h)


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="moshi-mlx-app", description="Talk with Moshi in a window.")
    parser.add_argument("--reset-settings", action="store_true", help="forget remembered choices first")
    args, qt_args = parser.parse_known_args(argv)
    stops = Stops()
    try:
        try:
            from PySide6.QtWidgets import QApplication
        except ImportError:
            print_error("moshi-mlx-app needs Qt: pip install 'moshi-mlx-local[app]'")
            return 2
        from .controller import Controller
        from .dialogs import Dialogs
        from .presenter import Presenter
        from .settings import AppSettings
        from .window import MainWindow

        app = QApplication.instance()
        if app is None:
            app = QApplication([sys.argv[0], *qt_args])
            unknown = app.arguments()[1:]  # Qt took its own options (-style, -platform...); it ignores the rest
            if unknown:
                print_error(f"unrecognized arguments: {' '.join(unknown)} (see --help)")
                return 2
        app.setOrganizationName("moshi-mlx")
        app.setApplicationName("Moshi")
        settings = AppSettings()
        if args.reset_settings:
            settings.clear()
        window = MainWindow()
        dialogs = Dialogs(window)
        controller = Controller(parent=window)
        presenter = Presenter(window, controller, settings, dialogs)
        return run_window(app, window, presenter, dialogs, stops)
    finally:
        stops.restore()


def run_window(app, window, presenter, dialogs, stops: Stops | None = None) -> int:
    """Shows `window` and runs Qt's loop until the app quits; its exit status.

    A stop signal (Ctrl+C in the terminal, SIGTERM at logout, SIGHUP) closes the app without a question
    nobody may be there to answer: conversations not saved keep their recordings on disk, and stderr says
    where. The status is then 128 + the signal's number (130, 143, 129), as the command line's.
    """
    from PySide6.QtCore import QTimer

    own_stops = stops is None
    stops = Stops() if stops is None else stops

    def excepthook(kind, value, tb) -> None:  # a bug in a slot: tell the user, keep running
        traceback.print_exception(kind, value, tb)
        dialogs.error("Something went wrong", f"{kind.__name__}: {value}")

    previous_hook, sys.excepthook = sys.excepthook, excepthook
    kept: list = []

    def stop() -> None:
        kept.append(presenter.quit_without_asking())
        QTimer.singleShot(0, app.quit)  # also when the loop has not started yet: it quits as it starts

    # Qt's loop would hold the signals back: a timer lets the interpreter run its handler now and then.
    tick = QTimer(window)
    tick.timeout.connect(lambda: None)
    tick.start(250)
    try:
        stops.on_stop(stop)
        if stops.signum is None:
            window.show()
        code = app.exec()
        presenter.shutdown()
    finally:
        sys.excepthook = previous_hook
        if own_stops:
            stops.restore()
    if stops.signum is None:
        return int(code)
    if kept and kept[0] is not None:
        print(
            f"stopped: the conversations not saved are kept in {kept[0]} (the app would have asked to save them)",
            file=sys.stderr,
        )
    return signal_status(stops.signum)


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from moshi_mlx.cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
