"""`python -m moshi_mlx.bench <model>` (see moshi_mlx/bench/__init__.py)."""

from . import cli

cli()
