"""`python -m quantize SOURCE --out DIR`: PyTorch Moshi checkpoint -> MLX folder (bf16, q8, q4)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from moshi_mlx.cli.args import CliParser, name, number, print_error
from moshi_mlx.cli.entry import STDOUT_ERRORS
from moshi_mlx.cli.signals import exit_code
from moshi_mlx.cli.tempdir import check_temp_folder
from moshi_mlx.cli.wording import QUANTIZE_ADVICE, for_cli
from moshi_mlx.config import DEFAULT_PRESET
from moshi_mlx.errors import MoshiError
from moshi_mlx.release import GROUP_SIZE, MOSHI_FILES, TORCH_REPO

if TYPE_CHECKING:
    from .convert import Options, Plan, Staged
    from .report import FileReport
# numpy and MLX come with the modules imported inside the functions: a Ctrl-C while they load (0.3 s) then
# stops the program quietly, in main(), instead of printing a traceback

DESCRIPTION = f"""\
Make MLX weights for moshi_mlx (and Kyutai's moshi_mlx) from a PyTorch-layout Moshi checkpoint, such as
Kyutai's {TORCH_REPO} or a fine-tune saved in the same layout.

Writes into DIR, in Kyutai's MLX release layout: {MOSHI_FILES[None]} (float), {MOSHI_FILES[8]} (8 bits,
group {GROUP_SIZE[8]}) and {MOSHI_FILES[4]} (4 bits, group {GROUP_SIZE[4]}), or only the precision given with
--q-bits; a config.json (Kyutai's LM schema with "moshi_name", "mimi_name", "tokenizer_name", the mlx-lm style
"quantization" of the file named by "moshi_name", and "model_files" giving each file's quantization);
and copies of the text tokenizer and Mimi checkpoint when the source has them. Then it loads every file
back, runs a generation step, and prints how closely each quantized model agrees with the float one.
Run the result with: python -m moshi_mlx.run --hf-repo DIR"""

EPILOG = f"""\
examples:
  python -m quantize {TORCH_REPO} --out ~/models/moshiko-mlx
  python -m quantize ./my-finetune/ --out ./my-finetune-mlx --q-bits 4 --mixed
  python -m quantize ckpt/consolidated.safetensors --config ckpt/config.json --out out --q-bits 8

Nothing is written to DIR until every file is complete and verified; existing files are kept unless
--force. The conversion reads and writes one tensor at a time: 0.9 GB peak memory for a 7B checkpoint
(15.4 GB in bf16). Verifying loads each file in turn, so the float 7B needs about 17 GB; a file too large
for this machine's memory is reported as not verified (and the agreement report skipped) rather than
failing the conversion."""


def build_parser() -> argparse.ArgumentParser:
    from .convert import DTYPES
    from .report import MAX_REPORT_STEPS

    p = CliParser(
        prog="python -m quantize",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        type=name,
        help="PyTorch-layout checkpoint: a .safetensors file, a folder holding model.safetensors "
        "(or consolidated.safetensors, or the file config.json names), or a Hugging Face repo "
        f"id such as {TORCH_REPO} (downloaded into the hub cache)",
    )
    p.add_argument("--out", required=True, metavar="DIR", type=name, help="output folder (created if missing)")
    p.add_argument(
        "--config",
        metavar="CONFIG.json",
        type=name,
        help="the model's JSON config in Kyutai's schema; default: config.json next to the "
        f"checkpoint, else the released 7B config ({DEFAULT_PRESET})",
    )
    p.add_argument(
        "--q-bits",
        type=int,
        metavar="{4,8}",
        help="write only this precision (4 or 8 bits); default: float, 8-bit and 4-bit files",
    )
    p.add_argument(
        "--q-group-size",
        type=int,
        metavar="N",
        help=f"quantization group size (32, 64 or 128); default: {GROUP_SIZE[4]} for 4 bits, {GROUP_SIZE[8]} "
        "for 8 bits, as Kyutai's releases",
    )
    p.add_argument(
        "--dtype",
        default="bfloat16",
        choices=tuple(DTYPES),
        metavar="{" + ",".join(DTYPES) + "}",
        help="float dtype of the float file, of the norms and of the scales/biases (default: "
        "bfloat16, as Kyutai's releases; weights are cast to it before quantizing)",
    )
    p.add_argument(
        "--mixed",
        action="store_true",
        help="mixed-precision 4-bit file: embeddings and output heads at 8 bits (group 64), the "
        "transformers at 4 bits; clearly better agreement for ~4%% more size at 7B. Such a "
        "file loads in moshi_mlx, not in Kyutai's moshi_mlx (which quantizes uniformly)",
    )
    p.add_argument("--force", action="store_true", help="replace files already in DIR")
    p.add_argument(
        "--report-steps",
        type=number(int, 0, MAX_REPORT_STEPS),
        default=32,
        metavar="N",
        help=f"teacher-forced steps of the agreement report (default 32, at most {MAX_REPORT_STEPS}; "
        "0: only verify that each file loads and runs)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


@dataclass(frozen=True)
class Result:
    files: list[Path]
    reports: list[FileReport]


def prepare(
    source: str,
    out: str | Path,
    config: str | None = None,
    opts: Options | None = None,
    report_steps: int = 32,
    download: Callable[..., str] | None = None,
    echo: Callable[[str], object] = print,
) -> Plan:
    """Everything checked before any work: the source and its config, the precisions, --out (default
    options: Options()).

    Raises:
        MoshiError: bad input; nothing was written (the command exits with status 2).
    """
    from .convert import Options, plan
    from .report import check_report_steps
    from .source import resolve
    from .writer import output_error

    opts = Options() if opts is None else opts
    check_report_steps(report_steps)
    src = resolve(source, config, download)
    echo(f"source: {src.description}\nconfig: {src.config_origin}")
    try:
        job = plan(src, out, opts)
    except STDOUT_ERRORS:
        raise
    except OSError as e:  # a file that cannot be read (or --out that cannot be looked into)
        raise output_error(e, Path(out)) from None
    check_report_steps(report_steps, job.cfg)
    return job


def execute(job: Plan, report_steps: int = 32, progress: bool = True, echo: Callable[[str], object] = print) -> Result:
    """Convert, verify and report, then move the files into --out.

    Raises:
        MoshiError: the work failed; nothing was left in --out (the command exits with status 1).
    """
    from .convert import convert
    from .report import format_report, verify_and_report
    from .writer import output_error

    reports: list[FileReport] = []

    def verify(staged: Staged) -> None:
        reference = None
        if all(o.recipe is not None for o in staged.outputs):
            reference = (job.source.weights, job.cfg, job.dtype)
        named = (job.out, job.source.description)
        reports.extend(verify_and_report(staged.folder, staged.config, staged.outputs, reference, report_steps, named))
        echo(format_report(reports, report_steps))

    try:
        files = convert(job, verify, progress)
    except STDOUT_ERRORS:  # the report could not be printed (run_cli says why): not --out's fault
        raise
    except OSError as e:  # a read-only or full file system: the staging folder is already gone
        raise output_error(e, job.out) from None
    echo(f"wrote {job.out}: " + ", ".join(f.name for f in files))
    return Result(files, reports)


def run(
    source: str,
    out: str | Path,
    config: str | None = None,
    opts: Options | None = None,
    report_steps: int = 32,
    download: Callable[..., str] | None = None,
    echo: Callable[[str], object] = print,
) -> Result:
    """Resolve the source, convert, verify and report, then move the files into `out` (default options:
    Options())."""
    job = prepare(source, out, config, opts, report_steps, download, echo)
    return execute(job, report_steps, True if opts is None else opts.progress, echo)


def main(argv: list[str] | None = None) -> int:
    from .convert import Options
    from .recipes import check_options

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        try:
            check_options(args.q_bits, args.q_group_size, args.mixed)
        except MoshiError as e:
            parser.error(str(e))
    except SystemExit as e:  # --help, or a malformed command line (the parser printed why)
        return int(e.code or 0)
    try:
        check_temp_folder()
    except MoshiError as e:
        print_error(str(e))
        return 2
    opts = Options(
        bits=args.q_bits,
        group_size=args.q_group_size,
        dtype=args.dtype,
        mixed=args.mixed,
        force=args.force,
        progress=not args.no_progress,
    )
    code = 2  # bad input, refused before any work
    try:
        job = prepare(args.source, args.out, args.config, opts, args.report_steps)
        code = 1  # the work failed
        execute(job, args.report_steps, opts.progress)
    except MoshiError as e:
        print_error(for_cli(e, QUANTIZE_ADVICE))
        return code
    except KeyboardInterrupt as e:  # Ctrl-C (130); SIGTERM (143), SIGHUP (129) under run_cli
        print("stopped: nothing was written", file=sys.stderr)
        return exit_code(e)
    return 0


def cli() -> None:
    """Console-script entry point: Linux re-runs on OpenBLAS first (moshi_mlx.cli.entry.run_cli)."""
    from moshi_mlx.cli.entry import run_cli

    run_cli(main)


if __name__ == "__main__":
    cli()
