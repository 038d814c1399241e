"""`python -m moshi_mlx` is the local dialog (`python -m moshi_mlx.run`)."""

from .run import cli

cli()
