"""Moshi desktop app (Qt): `python -m app` or `moshi-mlx-app`."""

from moshi_mlx.cli import start as _start  # noqa: F401 (first: a Ctrl-C while it starts ends it quietly)
