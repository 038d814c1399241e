"""Linux CPU: run MLX's float32 matmuls on the system's OpenBLAS rather than the reference BLAS in mlx wheels.

The `mlx[cpu]` wheels for Linux vendor the netlib reference BLAS (`mlx_cpu.libs/libblas-*.so`), whose
sgemm runs at ~6 GFLOP/s; OpenBLAS exports the same `cblas_sgemm` symbol and is ~30x faster on large
products (Mimi streaming here: ~2.3x faster per frame). A shared library cannot be swapped once the
process runs, so `maybe_reexec()`, called first thing by our command-line entry points, re-executes the
same command once with `LD_PRELOAD` naming the system OpenBLAS (Debian/Ubuntu: `libopenblas0-pthread`,
Fedora: `openblas`). It does nothing when:

- the platform is not Linux (macOS uses Accelerate, or Metal);
- `MOSHI_MLX_NO_OPENBLAS` is set to anything but "" or "0" (opt out);
- `LD_PRELOAD` is already set (the user's choice wins), or we already re-executed;
- mlx does not carry the reference BLAS (a build with another BLAS), or no OpenBLAS is installed.

`OPENBLAS_NUM_THREADS` defaults to 1 in the re-executed process (unless set): MLX runs its CPU work on
one thread, and extra BLAS threads only compete with the audio and other work on small machines.

Where `make` built the one-row forwarder (`gemv_forward.c`, into the environment's lib folder), it is
preloaded first: MLX multiplies a streamed step's single row through cblas_sgemm, which OpenBLAS before
0.3.27 runs 2.8x slower than its matrix-vector routine; the forwarder sends those products there.
"""

from __future__ import annotations

import ctypes.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path

OPT_OUT_ENV = "MOSHI_MLX_NO_OPENBLAS"
_REEXEC_MARK = "MOSHI_MLX_OPENBLAS_REEXEC"
FORWARDER = "libmoshi_mlx_gemv.so"  # what the Makefile builds from gemv_forward.c into $(VENV)/lib


def mlx_bundles_reference_blas() -> bool:
    """Whether the installed mlx wheel vendors the netlib reference BLAS (`mlx_cpu.libs/libblas-*.so*`)."""
    try:
        import mlx
    except ImportError:
        return False
    for base in {Path(p).resolve().parent for p in getattr(mlx, "__path__", [])}:
        libs = base / "mlx_cpu.libs"
        if libs.is_dir() and any(p.name.startswith("libblas") for p in libs.iterdir()):
            return True
    return False


def find_openblas() -> str | None:
    """The system OpenBLAS as the dynamic linker names it (e.g. 'libopenblas.so.0'), or None."""
    return ctypes.util.find_library("openblas")


def find_forwarder() -> str | None:
    """The one-row forwarder `make` built for this environment, or None."""
    path = Path(sys.prefix) / "lib" / FORWARDER
    return str(path) if path.is_file() else None


def _opted_out(environ: Mapping[str, str]) -> bool:
    return environ.get(OPT_OUT_ENV, "") not in ("", "0")


def preload_decision(
    platform: str,
    environ: Mapping[str, str],
    reference_blas: bool,
    openblas: str | None,
    forwarder: str | None = None,
) -> str | None:
    """The LD_PRELOAD of a re-executed process (the forwarder, when built, before OpenBLAS), or None to run
    as is (pure: unit-tested)."""
    if not platform.startswith("linux") or _opted_out(environ):
        return None
    if environ.get("LD_PRELOAD") or environ.get(_REEXEC_MARK):
        return None
    if not reference_blas or not openblas:
        return None
    return openblas if forwarder is None else f"{forwarder}:{openblas}"


def reexec_env(environ: Mapping[str, str], library: str) -> dict[str, str]:
    """The environment of the re-executed process."""
    env = dict(environ)
    env["LD_PRELOAD"] = library
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    env[_REEXEC_MARK] = "1"
    return env


def maybe_reexec() -> None:
    """Re-execute this command with OpenBLAS preloaded when it helps (see the module docstring).

    Call it at the very start of a command-line entry point, never from library code: on success it does
    not return (the process image is replaced). Any failure to re-execute leaves the process running as is.
    """
    library = preload_decision(
        sys.platform, os.environ, mlx_bundles_reference_blas(), find_openblas(), find_forwarder()
    )
    if library is None:
        return
    argv = [sys.executable, *sys.orig_argv[1:]]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, argv, reexec_env(os.environ, library))
    except OSError:
        return


def describe() -> str:
    """Which BLAS this process runs MLX's float32 matmuls on (for benchmark headers)."""
    if not sys.platform.startswith("linux"):
        return "platform BLAS"
    # a preloaded library's cblas_sgemm interposes on the bundled one
    libraries = os.environ.get("LD_PRELOAD", "").replace(":", " ").split()
    preloaded = [p for p in libraries if "openblas" in p]
    if preloaded:
        threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
        rows = ", one-row products by sgemv" if any(Path(p).name == FORWARDER for p in libraries) else ""
        return f"OpenBLAS, preloaded ({preloaded[0]}, threads {threads}{rows})"
    if mlx_bundles_reference_blas():
        return "reference BLAS bundled with mlx (slow: install OpenBLAS, e.g. apt install libopenblas0-pthread)"
    return "the BLAS mlx was built with"
