"""`python -m app` / `moshi-mlx-app`: the desktop app."""

from __future__ import annotations

import signal
import sys
import traceback

from moshi_mlx.cli.signals import SIGNALS
from moshi_mlx.cli.args import CliParser


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="moshi-mlx-app", description="Talk with Moshi in a window.")
    parser.add_argument("--reset-settings", action="store_true", help="forget remembered choices first")
    args, qt_args = parser.parse_known_args(argv)
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
    except ImportError:
        print("moshi-mlx-app needs Qt: pip install 'moshi-mlx-local[app]'", file=sys.stderr)
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

    def excepthook(kind, value, tb) -> None:  # a bug in a slot: tell the user, keep running
        traceback.print_exception(kind, value, tb)
        dialogs.error("Something went wrong", f"{kind.__name__}: {value}")

    previous = sys.excepthook, {s: signal.getsignal(s) for s in (signal.SIGINT, *SIGNALS)}
    sys.excepthook = excepthook
    # Ctrl+C in the terminal (and SIGTERM, SIGHUP) closes the window like the close button (Qt's loop
    # would swallow it): a timer lets the interpreter run its signal handler now and then.
    stopped_by: list[int] = []

    def stop(signum, _frame) -> None:
        if window.close():
            stopped_by.append(signum)

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
    return 128 + stopped_by[0] if stopped_by and not code else int(code)  # 130 after Ctrl+C, as the CLI


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from moshi_mlx.cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
