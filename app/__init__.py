"""Moshi desktop app (Qt): `python -m app` or `moshi-mlx-app`."""
