"""Times Kyutai's MLX Mimi (the `moshi_mlx` package on PyPI) streaming at the real config.

Started by `python -m moshi_mlx.bench mimi --kyutai-python PY` as `PY -I <this file>` in another
interpreter, where Kyutai's package is installed (it shares our import name, so it cannot live in our
environment). A standalone script: it imports only mlx, the standard library and Kyutai's public API
(`moshi_mlx.models.mimi.Mimi`, `mimi_202407`, `encode_step`, `decode_step`), never our package.

Weights are random; codebooks get random centroids so the nearest-centroid search is not degenerate
(timing does not depend on the weight values otherwise). Protocol, one JSON object per line on stdout:
first {"ready": true, "version": ..., "mlx": ...} once the model is built and warmed up; then for each
line "N" read on stdin, N more streamed frames are timed and {"encode_ms": [...], "decode_ms": [...]}
is printed. It exits at the end of stdin. The caller interleaves these rounds with its own timing, so
both models see the same machine load.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num-codebooks", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        import mlx.core as mx

        from moshi_mlx.models import mimi as kmimi  # pyright: ignore[reportMissingImports]  (Kyutai's, run by its Python)
    except ImportError as e:
        _say({"error": f"Kyutai's moshi_mlx (and mlx) must be importable by this interpreter: {e}"})
        return 2
    try:
        from importlib.metadata import version

        kversion = version("moshi_mlx")
    except Exception:  # noqa: BLE001 - the version is informative only
        kversion = "unknown"

    mx.random.seed(args.seed)
    model = kmimi.Mimi(kmimi.mimi_202407(args.num_codebooks))
    for _, module in model.named_modules():
        if type(module).__name__ == "EuclideanCodebook":
            module.embedding_sum = mx.random.normal(module.embedding_sum.shape)
            module.cluster_usage = mx.random.uniform(0.5, 2.0, module.cluster_usage.shape)
            module.update_in_place()
    mx.eval(model.parameters())
    model.reset_all()
    fs = 1920

    def frames(n: int) -> tuple[list[float], list[float]]:
        enc_ms, dec_ms = [], []
        audio = 0.1 * mx.random.normal((1, 1, n * fs))
        mx.eval(audio)
        for i in range(n):
            t0 = time.perf_counter()
            codes = model.encode_step(audio[..., i * fs : (i + 1) * fs])
            mx.eval(codes)
            t1 = time.perf_counter()
            pcm = model.decode_step(codes)
            mx.eval(pcm)
            t2 = time.perf_counter()
            enc_ms.append((t1 - t0) * 1e3)
            dec_ms.append((t2 - t1) * 1e3)
        return enc_ms, dec_ms

    frames(args.warmup)
    _say({"ready": True, "version": kversion, "mlx": mx.__version__})  # pyright: ignore[reportAttributeAccessIssue]  (mlx's stubs omit __version__)
    for line in sys.stdin:
        if not line.strip():
            continue
        enc_ms, dec_ms = frames(int(line))
        _say({"encode_ms": enc_ms, "decode_ms": dec_ms})
    return 0


if __name__ == "__main__":
    sys.exit(main())
