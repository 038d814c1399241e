"""ContiguousLinear: a float Linear whose matmul reads its weight's transpose, kept contiguous.

nn.Linear computes x @ W.T. On the CPU that costs twice: BLAS multiplies a transposed operand about twice
as slowly (a 256 x 256 matrix-vector product: 69 against 34 us here), and the transpose is one more
operation of the graph at every call, which a compiled step pays for on the thread that evaluates (about
10 us each on these cores). The variant stores `weight` as a view of the contiguous [in, out] array it
keeps, and multiplies by that array directly: same values, same names, no per-call transpose. A weight
replaced later (a cast, new weights) is used as nn.Linear uses it.
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn


class ContiguousLinear(nn.Linear):
    @classmethod
    def like(cls, layer: nn.Linear) -> ContiguousLinear:
        out_dims, in_dims = layer.weight.shape
        new = cls(in_dims, out_dims, bias="bias" in layer)  # the constructor's random init is never evaluated
        new._wt = mx.contiguous(layer.weight.T)  # underscored: kept, not a parameter
        new.weight = new._wt.T
        new._view = new.weight
        if "bias" in layer:
            new.bias = layer.bias
        mx.eval(new._wt)
        return new

    def __call__(self, x: mx.array) -> mx.array:
        if self.weight is not self._view:
            return super().__call__(x)
        wt = self["_wt"]
        return mx.addmm(self["bias"], x, wt) if "bias" in self else x @ wt

    def add_to(self, c: mx.array, x: mx.array) -> mx.array:
        """c + self(x) in one addmm (a bias-free layer: the residual sums of modules/transformer.py)."""
        if self.weight is not self._view or "bias" in self:
            return c + self(x)
        return mx.addmm(c, x, self["_wt"])
