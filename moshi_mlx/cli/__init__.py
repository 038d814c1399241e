"""What every front end's process needs (`moshi_mlx.run`, `moshi_mlx.bench`, `quantize`, `app`): an argument
parser that reports one-line errors (args.py) and signals mapped to exit codes (signals.py)."""
