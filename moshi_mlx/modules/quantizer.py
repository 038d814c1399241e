"""Mimi's split residual vector quantizer (inference only), channels-last.

A codebook stores what training kept, `embedding_sum` and `cluster_usage`; the centroids are
embedding_sum / max(cluster_usage, 1e-5), derived once by `post_load()` into underscore attributes
(not parameters: not saved, not demanded by strict loading, not cast by set_dtype).
"""

from __future__ import annotations

import mlx.core as mx
import mlx.nn as nn

from ..config import QuantizerConfig

_USAGE_EPS = 1e-5


class EuclideanCodebook(nn.Module):
    def __init__(self, dim: int, bins: int):
        super().__init__()
        self.embedding_sum = mx.zeros((bins, dim))
        self.cluster_usage = mx.ones((bins,))
        self._centroids: mx.array | None = None
        self._half_sq_norms: mx.array | None = None

    def post_load(self) -> None:
        """Derive the centroids (float32) from the loaded sums and usages."""
        usage = mx.maximum(self.cluster_usage.astype(mx.float32), _USAGE_EPS)
        centroids = self.embedding_sum.astype(mx.float32) / usage[:, None]
        # stored as [dim, bins] (a view gives [bins, dim]): the distance matmul reads it contiguously
        self._centroids = mx.contiguous(centroids.T).T
        self._half_sq_norms = 0.5 * mx.sum(centroids * centroids, axis=-1)
        mx.eval(self._centroids, self._half_sq_norms)

    @property
    def centroids(self) -> mx.array:
        if self._centroids is None:
            raise RuntimeError("codebook centroids are not derived yet: call post_load() after loading weights")
        return self._centroids

    def encode(self, x: mx.array) -> mx.array:
        """x [..., dim] float -> index of the nearest centroid [...] (int32)."""
        # argmin |x - c|^2 = argmin (|c|^2 / 2 - x.c): one matmul, no [N, bins, dim] difference tensor
        centroids = self.centroids  # raises before post_load()
        assert self._half_sq_norms is not None  # derived with the centroids
        scores = self._half_sq_norms - x.astype(mx.float32) @ centroids.T
        return mx.argmin(scores, axis=-1).astype(mx.int32)

    def decode(self, codes: mx.array) -> mx.array:
        """codes [...] -> centroids [..., dim] (float32)."""
        return mx.take(self.centroids, codes, axis=0)


class VectorQuantization(nn.Module):
    def __init__(self, dim: int, bins: int):
        super().__init__()
        self.codebook = EuclideanCodebook(dim, bins)


class _Layers(nn.Module):
    """The reference's ResidualVectorQuantization: only a `layers` list (named `vq` in the tree)."""

    def __init__(self, dim: int, bins: int, n_q: int):
        super().__init__()
        self.layers = [VectorQuantization(dim, bins) for _ in range(n_q)]


class ResidualVectorQuantizer(nn.Module):
    """Input projection, residual quantization over `n_q` codebooks, output projection."""

    def __init__(self, dim: int, input_dim: int, output_dim: int, bins: int, n_q: int):
        super().__init__()
        self.input_proj = nn.Linear(input_dim, dim, bias=False)
        self.output_proj = nn.Linear(dim, output_dim, bias=False)
        self.vq = _Layers(dim, bins, n_q)

    @property
    def n_q(self) -> int:
        return len(self.vq.layers)

    def encode(self, x: mx.array, n_q: int) -> mx.array:
        """x [B, T, input_dim] -> codes [B, T, n_q] (int32)."""
        residual = self.input_proj(x).astype(mx.float32)
        codes = []
        for layer in self.vq.layers[:n_q]:
            c = layer.codebook.encode(residual)
            residual = residual - layer.codebook.decode(c)
            codes.append(c)
        return mx.stack(codes, axis=-1)

    def decode(self, codes: mx.array) -> mx.array:
        """codes [B, T, n] (n <= n_q) -> [B, T, output_dim]."""
        total = None
        for i in range(codes.shape[-1]):
            v = self.vq.layers[i].codebook.decode(codes[..., i])
            total = v if total is None else total + v
        assert total is not None  # n >= 1 codebooks
        return self.output_proj(total.astype(self.output_proj.weight.dtype))


class SplitResidualVectorQuantizer(nn.Module):
    """A semantic RVQ (`rvq_first`) and an acoustic RVQ (`rvq_rest`), both fed the same latent."""

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        self.n_q_semantic = cfg.n_q_semantic
        self.bins = cfg.bins
        args = (cfg.dimension, cfg.input_dimension, cfg.output_dimension, cfg.bins)
        self.rvq_first = ResidualVectorQuantizer(*args, n_q=cfg.n_q_semantic)
        self.rvq_rest = ResidualVectorQuantizer(*args, n_q=cfg.n_q - cfg.n_q_semantic)

    @property
    def total_codebooks(self) -> int:
        return self.rvq_first.n_q + self.rvq_rest.n_q

    def post_load(self) -> None:
        for rvq in (self.rvq_first, self.rvq_rest):
            for layer in rvq.vq.layers:
                layer.codebook.post_load()

    def encode(self, x: mx.array, n_q: int) -> mx.array:
        """x [B, T, D] -> codes [B, T, n_q] (int32), semantic first."""
        codes = self.rvq_first.encode(x, self.n_q_semantic)
        if n_q > self.n_q_semantic:
            codes = mx.concatenate([codes, self.rvq_rest.encode(x, n_q - self.n_q_semantic)], axis=-1)
        return codes

    def decode(self, codes: mx.array) -> mx.array:
        """codes [B, T, n] -> [B, T, D]."""
        out = self.rvq_first.decode(codes[..., : self.n_q_semantic])
        if codes.shape[-1] > self.n_q_semantic:
            out = out + self.rvq_rest.decode(codes[..., self.n_q_semantic :])
        return out
