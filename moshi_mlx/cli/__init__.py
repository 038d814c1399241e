"""What every front end's process needs (`moshi_mlx.run`, `moshi_mlx.bench`, `quantize`, `app`): `run_cli`
around its main() (entry.py: OpenBLAS re-exec, signals, a clean exit), an argument parser that reports
one-line errors (args.py), signals mapped to exit codes (signals.py), a quiet Ctrl-C while a program starts
(start.py, imported first by the packages that hold our programs), the checks before loading of the temporary
folder MLX compiles into (tempdir.py) and of the model's settings from the environment (settings.py), and a
library error's hint worded as flags (wording.py). Only the front ends, the packages' first import
(start.py) and the terminal's file-mode run (dialog/file_mode.py) import this folder."""
