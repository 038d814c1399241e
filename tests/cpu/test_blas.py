"""The OpenBLAS re-exec decision (pure) and one real re-exec in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moshi_mlx.cpu import blas as _cpu_blas
from moshi_mlx.cpu.blas import OPT_OUT_ENV, preload_decision, reexec_env

LIB = "libopenblas.so.0"


def test_decision_preloads_openblas_on_linux_with_reference_blas() -> None:
    assert preload_decision("linux", {}, True, LIB) == LIB


@pytest.mark.parametrize(
    ("platform", "env", "reference", "lib"),
    [
        ("darwin", {}, True, LIB),  # macOS: Accelerate / Metal
        ("win32", {}, True, LIB),
        ("linux", {OPT_OUT_ENV: "1"}, True, LIB),  # opted out
        ("linux", {"LD_PRELOAD": "libfoo.so"}, True, LIB),  # the user's preload wins
        ("linux", {"MOSHI_MLX_OPENBLAS_REEXEC": "1"}, True, LIB),  # already re-executed: no loop
        ("linux", {}, False, LIB),  # mlx built with another BLAS
        ("linux", {}, True, None),  # no OpenBLAS installed
    ],
)
def test_decision_leaves_the_process_alone(platform: str, env: dict, reference: bool, lib: str | None) -> None:
    assert preload_decision(platform, env, reference, lib) is None


def test_opt_out_zero_or_empty_means_not_opted_out() -> None:
    assert preload_decision("linux", {OPT_OUT_ENV: "0"}, True, LIB) == LIB
    assert preload_decision("linux", {OPT_OUT_ENV: ""}, True, LIB) == LIB


def test_reexec_env_sets_preload_single_thread_and_mark() -> None:
    env = reexec_env({"PATH": "/bin"}, LIB)
    assert env["LD_PRELOAD"] == LIB and env["OPENBLAS_NUM_THREADS"] == "1" and env["PATH"] == "/bin"
    assert preload_decision("linux", env, True, LIB) is None
    assert reexec_env({"OPENBLAS_NUM_THREADS": "2"}, LIB)["OPENBLAS_NUM_THREADS"] == "2"


_CHILD = (
    "import json, os, sys; from moshi_mlx.cpu.blas import maybe_reexec, describe; maybe_reexec(); "
    "print(os.environ.get('LD_PRELOAD', '') + '|' + json.dumps(sys.argv[1:]) + '|' + describe())"
)


def _child(extra_env: dict[str, str]) -> str:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", OPT_OUT_ENV, "MOSHI_MLX_OPENBLAS_REEXEC")}
    env.update(extra_env, PYTHONPATH=str(root))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, "a", "b c"],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and _cpu_blas.mlx_bundles_reference_blas() and _cpu_blas.find_openblas()),
    reason="needs Linux, an mlx wheel with the reference BLAS and a system OpenBLAS",
)
def test_reexec_happens_and_keeps_arguments_unless_opted_out() -> None:
    preload, args, blas = _child({}).split("|")
    assert preload == _cpu_blas.find_openblas() and args == '["a", "b c"]' and blas.startswith("OpenBLAS")
    preload, args, blas = _child({OPT_OUT_ENV: "1"}).split("|")
    assert preload == "" and args == '["a", "b c"]' and blas.startswith("reference BLAS")


def test_console_scripts_go_through_the_reexec_entry():
    """Each installed command's entry point is a `cli()` that re-executes on OpenBLAS before main()."""
    import importlib
    import inspect
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        eps = [ep for ep in distribution("moshi-mlx-local").entry_points if ep.group == "console_scripts"]
    except PackageNotFoundError:
        pytest.skip("the package is not installed (make test installs it)")
    assert {ep.name for ep in eps} >= {"moshi-mlx", "moshi-mlx-bench", "moshi-mlx-quantize", "moshi-mlx-app"}
    for ep in eps:
        module, attr = ep.value.split(":")
        assert attr == "cli", ep
        assert "run_cli(main)" in inspect.getsource(getattr(importlib.import_module(module), attr))
