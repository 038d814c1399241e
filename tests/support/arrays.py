"""Comparing arrays in tests: MLX or numpy in, numpy assertions out."""

from __future__ import annotations

import mlx.core as mx
import numpy as np


def to_numpy(x) -> np.ndarray:
    if isinstance(x, mx.array):
        if x.dtype == mx.bfloat16:
            x = x.astype(mx.float32)
        return np.array(x)
    return np.asarray(x)


def assert_close(actual, expected, atol: float = 1e-5, rtol: float = 1e-5, what: str = "") -> None:
    a, e = to_numpy(actual), to_numpy(expected)
    assert a.shape == e.shape, f"{what} shape {a.shape} != {e.shape}"
    np.testing.assert_allclose(a, e, atol=atol, rtol=rtol, err_msg=what)


def snr_db(actual, expected) -> float:
    a, e = to_numpy(actual).astype(np.float64), to_numpy(expected).astype(np.float64)
    noise = np.sum((a - e) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(e**2) / noise))
