"""`python -m app` / `moshi-mlx-app`: the desktop app."""

from __future__ import annotations

import argparse
import sys
import traceback


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="moshi-mlx-app", description="Talk with Moshi in a window.")
    parser.add_argument("--reset-settings", action="store_true", help="forget remembered choices first")
    args, qt_args = parser.parse_known_args(argv)
    try:
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
        settings._s.clear()  # noqa: SLF001
    window = MainWindow()
    dialogs = Dialogs(window)
    controller = Controller(parent=window)
    presenter = Presenter(window, controller, settings, dialogs)

    def excepthook(kind, value, tb) -> None:  # a bug in a slot: tell the user, keep running
        traceback.print_exception(kind, value, tb)
        dialogs.error("Something went wrong", f"{kind.__name__}: {value}")

    sys.excepthook = excepthook
    window.show()
    code = app.exec()
    presenter.shutdown()
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
