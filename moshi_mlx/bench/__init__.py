"""`python -m moshi_mlx.bench <model>`: speed figures on this machine. Prints, asserts nothing.

Each model's benchmark lives in its own module (`mimi.py`, ...) exposing `add_arguments(parser)`
and `run(args) -> int`; this file dispatches, and words the comparisons they print (`faster_or_slower`).
"""

from __future__ import annotations

import importlib
import io
import sys
from typing import TYPE_CHECKING

from ..cli.args import CliParser
from ..errors import MoshiError

if TYPE_CHECKING:  # MLX is imported inside main(): a Ctrl-C while it loads stops the program (run_cli)
    import mlx.core as mx

# subcommand -> (module, one-line help)
_BENCHES = {
    "mimi": ("moshi_mlx.bench.mimi", "Mimi codec: streaming ms per 80 ms frame, batch throughput, memory"),
    "lm": ("moshi_mlx.bench.lm", "Moshi LM: ms per generation step (temporal vs depth), real-time factor, memory"),
    "stt": ("moshi_mlx.bench.stt", "the user's live transcript (run --transcribe-user): what it adds per frame"),
    "echo": ("moshi_mlx.bench.echo", "echo canceller: echo removed, convergence, the user kept (simulated rooms)"),
    "loop": ("moshi_mlx.bench.loop", "dialog loop: latency it adds itself (fake devices, real time, simulated model)"),
}


def peak_rss_bytes() -> int:
    """This process's peak resident memory in bytes (getrusage counts KiB on Linux, bytes on macOS)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def count_primitives(*outputs: mx.array) -> int:
    """Primitives that evaluating `outputs` runs: the nodes of their graph (`mx.export_to_dot`)."""
    import mlx.core as mx

    dot = io.StringIO()
    mx.export_to_dot(dot, *outputs)
    return dot.getvalue().count("shape=rectangle")


def faster_or_slower(before_s: float, after_s: float) -> str:
    """How a change from `before_s` to `after_s` per step reads: "1.30x faster" or "1.09x slower"."""
    if after_s <= before_s:
        return f"{before_s / after_s:.2f}x faster"
    return f"{after_s / before_s:.2f}x slower"


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(prog="python -m moshi_mlx.bench", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="model", required=True)
    modules = {}
    for name, (module_name, help_text) in _BENCHES.items():
        module = importlib.import_module(module_name)
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    try:
        from ..cli.tempdir import check_temp_folder

        check_temp_folder()
        return modules[args.model].run(args)
    except MoshiError as e:  # a config or file that cannot be used (the work has not started)
        print(f"error: {e}", file=sys.stderr)
        return 2


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from ..cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
