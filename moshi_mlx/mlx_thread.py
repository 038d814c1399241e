"""Threads that do MLX work, and how they end before the interpreter does.

MLX's Python binding keeps a random key per thread (a C++ `thread_local` in mlx python/src/random.cpp)
whose destructor takes the GIL. A thread that used `mx.random` (sampling, a layer's initialisation)
runs that destructor after Python has let go of it, as the OS thread exits; if the main thread is
finalizing the interpreter by then, taking the GIL ends the thread with `pthread_exit` inside the
destructor, and the C++ runtime aborts the whole process ("terminate called without an active
exception", exit 134) after all its work was done. `Thread.join()` does not protect: it returns
before the OS thread runs its thread_local destructors. A thread still inside an MLX call when the
interpreter finalizes dies the same way.

So a thread that does MLX work is started with `start_owner_thread`: its last act, while the
interpreter is alive, is `mx.clear_streams()`, which resets this thread's random key and destroys its
streams and compile cache (nothing it leaves behind then needs the GIL); and before the interpreter
goes, `join_owner_threads` asks every such thread to stop and waits for it (at interpreter exit too).
`exit_process` is the command-line programs' way out: wait, then exit with the code, or, if a thread
will not end (a model still loading), leave without finalizing the interpreter rather than abort.

The main thread's own key is destroyed by the C runtime after finalization without harm (measured:
mx.random on the main thread, then exit, never aborts), so the main thread needs nothing. The key is
per thread from mlx 0.31.2, and `mx.clear_streams()` resets it from 0.32.1: pyproject.toml excludes
0.31.2 and 0.32.0.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import NoReturn

EXIT_WAIT_S = 30.0  # how long a process exit waits for MLX threads (a 7B step takes up to ~5 s)
_NOTE_AFTER_S = 1.0

_owners: dict[threading.Thread, Callable[[], bool] | None] = {}  # live owner threads -> how to ask them to stop
_lock = threading.Lock()


def start_owner_thread(
    target: Callable[[], None], name: str, stop: Callable[[], bool] | None = None
) -> threading.Thread:
    """Runs `target` on a new daemon thread that releases its MLX state as its last act.

    `stop`, if given, asks `target` to return soon (from any thread; process exit calls it) and returns
    whether that is worth waiting for: False while `target` cannot return soon and nothing would be lost
    without it (a model still loading), so that exit does not wait for it.
    """
    t = threading.Thread(target=_run, args=(target,), name=name, daemon=True)
    with _lock:
        _owners[t] = stop
    t.start()
    return t


def _run(target: Callable[[], None]) -> None:
    try:
        target()  # its locals (model, states) are released when it returns
    finally:
        release_thread_state()
        with _lock:
            _owners.pop(threading.current_thread(), None)


def release_thread_state() -> None:
    """Drop this thread's MLX state (random key, streams, compile cache). Only as a thread's last act:
    arrays still pending on its streams can no longer be evaluated."""
    mx = sys.modules.get("mlx.core")
    if mx is not None:
        mx.clear_streams()


def join_owner_threads(timeout: float = EXIT_WAIT_S, note: Callable[[str], object] | None = None) -> bool:
    """Asks every owner thread to stop and waits for those worth waiting for, at most `timeout` seconds in
    all; `note` is told once if this takes more than a second. True when none is left."""
    with _lock:
        owners = list(_owners.items())
    waiting = [t for t, stop in owners if stop is None or stop()]
    start = time.monotonic()
    for t in waiting:
        while t.is_alive():
            waited = time.monotonic() - start
            if waited >= timeout:
                return False
            if note is not None and waited >= _NOTE_AFTER_S:
                note("waiting for the model thread to stop (Ctrl-C again quits at once)")
                note = None
            t.join(min(0.1, timeout - waited))
    return not any(t.is_alive() for t, _ in owners)


def exit_process(code: int) -> NoReturn:
    """Ends the process with `code` once every MLX thread has ended. A thread still loading its model, one
    that has not ended within EXIT_WAIT_S, or a Ctrl-C while waiting: exit at once without finalizing the
    interpreter, which would abort."""
    try:
        done = join_owner_threads(EXIT_WAIT_S, note=lambda msg: print(msg, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        done, code = False, 130
    if not done:
        _exit_now(code)
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # the status is decided: a late Ctrl-C must not change it
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    sys.exit(code)


def _exit_now(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):
            stream.flush()
    os._exit(code)


@atexit.register
def _at_exit() -> None:  # anyone else's process (the test suite, a script using ModelLoop)
    try:
        done = join_owner_threads(EXIT_WAIT_S)
    except KeyboardInterrupt:  # Ctrl-C while waiting: quit at once, as a Ctrl-C does
        _exit_now(130)
    if not done:
        print("moshi_mlx: an MLX thread did not end; exiting without the interpreter's cleanup", file=sys.stderr)
        _exit_now(1)
