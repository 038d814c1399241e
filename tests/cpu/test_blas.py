"""The OpenBLAS re-exec decision (pure) and one real re-exec in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_decision_preloads_the_one_row_forwarder_first_where_it_was_built() -> None:
    assert preload_decision("linux", {}, True, LIB, "/v/lib/fwd.so") == f"/v/lib/fwd.so:{LIB}"
    assert preload_decision("linux", {OPT_OUT_ENV: "1"}, True, LIB, "/v/lib/fwd.so") is None


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
    openblas, forwarder = _cpu_blas.find_openblas(), _cpu_blas.find_forwarder()  # the forwarder if make built it
    assert preload == (openblas if forwarder is None else f"{forwarder}:{openblas}"), preload
    assert args == '["a", "b c"]' and blas.startswith("OpenBLAS")
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


_PRODUCTS = """
import ctypes, json, sys
import numpy as np, mlx.core as mx
rng = np.random.default_rng(0)
out = {}
for m, k, n in [(1, 256, 1408), (1, 300, 7), (2, 128, 40), (3, 64, 96)]:
    a = rng.standard_normal((m, k)).astype(np.float32)
    w = rng.standard_normal((k, n)).astype(np.float32)
    c = rng.standard_normal((m, n)).astype(np.float32)
    wt = mx.array(np.ascontiguousarray(w.T)).T  # stored [n, k]: the transposed operand nn.Linear passes
    for name, y in {"ab": mx.array(a) @ mx.array(w), "abt": mx.array(a) @ wt,
                    "addmm": mx.addmm(mx.array(c), mx.array(a), mx.array(w))}.items():
        out[f"{m}x{k}x{n}/{name}"] = np.array(y).tolist()
    if m <= 2:  # OpenBLAS's own matrix-vector product of the same data, row by row
        lib = ctypes.CDLL(sys.argv[1])
        f, p = ctypes.c_float, ctypes.POINTER(ctypes.c_float)
        rows = []
        for r in range(m):
            y, x = c[r].copy(), np.ascontiguousarray(a[r])
            lib.cblas_sgemv(101, 112, k, n, f(1.0), w.ctypes.data_as(p), n, x.ctypes.data_as(p), 1, f(1.0),
                            y.ctypes.data_as(p), 1)
            rows.append(y.tolist())
        out[f"{m}x{k}x{n}/sgemv"] = rows
print(json.dumps(out))
"""


@pytest.mark.skipif(
    not (sys.platform.startswith("linux") and _cpu_blas.find_openblas() and shutil.which("cc")),
    reason="needs Linux, a system OpenBLAS and a C compiler",
)
def test_the_forwarder_sends_one_row_products_to_sgemv_and_leaves_the_rest(tmp_path: Path) -> None:
    """Built as the Makefile builds it; in a child with it preloaded, a one-row product (plain, with the
    weight transposed, and addmm's c + a b) and each row of a two-row one equal OpenBLAS's sgemv bit for bit,
    and a three-row product equals the one OpenBLAS computes without the forwarder."""
    root = Path(__file__).resolve().parents[2]
    forwarder = tmp_path / _cpu_blas.FORWARDER
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", "-o", forwarder, root / "moshi_mlx/cpu/gemv_forward.c", "-ldl"], check=True
    )
    openblas = _cpu_blas.find_openblas()
    assert openblas is not None

    def products(preload: str) -> dict:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        env.update(LD_PRELOAD=preload, OPENBLAS_NUM_THREADS="1", PYTHONPATH=str(root))
        done = subprocess.run(
            [sys.executable, "-c", _PRODUCTS, openblas], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    with_forwarder, without = products(f"{forwarder}:{openblas}"), products(openblas)
    for shape in ("1x256x1408", "1x300x7", "2x128x40"):
        sgemv = np.array(with_forwarder[f"{shape}/sgemv"])
        np.testing.assert_array_equal(np.array(with_forwarder[f"{shape}/addmm"]), sgemv)
        sgemm = np.array(without[f"{shape}/ab"])  # other orders of the same sum: float32 rounding apart
        for name in ("ab", "abt"):
            assert np.abs(np.array(with_forwarder[f"{shape}/{name}"]) - sgemm).max() <= 1e-5 * np.abs(sgemm).max()
    for name in ("ab", "abt", "addmm"):
        assert with_forwarder[f"3x64x96/{name}"] == without[f"3x64x96/{name}"]
