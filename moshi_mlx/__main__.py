"""`python -m moshi_mlx` is the local dialog (`python -m moshi_mlx.run`)."""

import sys

from .run import main

sys.exit(main())
