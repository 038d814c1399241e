"""A live dialog: the model loop (loop.py, the one thread that owns MLX), its events and protocols
(events.py), output pacing (pacing.py), the echo canceller (echo.py), the recorder (recorder.py); and the
terminal's runs of it, which `python -m moshi_mlx.run` wires: the console view of the events (console.py),
a live conversation (live.py), a run over an audio file (file_mode.py)."""
