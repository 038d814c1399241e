"""Running one of our timing scripts under Kyutai's `moshi_mlx` in another interpreter.

Kyutai's package shares our import name, so it lives in another environment; `--kyutai-python PY` names
its interpreter. The script (`kyutai_mimi.py`, `kyutai_lm.py`: our own code calling Kyutai's
public API) runs as `PY -I script ...` with our environment (so the same BLAS). Protocol, one JSON object
per line on its stdout: {"ready": true, "version": ..., "mlx": ...} once built and warmed up, then one
reply per line "N" written to its stdin (N more timed steps); {"error": ...} on failure. The benchmark
alternates such rounds with its own, so both sides see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from pathlib import Path


def program(text: str) -> str:
    """An argparse `type` for --kyutai-python: a program that can be run (a path, or a name on PATH)."""
    if not text.strip() or shutil.which(text) is None:
        raise argparse.ArgumentTypeError(
            f"no program {text!r} to run: give the path of a Python interpreter that has Kyutai's moshi_mlx installed"
        )
    return text


class KyutaiTimer:
    def __init__(self, python: str, script: str, *args: str):
        cmd = [python, "-I", str(Path(__file__).with_name(script)), *args]
        try:
            self._proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        except OSError as e:
            raise SystemExit(f"error: --kyutai-python: cannot run {python!r}: {e}") from e
        hello = self._read()
        self.version, self.mlx = hello["version"], hello["mlx"]

    def _read(self) -> dict:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            code = self._proc.wait()
            raise SystemExit(f"error: --kyutai-python: the timing script exited (status {code}) without answering")
        reply = json.loads(line)
        if "error" in reply:
            raise SystemExit(f"error: --kyutai-python: {reply['error']}")
        return reply

    def request(self, n: int) -> dict:
        """Time `n` more steps over there; the script's reply."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(f"{n}\n")
        self._proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=120)
