"""`run_cli`: what every command-line entry point (`python -m moshi_mlx.run`, `moshi_mlx.bench`, `quantize`,
`app`, and their console scripts) does around its `main()`."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import NoReturn

from ..cpu.blas import maybe_reexec
from ..mlx_thread import exit_process
from .signals import exit_code, stop_on_signals


def run_cli(main: Callable[[], int]) -> NoReturn:
    """What a command-line entry point (`python -m ...` or a console script) does: re-execute on
    OpenBLAS when that helps, run `main()` with SIGTERM / SIGHUP stopping it as Ctrl-C does
    (signals.py), then exit with its status once every MLX thread has ended (moshi_mlx.mlx_thread)."""
    maybe_reexec()
    try:
        with stop_on_signals():
            code = main()
    except KeyboardInterrupt as e:  # one that main() did not handle (while importing, say)
        code = exit_code(e)
    except Exception:  # a bug: reported as Python would, then the process ends as cleanly as any other
        traceback.print_exc()
        code = 1
    exit_process(code)
