"""Times Kyutai's MLX Moshi LM (the `moshi_mlx` package on PyPI) at the 7B config, or at our bench's skinny
shape of it (`--dim`, `--context`, `--float32`), with random weights.

Started by `python -m moshi_mlx.bench lm --kyutai-python PY` as `PY -I <this file>` in another interpreter,
where Kyutai's package is installed (see kyutai.py for the protocol). A standalone script: it imports
only mlx, the standard library and Kyutai's public API (`moshi_mlx.models.Lm`, `config_v0_1`, `LmGen`,
`moshi_mlx.utils.Sampler`), never our package. The model is quantized as Kyutai's releases are
(`nn.quantize` of the whole model), one parameter evaluated at a time so that the float initialisation of
the 7B never sits in memory whole. For each line "N" on stdin, N more `LmGen.step` calls are timed and
{"step_ms": [...]} is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time


def _say(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bits", type=int, default=4, help="0: bf16 (float32 with --float32), else 4 or 8")
    parser.add_argument("--float32", action="store_true", help="with --bits 0: float32 weights")
    parser.add_argument("--dim", type=int, default=None, help="width of both stacks (feed-forwards scaled alike)")
    parser.add_argument("--context", type=int, default=None, help="temporal context (default the 7B's)")
    parser.add_argument("--group-size", type=int, default=32)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    try:
        import mlx.core as mx
        import mlx.nn as nn
        from mlx.utils import tree_flatten

        from moshi_mlx import models, utils
    except ImportError as e:
        _say({"error": f"Kyutai's moshi_mlx (and mlx) must be importable by this interpreter: {e}"})
        return 2
    try:
        from importlib.metadata import version

        kversion = version("moshi_mlx")
    except Exception:  # noqa: BLE001 - the version is informative only
        kversion = "unknown"

    mx.random.seed(args.seed)
    cfg = models.config_v0_1()
    if args.dim is not None or args.context is not None:  # our bench's skinny shape (bench/lm.py `skinny`)

        def resized(t, **kw):
            dim = args.dim or t.d_model
            return dataclasses.replace(t, d_model=dim, dim_feedforward=t.dim_feedforward * dim // t.d_model, **kw)

        dep = dataclasses.replace(cfg.depformer, transformer=resized(cfg.depformer.transformer))
        temporal = resized(cfg.transformer, context=args.context or cfg.transformer.context)
        cfg = dataclasses.replace(cfg, transformer=temporal, depformer=dep)
    model = models.Lm(cfg)
    model.set_dtype(mx.float32 if args.float32 else mx.bfloat16)
    if args.bits:
        nn.quantize(model, bits=args.bits, group_size=args.group_size)
    for _, p in tree_flatten(model.parameters()):
        mx.eval(p)
    gen = models.LmGen(
        model=model, max_steps=args.max_steps, text_sampler=utils.Sampler(), audio_sampler=utils.Sampler(), check=False
    )
    n_user = cfg.other_codebooks

    def steps(n: int) -> list[float]:
        out = []
        for _ in range(n):
            user = mx.random.randint(0, 2048, (1, n_user)).astype(mx.int32)
            mx.eval(user)
            t0 = time.perf_counter()
            token = gen.step(user)
            mx.eval(token)
            out.append((time.perf_counter() - t0) * 1e3)
        return out

    steps(args.warmup)
    _say({"ready": True, "version": kversion, "mlx": mx.__version__})  # pyright: ignore[reportAttributeAccessIssue]  (mlx's stubs omit __version__)
    for line in sys.stdin:
        if line.strip():
            _say({"step_ms": steps(int(line))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
