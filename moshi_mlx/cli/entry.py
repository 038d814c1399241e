"""`run_cli`: what every command-line entry point (`python -m moshi_mlx.run`, `moshi_mlx.bench`, `quantize`,
`app`, and their console scripts) does around its `main()`."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn

from ..cpu.blas import maybe_reexec
from ..mlx_thread import exit_process
from .signals import Interrupted, exit_code, stop_came, stop_on_signals, stopped

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a program its pipe's reader stopped


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
    except BrokenPipeError:  # the reader of our output went away (`... | head`): end quietly, as on SIGPIPE
        _drop_stdout()
        code = SIGPIPE_EXIT
    except Exception:
        if (signum := stop_came()) is not None:  # the stop's doing (numpy makes a Ctrl-C in its import an ImportError)
            code = stopped(Interrupted(signum))
        else:  # a bug: reported as Python would, then the process ends as cleanly as any other
            traceback.print_exc()
            code = 1
    exit_process(code)


def _drop_stdout() -> None:
    """Point standard output at /dev/null: what is still buffered would fail again when Python flushes it
    at exit (the documented way out of a broken pipe)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
