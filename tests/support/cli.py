"""Run our command-line programs as a person does: a subprocess, its exit code, its stderr."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
E2E = REPO / "tests" / "assets" / "e2e"  # a tiny real model in Kyutai's MLX repository layout
ABORT = "terminate called"  # the C++ runtime's words when a process aborts at exit (status 134)


@dataclass(frozen=True)
class Ran:
    argv: tuple[str, ...]
    code: int
    out: str
    err: str

    def why(self) -> str:
        return f"{' '.join(self.argv)} -> {self.code}\n--- stdout\n{self.out[-3000:]}\n--- stderr\n{self.err[-3000:]}"


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a child: this checkout first on the path, offline, no Qt display needed."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.update(extra)
    return env


def run_module(
    module: str,
    *args: str,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    timeout: float = 120.0,
    stdin: str | None = None,
) -> Ran:
    """`python -m module args...`; returns its exit code and output (a hang fails the test by timeout)."""
    argv = (sys.executable, "-m", module, *map(str, args))
    p = subprocess.run(
        argv,
        env=env or cli_env(),
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
    )
    return Ran(argv, p.returncode, p.stdout, p.stderr)


def start_python(*argv: object, env: dict[str, str] | None = None, **popen) -> subprocess.Popen:
    """`python argv...` started and not waited for (to signal it, or watch the files it writes); its stdout
    and stderr are pipes (read them with `finished`)."""
    return subprocess.Popen(
        (sys.executable, *map(str, argv)),
        env=env or cli_env(),
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def finished(p: subprocess.Popen, timeout: float = 120.0) -> Ran:
    """Waits for a child of `start_python`; its exit code and output."""
    out, err = p.communicate(timeout=timeout)
    return Ran(tuple(map(str, p.args)), p.returncode, out, err)


def assert_one_line_error(r: Ran, code: int, *needles: str) -> str:
    """The run exited with `code` and said why in one `error: ...` line, with no traceback; returns the line."""
    assert r.code == code, r.why()
    assert "Traceback" not in r.err and ABORT not in r.err, r.why()
    lines = [ln for ln in r.err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, r.why()
    for n in needles:
        assert n.lower() in lines[0].lower(), r.why()
    return lines[0]
