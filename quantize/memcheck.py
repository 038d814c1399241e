"""Peak memory of a large conversion, measured on a synthetic checkpoint (prints figures, asserts nothing).

    python -m quantize.memcheck [--dim 2048 --layers 16] [--workdir /tmp]

Writes a random-weight checkpoint in Kyutai's PyTorch layout at a mid-size config (the 7B's vocabularies
and depformer, a narrower temporal transformer: about 3.4 GB in bf16), converts it to bf16 + q8 + q4 in
a child process, and reports the child's peak resident memory for the conversion alone and for the
whole command (conversion, then loading back every file to verify it). Everything is deleted afterwards.

Measured here (Linux, 2 cores, mlx 0.32.4 CPU):
    dim 2048, 16 layers: 3.44 GB source -> 6.34 GB written; conversion 43 s, peak RSS 0.49 GB;
        whole command 87 s, peak 3.89 GB (loading the float file back)
    7B (dim 4096, 32 layers): 15.38 GB source -> 28.4 GB written; conversion 172 s, peak RSS 0.88 GB;
        whole command 304 s, peak 17.0 GB (the float 7B loaded back, with its 1.5 GB KV cache)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mlx.core as mx

from moshi_mlx.cli.args import CliParser, number
from moshi_mlx.cli.args import name as name_type
from moshi_mlx.config import LmConfig, preset_path, read_json_object
from moshi_mlx.weights.lm_torch import torch_layout_shapes

from .writer import Entry, StreamingSafetensors

GB = 1e9
HEAD_DIM = 128  # the 7B's: 4096 wide, 32 heads


def write_random_checkpoint(path: Path, cfg: LmConfig, seed: int = 0) -> int:
    """A bf16 random-weight checkpoint in the PyTorch layout, written tensor by tensor; returns its size."""
    shapes = torch_layout_shapes(cfg)
    w = StreamingSafetensors(path, [Entry(n, mx.bfloat16, s) for n, s in shapes.items()], {"format": "pt"})
    mx.random.seed(seed)
    for name, shape in shapes.items():
        x = mx.random.normal(shape)
        x = (1.0 + 0.1 * x) if name.endswith(".alpha") else 0.02 * x
        x = x.astype(mx.bfloat16)
        mx.eval(x)
        w.write(name, x)
        del x
        mx.clear_cache()
    w.close()
    return w.size


# Each child prints its own wall time and peak RSS last (RUSAGE_CHILDREN would mix the two runs).
_STAGE_ONLY = """
import sys, time
from pathlib import Path
from moshi_mlx.bench import peak_rss_bytes
from quantize.convert import Options, discard, plan, stage
from quantize.source import resolve
t = time.perf_counter()
staged = stage(plan(resolve(sys.argv[1], sys.argv[2]), Path(sys.argv[3])), progress=False)
print(time.perf_counter() - t, peak_rss_bytes())
discard(staged)
"""
_WHOLE = """
import sys, time
from moshi_mlx.bench import peak_rss_bytes
from quantize.__main__ import main
t = time.perf_counter()
rc = main(sys.argv[1:])
print(time.perf_counter() - t, peak_rss_bytes())
sys.exit(rc)
"""


def _child(code: str, args: list[str]) -> tuple[float, int]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    secs, peak = proc.stdout.split()[-2:]
    return float(secs), int(peak)


def main(argv: list[str] | None = None) -> int:
    p = CliParser(
        prog="python -m quantize.memcheck", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--dim",
        type=number(int, HEAD_DIM, 8192),
        default=2048,
        help=f"temporal transformer width, a multiple of {HEAD_DIM} up to 8192 (default 2048)",
    )
    p.add_argument("--layers", type=number(int, 1, 64), default=16, help="temporal transformer layers (default 16)")
    p.add_argument(
        "--workdir", default=None, type=name_type, help="where to put the temporary files (default: the system's)"
    )
    args = p.parse_args(argv)
    if args.dim % HEAD_DIM:
        p.error(f"--dim must be a multiple of {HEAD_DIM} (the 7B's head width), got {args.dim}")
    if args.workdir is not None and not os.path.isdir(args.workdir):
        p.error(f"--workdir {args.workdir} is not a folder: name an existing folder")
    raw = read_json_object(preset_path())
    raw |= {"dim": args.dim, "num_layers": args.layers, "num_heads": args.dim // HEAD_DIM}
    cfg = LmConfig.from_kyutai(raw)
    work = Path(tempfile.mkdtemp(prefix="quantize-memcheck-", dir=args.workdir))
    try:
        (work / "config.json").write_text(json.dumps(raw))
        src = work / "src" / "model.safetensors"
        src.parent.mkdir()
        t = time.perf_counter()
        size = write_random_checkpoint(src, cfg)
        print(
            f"synthetic checkpoint: dim {args.dim}, {args.layers} layers, {size / GB:.2f} GB bf16 "
            f"(written in {time.perf_counter() - t:.0f} s)"
        )
        out = work / "out"
        secs, peak = _child(_STAGE_ONLY, [str(src), str(work / "config.json"), str(out)])
        print(f"conversion only (bf16 + q8 + q4 written): {secs:.0f} s, peak RSS {peak / GB:.2f} GB")
        wall, peak_all = _child(
            _WHOLE,
            [
                str(src),
                "--config",
                str(work / "config.json"),
                "--out",
                str(out),
                "--no-progress",
                "--report-steps",
                "0",
            ],
        )
        written = {f.name: f.stat().st_size for f in out.iterdir() if f.suffix == ".safetensors"}
        total = sum(written.values())
        print(f"whole command (conversion + loading each file back): {wall:.0f} s, peak RSS {peak_all / GB:.2f} GB")
        print("outputs: " + ", ".join(f"{n} {s / GB:.2f} GB" for n, s in sorted(written.items())))
        print(f"for scale: source + outputs = {(size + total) / GB:.2f} GB")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":  # signals, OpenBLAS and exit as every front end (a Ctrl-C still removes the work folder)
    from moshi_mlx.cli.entry import run_cli

    run_cli(main)
