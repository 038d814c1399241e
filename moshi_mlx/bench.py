"""`python -m moshi_mlx.bench mimi|lm [options]`: print speed and memory figures; asserts nothing."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("lm",):
        print("usage: python -m moshi_mlx.bench lm [--precision q4,q8,bf16] [--steps N]", file=sys.stderr)
        return 2
    from .bench_lm import main as bench_lm

    return bench_lm(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
