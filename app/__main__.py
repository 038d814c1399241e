"""`python -m app` / `moshi-mlx-app`: the desktop app."""

from __future__ import annotations

import signal
import sys
import traceback

from moshi_mlx.cli.args import CliParser, print_error
from moshi_mlx.cli.signals import SIGNALS, signal_status


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="moshi-mlx-app", description="Talk with Moshi in a window.")
    parser.add_argument("--reset-settings", action="store_true", help="forget remembered choices first")
    args, qt_args = parser.parse_known_args(argv)
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

    app = QApplication.instance() or QApplication([sys.argv[0], *qt_args])
    app.setOrganizationName("moshi-mlx")
    app.setApplicationName("Moshi")
    settings = AppSettings()
    if args.reset_settings:
        settings.clear()
    window = MainWindow()
    dialogs = Dialogs(window)
    controller = Controller(parent=window)
    presenter = Presenter(window, controller, settings, dialogs)

    return run_window(app, window, presenter, dialogs)


def run_window(app, window, presenter, dialogs) -> int:
    """Shows `window` and runs Qt's loop until the app quits; its exit status.

    A stop signal (Ctrl+C in the terminal, SIGTERM at logout, SIGHUP) closes the app without a question
    nobody may be there to answer: conversations not saved keep their recordings on disk, and stderr says
    where. The status is then 128 + the signal's number (130, 143, 129), as the command line's.
    """
    from PySide6.QtCore import QTimer

    def excepthook(kind, value, tb) -> None:  # a bug in a slot: tell the user, keep running
        traceback.print_exception(kind, value, tb)
        dialogs.error("Something went wrong", f"{kind.__name__}: {value}")

    previous = sys.excepthook, {s: signal.getsignal(s) for s in (signal.SIGINT, *SIGNALS)}
    sys.excepthook = excepthook
    # Qt's loop would swallow the signals: a timer lets the interpreter run its handler now and then.
    stopped_by: list[int] = []
    kept: list = []

    def stop(signum, _frame) -> None:
        if not stopped_by:
            stopped_by.append(signum)
            kept.append(presenter.quit_without_asking())

    for s in previous[1]:
        signal.signal(s, stop)
    tick = QTimer(window)
    tick.timeout.connect(lambda: None)
    tick.start(250)
    window.show()
    try:
        code = app.exec()
        presenter.shutdown()
    finally:
        sys.excepthook = previous[0]
        for s, h in previous[1].items():
            if h is not None:
                signal.signal(s, h)
    if not stopped_by:
        return int(code)
    if kept and kept[0] is not None:
        print(
            f"stopped: the conversations not saved are kept in {kept[0]} (the app would have asked to save them)",
            file=sys.stderr,
        )
    return signal_status(stopped_by[0])


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from moshi_mlx.cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
