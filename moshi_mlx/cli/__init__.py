"""What every front end's process needs (`moshi_mlx.run`, `moshi_mlx.bench`, `quantize`, `app`): `run_cli`
around its main() (entry.py: OpenBLAS re-exec, signals, a clean exit), an argument parser that reports
one-line errors (args.py), signals mapped to exit codes (signals.py), the check of the temporary folder
MLX compiles into (tempdir.py) and a library error's hint worded as flags (wording.py). Only the front ends
and the terminal's file-mode run (dialog/file_mode.py) import this folder."""
