"""ContiguousLinear: nn.Linear's values by the weight's contiguous transpose, with no transpose per call."""

from __future__ import annotations

import io

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from moshi_mlx.cpu.contiguous import ContiguousLinear


def _primitives(y: mx.array) -> list[str]:
    dot = io.StringIO()
    mx.export_to_dot(dot, y)
    return [line.split('label ="')[1].split('"')[0] for line in dot.getvalue().splitlines() if "rectangle" in line]


def test_same_values_same_names_and_no_transpose_in_the_graph():
    for bias in (False, True):
        plain = nn.Linear(64, 96, bias=bias)
        plain.weight = mx.contiguous(plain.weight.T).T  # the same storage (BLAS rounds by operand layout)
        mx.eval(plain.parameters())
        fast = ContiguousLinear.like(plain)
        x = mx.random.normal((3, 64))
        np.testing.assert_array_equal(np.array(fast(x)), np.array(plain(x)))
        assert sorted(k for k, _ in nn.utils.tree_flatten(fast.parameters())) == sorted(
            k for k, _ in nn.utils.tree_flatten(plain.parameters())
        )
        assert "Transpose" in _primitives(plain(x)) and "Transpose" not in _primitives(fast(x))


def test_a_replaced_weight_is_used_as_nn_linear_uses_it():
    plain = nn.Linear(16, 8, bias=False)
    mx.eval(plain.parameters())
    fast = ContiguousLinear.like(plain)
    fast.set_dtype(mx.bfloat16)  # a cast after the swap: the kept transpose is stale
    x = mx.random.normal((2, 16)).astype(mx.bfloat16)
    np.testing.assert_array_equal(
        np.array(fast(x).astype(mx.float32)), np.array((x @ fast.weight.T).astype(mx.float32))
    )
    assert fast(x).dtype == mx.bfloat16


def test_the_swap_never_holds_two_copies_of_the_weights():
    """Loading swaps every float32 Linear of the LM for a ContiguousLinear (a copy of its weight): one at
    a time, so that a float32 7B (28 GB) does not need twice its size while it loads."""
    from moshi_mlx.cpu.swap import use_cpu_variants

    model = nn.Sequential(*[nn.Linear(1024, 1024, bias=False) for _ in range(12)])  # 48 MiB of weights
    mx.eval(model.parameters())
    weights = sum(w.nbytes for _, w in nn.utils.tree_flatten(model.parameters()))
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    use_cpu_variants(model)
    assert all(type(m) is ContiguousLinear for m in model.layers)
    assert mx.get_peak_memory() - before < weights / 4, (mx.get_peak_memory() - before, weights)
