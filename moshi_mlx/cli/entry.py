"""`run_cli`: what every command-line entry point (`python -m moshi_mlx.run`, `moshi_mlx.bench`, `quantize`,
`app`, and their console scripts) does around its `main()`."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from typing import NoReturn

from ..cpu.blas import maybe_reexec
from ..mlx_thread import exit_process
from ..outputs import write_failure
from .args import print_error
from .signals import Interrupted, blocked_across_exec, stop_came, stop_on_signals, stopped

SIGPIPE_EXIT = 128 + 13  # what a shell reports for a program its pipe's reader stopped


def run_cli(main: Callable[[], int]) -> NoReturn:
    """What a command-line entry point (`python -m ...` or a console script) does: re-execute on
    OpenBLAS when that helps, run `main()` with SIGTERM / SIGHUP stopping it as Ctrl-C does
    (signals.py), then exit with its status once every MLX thread has ended (moshi_mlx.mlx_thread)."""
    _open_closed_std_streams()
    warnings.showwarning = _warn
    with blocked_across_exec():
        maybe_reexec()
    sys.stdout = _Stdout(sys.stdout)
    sys.stderr = _Stderr(sys.stderr)
    try:
        with stop_on_signals():
            code = main()
            sys.stdout.flush()  # what is still buffered fails here, not in the interpreter's exit
    except KeyboardInterrupt as e:  # one that main() did not handle (a benchmark's, or while importing)
        code = stopped(e)
    except BrokenPipeError:  # the reader of our output went away (`... | head`): end quietly, as on SIGPIPE
        _drop_stdout()
        code = SIGPIPE_EXIT
    except StdoutError as e:  # `> file` on a full disk, say: the output is lost, and that is said
        _drop_stdout()
        print_error(f"cannot write to standard output: {write_failure(e)}")
        code = 1
    except Exception:
        if (signum := stop_came()) is not None:  # the stop's doing (numpy makes a Ctrl-C in its import an ImportError)
            code = stopped(Interrupted(signum))
        else:  # a bug: reported as Python would, then the process ends as cleanly as any other
            traceback.print_exc()
            code = 1
    exit_process(code)


def _warn(message, category, filename, lineno, file=None, line=None) -> None:
    """A warning as a person reads it: `warning: ...`, one line (not the library's file, line and source)."""
    print(f"warning: {message}", file=sys.stderr if file is None else file)


class StdoutError(OSError):
    """A write to standard output failed (other than a closed pipe): a full disk behind `> file`, say."""


class _Stdout:
    """sys.stdout, whose failed writes raise StdoutError: said in one line by run_cli, never a traceback."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._guard(self._stream.write, text)

    def flush(self) -> None:
        self._guard(self._stream.flush)

    def _guard(self, call, *args):
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as e:
            raise StdoutError(e.errno, e.strerror) from None
        except UnicodeEncodeError as e:  # nothing of the text was written (it is encoded whole first)
            char = e.object[e.start : e.start + 1]
            raise StdoutError(
                None,
                f"its encoding ({e.encoding}) has no {char!r}: set PYTHONIOENCODING=utf-8, or write to a file",
            ) from None

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


STDOUT_ERRORS = (BrokenPipeError, StdoutError)  # what a print to standard output raises when it cannot be written


def _open_closed_std_streams() -> None:
    """A standard stream the shell closed (`>&-`, `2>&-`, `<&-`) reads and writes /dev/null, as Python's own
    print() treats a closed stream (sys.stdout is None); code that flushes or reads one would fail."""
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        if getattr(sys, name) is not None:
            continue
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
        setattr(sys, name, open(fd, mode, closefd=False))  # noqa: SIM115 (the process's stream, never closed)


def _drop_stdout() -> None:
    """Point standard output at /dev/null: what is still buffered would fail again when Python flushes it
    at exit (the documented way out of a broken pipe)."""
    _to_devnull(sys.stdout)


def _to_devnull(stream) -> None:
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)


class _Stderr:
    """sys.stderr, whose failed writes (`2> log` on a full disk, a reader gone) lose the messages, not the
    work: a message raised OSError, and the first one ("loading the model...") ended a run before its answer
    was written. The first failure points the stream at /dev/null; the exit status still tells how it went."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError:
            self._drop()
            return len(text)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError:
            self._drop()

    def _drop(self) -> None:
        _to_devnull(self._stream)
        with contextlib.suppress(OSError, ValueError):  # what is buffered goes there too
            self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
