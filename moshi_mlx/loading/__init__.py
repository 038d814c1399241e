"""Files to ready models: hub.py finds or downloads a release (the only downloader), memory.py says what
fits in memory, lm.py and mimi.py load the weights strictly into `Lm` and `Mimi`."""
