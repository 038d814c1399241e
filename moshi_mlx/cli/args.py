"""The command-line parser every program here uses: a bad command line gets one line, checked numbers;
and `print_error`, the one line every program here ends a handled error with.

argparse prints a usage block and `prog: error: ...`; `CliParser` prints exactly
`error: <what was wrong> (see --help)` and exits with status 2 (bad input, nothing done), like every
other error of `run`, `quantize`, `bench` and the app. `number(...)` is an argparse `type` that refuses
values out of range (and NaN or infinity) while the command line is read, before any model loads;
`name` refuses an empty file, folder or repository name (which paths read as the current folder).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class CliParser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one `error: ... (see --help)` line, exit status 2.

    Sub-command parsers (`add_subparsers`) are of this class too.
    """

    def error(self, message: str) -> NoReturn:
        if message.endswith("expected one argument"):  # the value began with "-", as in --input -me.wav
            message += " (a value that begins with '-' goes after '=': --flag=-value)"
        print_error(f"{message} (see --help)")
        self.exit(2)


def print_error(message: str) -> None:
    """`error: <what was wrong and what to do>` on stderr, the line a person (and the tests) look for."""
    print(f"error: {message}", file=sys.stderr, flush=True)


def number(kind: type[int] | type[float], lo: int | float, hi: int | float) -> Callable[[str], int | float]:
    """An argparse `type`: an int, or a finite float, from `lo` to `hi` (both included)."""
    what = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be {what} from {_show(lo)} to {_show(hi)}, got {text!r}")
        return value

    parse.__name__ = kind.__name__
    return parse


def name(text: str) -> str:
    """An argparse `type` for a file, folder or repository name: not empty (a path would read "" as "."), and
    not longer than the file system takes (every look at it would raise an OSError)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"an empty name ({text!r}): name a file or folder")
    from ..outputs import too_long

    if (why := too_long(text)) is not None:
        raise argparse.ArgumentTypeError(f"{why}: shorten it")
    return text


def model_files(args: argparse.Namespace) -> dict[str, str]:
    """The files a run reads its model from (the flags naming them, and the files of a local --hf-repo folder),
    by how to name each in a message: an output must be none of them (outputs.check_new_file's `protect`)."""
    files = {
        f"--{key.replace('_', '-')}": value
        for key in ("moshi_weight", "mimi_weight", "tokenizer", "config", "voice")
        if (value := getattr(args, key, None))
    }
    repo = getattr(args, "hf_repo", None)
    if repo and os.path.isdir(repo):
        with contextlib.suppress(OSError):
            files |= {f"the model's {p.name} (--hf-repo)": str(p) for p in sorted(Path(repo).iterdir()) if p.is_file()}
    return files


def _show(x: int | float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)
