"""Helpers shared by several test modules (import as `from support.x import ...`; tests/ is on sys.path).

arrays.py: closeness checks; signals.py: test audio; cli.py: running our programs as a person does;
disk.py: a small disk; models.py: model folders made at test time; lm.py: the small LM's files and
goldens; fake_models.py, app_fakes.py, app_window.py: fakes for the loop and the app."""

from pathlib import Path

ASSETS = Path(__file__).resolve().parents[1] / "assets"  # committed fixtures (tests/reference makes them)
