"""A live dialog: the model loop (the one thread that owns MLX), its events and protocols, the echo
canceller, the recorder and the console view of the events."""
