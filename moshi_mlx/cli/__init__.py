"""What every front end's process needs (`moshi_mlx.run`, `moshi_mlx.bench`, `quantize`, `app`): `run_cli`
around its main() (entry.py: OpenBLAS re-exec, signals, a clean exit), an argument parser that reports
one-line errors (args.py), signals mapped to exit codes (signals.py) and a library error's hint worded as
flags (wording.py). Nothing below the front ends imports this folder."""
