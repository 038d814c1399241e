"""SIGTERM and SIGHUP stop our command-line programs as Ctrl-C does.

Inside `stop_on_signals()`, the first SIGTERM or SIGHUP raises `Interrupted`, a KeyboardInterrupt, in
the main thread; so every `except KeyboardInterrupt` / `finally` that makes Ctrl-C end cleanly (a
conversation ends, the recorder closes its files with their real length, `quantize` removes its
staging folder) serves them too. Later ones are ignored while that stop runs. The exit status follows
the shell's convention, 128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP.
Inside `stops_deferred()` (saving what a stopped run produced) no stop interrupts: they are collected,
for the caller to act on once the files are safe.
`stop_came()` says whether a stop signal has come: an error raised after one is its consequence (numpy turns a
Ctrl-C during its import into an ImportError), and ends the program as the stop does.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from .start import is_starting_handler

SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))
_came: list[int] = []  # the stop signals received inside stop_on_signals(), in order


class Interrupted(KeyboardInterrupt):
    """A stop signal other than Ctrl-C's SIGINT, raised like KeyboardInterrupt."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_status(signum: int) -> int:
    """The exit status of a program stopped by signal `signum`: 128 + its number (130 for Ctrl-C)."""
    return 128 + signum


def exit_code(stop: KeyboardInterrupt) -> int:
    """The exit status after `stop` (a Ctrl-C, or `Interrupted` by another signal)."""
    return signal_status(getattr(stop, "signum", signal.SIGINT))


def stopped(stop: KeyboardInterrupt) -> int:
    """Says that a stop (Ctrl-C, SIGTERM, SIGHUP) ended the run; returns its exit status."""
    print("\nstopped", file=sys.stderr)
    return exit_code(stop)


def stop_came() -> int | None:
    """The first stop signal received inside `stop_on_signals()` (None: none came)."""
    return _came[0] if _came else None


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGTERM / SIGHUP raise `Interrupted` in the main thread while inside (nothing elsewhere); Ctrl-C
    raises KeyboardInterrupt as always. Each is noted for `stop_came()`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    raised = False

    def handler(signum, _frame) -> None:
        nonlocal raised
        _came.append(signum)
        if not raised:
            raised = True
            raise Interrupted(signum)

    def ctrl_c(signum, frame) -> None:
        _came.append(signum)
        signal.default_int_handler(signum, frame)

    previous = {s: signal.signal(s, handler) for s in SIGNALS}
    ctrl_c_was = signal.getsignal(signal.SIGINT)
    if ctrl_c_was is signal.default_int_handler or is_starting_handler(ctrl_c_was):  # not where it is ignored
        signal.signal(signal.SIGINT, ctrl_c)
        previous[signal.SIGINT] = signal.default_int_handler  # after: Python's (exit_process handles a Ctrl-C)
    try:
        yield
    finally:
        for s, h in previous.items():
            if h is not None:  # None: set outside Python, cannot be restored from here
                signal.signal(s, h)


@contextmanager
def blocked_across_exec() -> Iterator[None]:
    """Ctrl-C is held back (blocked, so kept pending) inside: a process that re-executes itself (cpu/blas.py)
    keeps the mask, and its Ctrl-C reaches start.py's handler in the new process rather than Python's own
    start-up, which would print a traceback. Unblocked on return, where the process did not re-execute."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    mask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        mask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def stops_deferred() -> Iterator[list[KeyboardInterrupt]]:
    """Ctrl-C, SIGTERM and SIGHUP do not interrupt the block (work that must not be cut: writing the files a
    stopped run keeps); each one that comes is added to the list it gives, for the caller to act on after.
    Main thread only (elsewhere signals never interrupt anyway)."""
    came: list[KeyboardInterrupt] = []
    if threading.current_thread() is not threading.main_thread():
        yield came
        return

    def handler(signum, _frame) -> None:
        came.append(KeyboardInterrupt() if signum == signal.SIGINT else Interrupted(signum))

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, *SIGNALS)}
    try:
        yield came
    finally:
        for s, h in previous.items():
            if h is not None:
                signal.signal(s, h)
