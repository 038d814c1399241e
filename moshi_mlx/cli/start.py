"""The first import of every front end: a Ctrl-C while the program is still starting ends it quietly.

Between Python's start and `run_cli` taking charge of signals (signals.py), a program imports the standard
library and our light modules (~0.1 s) and may re-execute itself on OpenBLAS (cpu/blas.py): a Ctrl-C there
printed a KeyboardInterrupt traceback. Imported first by the packages that hold our programs (`moshi_mlx`,
`quantize`, `app`: their `__init__.py`, which `python -m` and console scripts run before the program's module,
which Python may still have to compile), this module makes Ctrl-C end the process at once with 130 and the
word "stopped", as a later Ctrl-C does; nothing is open yet that would need closing.
It acts only in a process started as one of our programs (`python -m moshi_mlx.run`, a console script), never
in one that merely imports them (a test suite, a user's script), and only where Ctrl-C is not ignored.

A Ctrl-C held back while the process re-executes itself (signals.blocked_across_exec) is delivered once this
handler is installed in the new process. Only the standard library's smallest modules are imported here,
before the handler, all loaded as Python starts.
"""

import os
import sys

try:  # the C module under `signal`, loaded as Python starts: `signal` would add its enums (~2 ms, 20 ms on a
    signal = __import__("_signal")  # busy machine) before the handler, where a Ctrl-C still printed a traceback
except ImportError:  # not CPython
    signal = __import__("signal")

PACKAGES = ("moshi_mlx", "quantize", "app")  # `python -m` of a module in these is one of our programs
SCRIPTS = "moshi-mlx"  # the prefix of our console scripts (pyproject.toml [project.scripts])


def _stop_now(signum: int, _frame) -> None:
    try:
        os.write(2, b"\nstopped\n")
    finally:  # also where stderr is closed
        os._exit(128 + signum)


def is_starting_handler(handler: object) -> bool:
    """Whether `handler` is the one this module installs (run_cli's signals replace it as Python's own)."""
    return handler is _stop_now


def started_as_program() -> bool:
    """Whether this process runs one of our programs: `python -m` of our module, or our console script."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None:
        return _ours(spec.name)
    if sys.argv[:1] == ["-m"]:  # `python -m package.module` still importing the package: the module from the command
        module = next((a for a in sys.orig_argv[1:] if a.startswith("-m")), "-m")
        i = sys.orig_argv.index(module)
        return _ours(module[2:] or (sys.orig_argv[i + 1] if i + 1 < len(sys.orig_argv) else ""))
    return os.path.basename(sys.argv[0] if sys.argv else "").startswith(SCRIPTS)


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _install() -> None:
    if not started_as_program():
        return
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not where Ctrl-C is ignored
        signal.signal(signal.SIGINT, _stop_now)
    if hasattr(signal, "pthread_sigmask"):  # a Ctrl-C held back across our re-execution comes now
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


_install()
