"""SEANet pieces not covered by the Mimi reference goldens: the fast ELU."""

from __future__ import annotations

import mlx.core as mx
import numpy as np

from moshi_mlx.modules.seanet import ELU, elu


def _exact_elu(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return np.where(x64 > 0, x64, np.expm1(np.minimum(x64, 0.0)))


def test_elu_within_one_ulp_of_exact() -> None:
    # tiny negatives (where exp(x) - 1 would lose everything), every range-reduction branch, saturation
    x = np.concatenate(
        [
            -np.logspace(-30, 2.3, 100_000),
            np.linspace(-100, 10, 100_000),
            np.logspace(-30, 3, 1000),
            np.array([0.0, -0.0, -87.0, -88.0, -1e4]),
        ]
    ).astype(np.float32)
    got = np.array(elu(mx.array(x)))
    exact = _exact_elu(x)
    ulp = np.spacing(np.abs(exact).astype(np.float32))
    err_ulps = np.abs(got - exact) / np.maximum(ulp, np.finfo(np.float32).smallest_subnormal)
    assert err_ulps.max() <= 1.0, f"max error {err_ulps.max():.2f} ulp at x={x[err_ulps.argmax()]}"
    pos = x > 0
    assert np.array_equal(got[pos], x[pos]), "ELU must return positive inputs unchanged"


def test_elu_module_shapes_and_dtypes() -> None:
    x = mx.random.normal((2, 37, 5)) * 4
    y = ELU()(x)
    assert y.shape == x.shape and y.dtype == mx.float32
    np.testing.assert_allclose(np.array(y), _exact_elu(np.array(x)), rtol=2e-7, atol=1e-30)
    yb = ELU()(x.astype(mx.bfloat16))
    assert yb.dtype == mx.bfloat16
    xb = np.array(x.astype(mx.bfloat16).astype(mx.float32))
    np.testing.assert_allclose(np.array(yb.astype(mx.float32)), _exact_elu(xb), rtol=1e-2, atol=1e-3)
