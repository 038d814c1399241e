"""Bad input to `python -m moshi_mlx.run` and `python -m quantize`, as a person gives it: one table of cases.

Each case names the program, its arguments, the exit code it must end with and words its one `error:`
line must hold; `setup` writes what the case needs into its temporary folder (a broken config, a
checkpoint with a wrong tensor). Every case also checks that no traceback appeared, that every file
that existed before the run is unchanged (nothing lost or overwritten) and that no file appeared.

Placeholders in the arguments (and in `env`): {tmp} is the case's folder, {e2e} the tiny real model (Kyutai's MLX
layout), {lm} the small PyTorch-layout checkpoint folder, {stt} and {hibiki} the tiny STT and Hibiki models'
folders; {tmp}/in.wav and {tmp}/out.wav exist before every case (out.wav holds a previous answer that must
survive).

Cases run in-process through `main(argv)` (cheap; stderr and the exit code are what a person sees)
unless `subprocess=True`, which runs `python -m ...` for real: use it for a few cases per kind, as each
costs a second or more. To add a case, append a row to CASES.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from support.cli import E2E, REPO, Ran, assert_one_line_error, cli_env, run_module

LM = REPO / "tests" / "assets" / "lm"
STT = REPO / "tests" / "assets" / "stt"
HIBIKI = REPO / "tests" / "assets" / "hibiki"
PLACES = {"e2e": str(E2E), "lm": str(LM), "stt": str(STT), "hibiki": str(HIBIKI)}
RUN, QUANTIZE, BENCH, MEMCHECK = "moshi_mlx.run", "quantize", "moshi_mlx.bench", "quantize.memcheck"
FILE_MODE = ("--hf-repo", "{e2e}", "--input", "{tmp}/in.wav", "--output", "{tmp}/out.wav")
QUANT = (
    "{lm}/lm_small_torch.safetensors",
    "--config",
    "{lm}/lm_small.json",
    "--out",
    "{tmp}/q",
    "--no-progress",
    "--report-steps",
    "2",
)


# -- setups: write what a case needs into its folder -------------------------------------------
def _config(path: Path, src: Path = E2E / "config.json", **changes) -> None:
    raw = json.loads(src.read_text())
    raw.update(changes)
    path.write_text(json.dumps(raw))


def lm_config(**changes) -> Callable[[Path], None]:
    """{tmp}/bad.json: the e2e model's LM config with `changes`."""
    return lambda tmp: _config(tmp / "bad.json", **changes)


def quant_config(**changes) -> Callable[[Path], None]:
    """{tmp}/bad.json: the small PyTorch checkpoint's LM config with `changes`."""
    return lambda tmp: _config(tmp / "bad.json", LM / "lm_small.json", **changes)


def text_file(name: str, text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_text(text)


def repo_copy(tmp: Path) -> Path:
    """{tmp}/repo: a copy of the e2e model folder (1.3 MB; links out of a model folder are refused), where a
    case replaces the file it breaks."""
    repo = tmp / "repo"
    shutil.copytree(E2E, repo)
    return repo


def mimi_config(section: str, **changes) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        repo = repo_copy(tmp)
        raw = json.loads((E2E / "mimi_config.json").read_text())
        raw[section].update(changes)
        (repo / "mimi_config.json").unlink()
        (repo / "mimi_config.json").write_text(json.dumps(raw))

    return setup


def int32_tensor(file: str, name: str) -> Callable[[Path], None]:
    """{tmp}/repo with one float tensor of `file` stored as int32 (it would load, silently changed)."""

    def setup(tmp: Path) -> None:
        repo = repo_copy(tmp)
        tensors = dict(mx.load(str(E2E / file)))
        assert mx.issubdtype(tensors[name].dtype, mx.floating)
        tensors[name] = tensors[name].astype(mx.int32)
        (repo / file).unlink()
        mx.save_safetensors(str(repo / file), tensors)

    return setup


def link_loop(tmp: Path) -> None:
    os.symlink(tmp / "loop", tmp / "loop")


def repo_link_loop(name: str) -> Callable[[Path], None]:
    """{tmp}/repo whose `name` is a link that points at itself."""

    def setup(tmp: Path) -> None:
        (repo_copy(tmp) / name).unlink()
        os.symlink(name, tmp / "repo" / name)

    return setup


def nested_header(tmp: Path) -> None:
    """{tmp}/repo whose LM file has a safetensors header nested 100000 levels deep."""
    header = b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    repo = repo_copy(tmp)
    (repo / "model.q4.safetensors").unlink()
    (repo / "model.q4.safetensors").write_bytes(len(header).to_bytes(8, "little") + header)


@dataclass(frozen=True)
class Case:
    id: str
    module: str  # RUN, QUANTIZE, BENCH or MEMCHECK
    argv: tuple[str, ...]
    code: int  # expected exit status
    needles: tuple[str, ...] = ()  # words the error line holds (case-insensitive)
    setup: Callable[[Path], None] | None = None
    subprocess: bool = False  # run `python -m module` for real (slower)
    env: tuple[tuple[str, str], ...] = ()  # environment variables set for the run ({tmp} allowed)


NESTED = "[" * 100_000 + "]" * 100_000
CASES = [
    # -- run: numeric flags, refused while the command line is read (before any model loads)
    Case("run-temp-nan", RUN, (*FILE_MODE, "--temp", "nan"), 2, ("--temp", "nan"), subprocess=True),
    Case("run-text-temp-inf", RUN, (*FILE_MODE, "--text-temp", "inf"), 2, ("--text-temp", "inf")),
    Case("run-temp-negative", RUN, (*FILE_MODE, "--temp", "-0.5"), 2, ("--temp",)),
    Case("run-seed-negative", RUN, (*FILE_MODE, "--seed", "-1"), 2, ("--seed", "18446744073709551615")),
    Case("run-seed-2**70", RUN, (*FILE_MODE, "--seed", str(2**70)), 2, ("--seed",), subprocess=True),
    Case("run-seed-not-a-number", RUN, (*FILE_MODE, "--seed", "2**70"), 2, ("--seed",)),
    Case("run-top-k-0", RUN, (*FILE_MODE, "--top-k", "0"), 2, ("--top-k",)),
    Case("run-text-top-k-huge", RUN, (*FILE_MODE, "--text-top-k", str(10**12)), 2, ("--text-top-k",)),
    Case("run-max-lag-negative", RUN, (*FILE_MODE, "--max-lag", "-1"), 2, ("--max-lag",)),
    Case("run-max-lag-huge", RUN, (*FILE_MODE, "--max-lag", "1000000"), 2, ("--max-lag", "250")),
    Case(
        "run-echo-suppressor-without-cancel", RUN, ("--no-echo-cancel", "--echo-suppressor"), 2, ("--no-echo-cancel",)
    ),
    # -- run: live-audio flags in file mode were silently ignored
    *(
        Case(f"run{flag}-in-file-mode", RUN, (*FILE_MODE, *([flag, "1"] if "device" in flag else [flag])), 2, (flag,))
        for flag in ("--input-device", "--output-device", "--no-echo-cancel", "--echo-suppressor")
    ),
    Case("run-unknown-flag", RUN, (*FILE_MODE, "--tmep", "0.5"), 2, ("unrecognized", "--tmep")),
    Case("run-output-without-input", RUN, ("--output", "{tmp}/out.wav"), 2, ("--input",)),
    Case("run-kv-bits-4", RUN, (*FILE_MODE, "--kv-bits", "4"), 2, ("--kv-bits",)),
    # -- run: outputs that are not files (a file named "-" used to appear in the current folder)
    Case("run-output-dash", RUN, (*FILE_MODE[:4], "--output", "-"), 2, ("--output -", "standard output")),
    Case(  # a folder meant, a file named "answers" written
        "run-output-ends-in-a-slash", RUN, (*FILE_MODE[:4], "--output", "{tmp}/answers/"), 2, ("--output", "a folder")
    ),
    Case("run-transcript-dash", RUN, (*FILE_MODE, "--transcript", "-"), 2, ("--transcript -", "standard output")),
    # -- outputs over the model's own files: the run read its config, then replaced it with the transcript
    Case(
        "run-transcript-over-the-config",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/c.json", "--transcript", "{tmp}/c.json"),
        2,
        ("--transcript", "same file as --config"),
        text_file("c.json", "{}"),
    ),
    Case(
        "run-transcript-over-the-models-config",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:], "--transcript", "{tmp}/repo/config.json"),
        2,
        ("--transcript", "same file as", "--hf-repo"),
        repo_copy,
    ),
    # -- empty names: read as "." (the current folder) they were silently ignored (--transcript, --record),
    # failed after the work (--output) or gave riddles ("the audio input . is a folder")
    *(
        Case(f"run{flag}-empty", RUN, (*FILE_MODE, flag, ""), 2, (flag, "empty"))
        for flag in ("--output", "--transcript", "--record", "--input", "--hf-repo", "--moshi-weight", "--config")
    ),
    # -- a name longer than the file system takes (255 bytes a part): an OSError traceback wherever it was looked at
    *(
        Case(f"run{flag}-name-too-long", RUN, (*FILE_MODE, flag, "{tmp}/" + "a" * 300 + ".wav"), 2, (flag, "too long"))
        for flag in ("--input", "--output", "--record", "--config", "--hf-repo")
    ),
    Case("quantize-source-name-too-long", QUANTIZE, ("{tmp}/" + "a" * 300, *QUANT[1:]), 2, ("SOURCE", "too long")),
    Case("bench-lm-config-name-too-long", BENCH, ("lm", "--config", "a" * 300), 2, ("--config", "too long")),
    Case(
        "run-input-begins-with-dash",
        RUN,
        (*FILE_MODE[:2], "--input", "-me.wav", *FILE_MODE[4:]),
        2,
        ("--input", "--flag=-value"),
    ),
    Case("quantize-out-empty", QUANTIZE, (*QUANT[:3], "--out", "", *QUANT[5:]), 2, ("--out", "empty")),
    Case("quantize-source-empty", QUANTIZE, ("", *QUANT[1:]), 2, ("SOURCE", "empty")),
    # -- the temporary folder, where MLX compiles its CPU kernels: the run used to fail at its first step
    Case(
        "run-tmpdir-missing", RUN, FILE_MODE, 2, ("TMPDIR={tmp}/gone", "not a folder"), env=(("TMPDIR", "{tmp}/gone"),)
    ),
    Case("run-tmpdir-a-file", RUN, FILE_MODE, 2, ("TMPDIR=",), env=(("TMPDIR", "{tmp}/in.wav"),)),
    Case("quantize-tmpdir-missing", QUANTIZE, QUANT, 2, ("TMPDIR=",), env=(("TMPDIR", "{tmp}/gone"),)),
    # a malformed MOSHI_MLX_CPU_LANES was said once the model had loaded (the 7B: after reading 4 GB), exit 1
    Case(
        "run-cpu-lanes-word", RUN, FILE_MODE, 2, ("MOSHI_MLX_CPU_LANES", "'two'"), env=(("MOSHI_MLX_CPU_LANES", "two"),)
    ),
    # MOSHI_MLX_COMPILE=banana was read as "on", silently
    Case(
        "run-compile-word", RUN, FILE_MODE, 2, ("MOSHI_MLX_COMPILE", "'banana'"), env=(("MOSHI_MLX_COMPILE", "banana"),)
    ),
    # -- run: LM configs with absurd values, refused when read (a delay of 1e9 used to segfault)
    Case(
        "run-config-delay-1e9",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("delays", "1000000000", "0 to"),
        lm_config(delays=[0, 10**9] + [1] * 15),
        subprocess=True,
    ),
    Case(
        "run-config-delay-fraction",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("delays", "integer"),
        lm_config(delays=[0, 1.5] + [1] * 15),
    ),
    Case(
        "run-config-num-heads-0",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("num_heads = 0", "1 to"),
        lm_config(num_heads=0),
    ),
    Case(
        "run-config-heads-do-not-divide",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("num_heads 3",),
        lm_config(num_heads=3),
    ),
    Case(
        "run-config-context-0",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("context = 0",),
        lm_config(context=0),
    ),
    Case(
        "run-config-dim-string",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("dim", "integer"),
        lm_config(dim="128"),
    ),
    Case(
        "run-config-causal-string",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("causal", "true or false"),
        lm_config(causal="false"),
    ),
    Case(
        "run-config-unknown-gating",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("gating", "silu"),
        lm_config(gating="swish"),
    ),
    Case(
        "run-config-unknown-model-type-with-stt-config",  # was "stt_config belongs to speech-to-text models only"
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("model_type 'whisper'", "not a model this port knows"),
        lm_config(model_type="whisper", stt_config={"audio_delay_seconds": 0.5}),
    ),
    Case(  # was "sampling temp -1 is out of range", with no --temp given
        "run-config-gen-config-temp-negative",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("bad.json", "lm_gen_config", "temp -1"),
        lm_config(lm_gen_config={"temp": -1}),
    ),
    Case(  # was ignored
        "run-config-gen-config-not-an-object",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("bad.json", "lm_gen_config", "object"),
        lm_config(lm_gen_config=3),
    ),
    Case("run-config-card-0", RUN, (*FILE_MODE, "--config", "{tmp}/bad.json"), 2, ("card = 0",), lm_config(card=0)),
    Case(
        "run-config-dep-q-above-n-q",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("dep_q",),
        lm_config(dep_q=17),
    ),
    Case(
        "run-config-nested",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("nested",),
        text_file("bad.json", '{"dim": ' + NESTED + "}"),
        subprocess=True,
    ),
    Case(
        "run-config-nan-literal",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("nan",),
        text_file("bad.json", '{"dim": NaN}'),
    ),
    Case("run-config-is-a-device", RUN, (*FILE_MODE, "--config", "/dev/null"), 2, ("/dev/null", "not a regular file")),
    Case(
        "run-config-not-json",
        RUN,
        (*FILE_MODE, "--config", "{tmp}/bad.json"),
        2,
        ("not valid json",),
        text_file("bad.json", "dim: 128"),
    ),
    # -- run: the repository's Mimi config
    Case(
        "run-mimi-kernel-huge",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        2,
        ("kernel_size", "1 to 64"),
        mimi_config("seanet", kernel_size=10**6),
    ),
    Case(
        "run-mimi-heads-0",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        2,
        ("mimi", "num_heads = 0"),
        mimi_config("transformer", num_heads=0),
    ),
    Case(
        "run-mimi-context-0",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        2,
        ("mimi", "context = 0"),
        mimi_config("transformer", context=0),
    ),
    Case(
        "run-model-config-is-a-folder",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        2,
        ("config.json", "not a file"),
        lambda tmp: (repo_copy(tmp) / "config.json").unlink() or (tmp / "repo" / "config.json").mkdir(),
    ),
    # -- run: checkpoints (these load the model, then refuse: exit 1)
    Case(
        "run-mimi-of-another-config",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        1,
        ("does not fit", "mimi_config_name", "config.json"),
        lambda tmp: (repo_copy(tmp) / "config.json").unlink(),
    ),
    Case(
        "run-lm-int32-in-float-slot",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        1,
        ("out_norm.weight", "int32"),
        int32_tensor("model.q4.safetensors", "out_norm.weight"),
    ),
    Case(
        "run-mimi-int32-in-float-slot",
        RUN,
        ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
        1,
        ("encoder.model.0.weight", "int32"),
        int32_tensor("tokenizer-e351c8d8-checkpoint125.safetensors", "encoder.model.0.conv.conv.weight"),
    ),
    Case("run-lm-nested-header", RUN, ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]), 1, ("nested",), nested_header),
    # -- quantize: flags
    Case(
        "quantize-report-steps-30000",
        QUANTIZE,
        (*QUANT, "--report-steps", "30000"),
        2,
        ("--report-steps", "1000"),
        subprocess=True,
    ),
    Case(  # fewer steps than the longest delay: a ValueError traceback from the report, after the conversion
        "quantize-report-steps-below-the-delays",
        QUANTIZE,
        ("{hibiki}/hibiki_small_torch.safetensors", "--config", "{hibiki}/hibiki_small.json", *QUANT[3:]),
        2,
        ("--report-steps 2", "at least 3"),
    ),
    Case("quantize-report-steps-negative", QUANTIZE, (*QUANT, "--report-steps", "-1"), 2, ("--report-steps",)),
    Case("quantize-q-bits-3", QUANTIZE, (*QUANT, "--q-bits", "3"), 2, ("unsupported bit width 3",)),
    Case("quantize-group-48", QUANTIZE, (*QUANT, "--q-group-size", "48"), 2, ("unsupported group size 48",)),
    Case("quantize-mixed-8-bit", QUANTIZE, (*QUANT, "--q-bits", "8", "--mixed"), 2, ("--mixed",)),
    Case("quantize-dtype-int8", QUANTIZE, (*QUANT, "--dtype", "int8"), 2, ("--dtype", "int8")),
    Case("quantize-source-a-device", QUANTIZE, ("/dev/null", *QUANT[1:]), 2, ("/dev/null", "not a regular file")),
    Case("quantize-no-out", QUANTIZE, ("{lm}/lm_small_torch.safetensors",), 2, ("--out",)),
    Case("quantize-memcheck-dim-0", MEMCHECK, ("--dim", "0"), 2, ("--dim",), subprocess=True),
    Case("quantize-memcheck-dim-odd", MEMCHECK, ("--dim", "200"), 2, ("--dim",), subprocess=True),
    *(  # a FileNotFoundError / NotADirectoryError traceback from mkdtemp
        Case(f"quantize-memcheck-workdir-{kind}", MEMCHECK, ("--workdir", where), 2, ("--workdir", "folder"))
        for kind, where in (("missing", "{tmp}/nope"), ("a-file", "{tmp}/in.wav"))
    ),
    # -- quantize: configs (read before converting: refused before any work, as run does)
    Case(
        "quantize-config-delay-1e9",
        QUANTIZE,
        (*QUANT[:1], "--config", "{tmp}/bad.json", *QUANT[3:]),
        2,
        ("delays", "1000000000"),
        quant_config(delays=[0, 10**9] + [1] * 15),
    ),
    Case(
        "quantize-config-nested",
        QUANTIZE,
        (*QUANT[:1], "--config", "{tmp}/bad.json", *QUANT[3:]),
        2,
        ("nested",),
        text_file("bad.json", NESTED),
        subprocess=True,
    ),
    # -- bench: every flag checked while the command line is read (these were tracebacks after building the
    # model, empty figures, or hangs)
    Case("bench-mimi-frames-0", BENCH, ("mimi", "--frames", "0"), 2, ("--frames",)),
    Case("bench-mimi-warmup-negative", BENCH, ("mimi", "--warmup", "-1"), 2, ("--warmup",)),
    Case("bench-mimi-seconds-nan", BENCH, ("mimi", "--seconds", "nan"), 2, ("--seconds",)),
    Case("bench-mimi-batch-0", BENCH, ("mimi", "--batch", "0"), 2, ("--batch",)),
    Case("bench-mimi-codebooks-100", BENCH, ("mimi", "--num-codebooks", "100"), 2, ("--num-codebooks",)),
    Case("bench-mimi-rounds-0", BENCH, ("mimi", "--rounds", "0"), 2, ("--rounds",)),
    Case(
        "bench-mimi-kyutai-python-missing",
        BENCH,
        ("mimi", "--kyutai-python", "{tmp}/nope"),
        2,
        ("--kyutai-python", "nope"),
    ),
    Case(
        "bench-mimi-kyutai-python-not-a-program",
        BENCH,
        ("mimi", "--kyutai-python", "{tmp}/in.wav"),
        2,
        ("--kyutai-python", "in.wav"),
    ),
    Case("bench-lm-steps-0", BENCH, ("lm", "--steps", "0"), 2, ("--steps",)),
    Case("bench-lm-bandwidth-0", BENCH, ("lm", "--bandwidth-gbs", "0"), 2, ("--bandwidth-gbs",)),
    Case("bench-lm-bandwidth-nan", BENCH, ("lm", "--bandwidth-gbs", "nan"), 2, ("--bandwidth-gbs",)),
    Case("bench-lm-precision-unknown", BENCH, ("lm", "--precision", "q4,q3"), 2, ("--precision", "q3", "bf16")),
    Case("bench-lm-config-missing", BENCH, ("lm", "--config", "{tmp}/nope.json"), 2, ("nope.json", "does not exist")),
    Case(  # was "unknown keys [...]: use Kyutai's own `moshi` package for it"
        "bench-lm-config-is-mimis",
        BENCH,
        ("lm", "--config", "{e2e}/mimi_config.json"),
        2,
        ("mimi_config.json", "Mimi", "not a language model's"),
    ),
    Case(  # an IndexError traceback from building a depformer it has not
        "bench-lm-config-stt",
        BENCH,
        ("lm", "--config", "{stt}/config.json", "--steps", "1"),
        2,
        ("speech-to-text", "bench stt"),
    ),
    Case("bench-loop-seconds-0", BENCH, ("loop", "--seconds", "0"), 2, ("--seconds",)),
    Case("bench-loop-compute-negative", BENCH, ("loop", "--compute-ms", "-5"), 2, ("--compute-ms",)),
    Case("bench-loop-compute-nan", BENCH, ("loop", "--compute-ms", "nan"), 2, ("--compute-ms",)),
    Case("bench-loop-compute-none", BENCH, ("loop", "--compute-ms"), 2, ("--compute-ms",)),
    Case(
        "bench-tmpdir-missing",
        BENCH,
        ("loop", "--seconds", "0.5", "--compute-ms", "0"),
        2,
        ("TMPDIR=",),
        env=(("TMPDIR", "{tmp}/gone"),),
    ),
    # a link that points at itself (ELOOP): Path.resolve raised RuntimeError("Symlink loop"), a traceback
    *(
        Case(f"{module}-{flag[2:]}-link-loop", module, (*argv, flag, "{tmp}/loop"), 2, ("loop",), setup=link_loop)
        for module, argv, flag in (
            (RUN, FILE_MODE[:4] + ("--output", "{tmp}/answer.wav"), "--output"),
            (RUN, FILE_MODE, "--record"),
            (RUN, FILE_MODE, "--transcript"),
            (QUANTIZE, QUANT[:3], "--out"),
        )
    ),
    *(  # was a traceback (the model file), or read as missing: the default config, then a baffling Mimi error
        Case(
            f"run-repo-{name}-link-loop",
            RUN,
            ("--hf-repo", "{tmp}/repo", *FILE_MODE[2:]),
            2,
            (name, "broken link"),
            setup=repo_link_loop(name),
        )
        for name in ("config.json", "model.q4.safetensors")
    ),
]


# -- running a case ----------------------------------------------------------------------------
def _snapshot(root: Path) -> dict[str, str]:
    """Every file and folder under root (links not followed) -> its content hash ("dir" for folders)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():  # its target, never followed (a link may point at itself)
            out[rel] = f"link to {os.readlink(p)}"
        else:
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _in_process(module: str, argv: list[str], capsys) -> Ran:
    if module == RUN:
        from moshi_mlx.run import main
    elif module == BENCH:
        from moshi_mlx.bench import main
    elif module == MEMCHECK:
        from quantize.memcheck import main
    else:
        from quantize.__main__ import main
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as e:  # argparse exits; the program's process would end with this status
        code = e.code if isinstance(e.code, int) else 1
    out, err = capsys.readouterr()
    return Ran(("main", module, *argv), code, out, err)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gets_one_line_and_loses_nothing(case: Case, tmp_path: Path, capsys, monkeypatch) -> None:
    sf.write(str(tmp_path / "in.wav"), np.full(4800, 0.1, np.float32), 24_000)
    (tmp_path / "out.wav").write_bytes(b"a previous answer, not to be overwritten")
    if case.setup is not None:
        case.setup(tmp_path)
    argv = [a.format(tmp=tmp_path, **PLACES) for a in case.argv]
    env = {k: v.format(tmp=tmp_path, **PLACES) for k, v in case.env}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    before = _snapshot(tmp_path)
    if case.subprocess:
        r = run_module(case.module, *argv, env=cli_env(**env))
    else:
        r = _in_process(case.module, argv, capsys)
    assert_one_line_error(r, case.code, *(n.format(tmp=tmp_path) for n in case.needles))
    assert _snapshot(tmp_path) == before, r.why()


def test_the_table_runs_a_few_cases_for_real() -> None:
    """Most cases run in-process; each kind (flags, configs, quantize) also runs as a real process."""
    real = {c.id for c in CASES if c.subprocess}
    assert {"run-temp-nan", "run-config-delay-1e9", "quantize-report-steps-30000"} <= real
    assert len(real) <= 8, "subprocess cases cost seconds each"
    assert len({c.id for c in CASES}) == len(CASES)


# -- NaN and infinity in the input: replaced with silence, said once ---------------------------
def test_non_finite_samples_in_a_file_are_silenced_and_said(tmp_path: Path, capsys) -> None:
    from moshi_mlx.run import main

    rng = np.random.default_rng(0)
    clean = (0.1 * rng.standard_normal(24_000)).astype(np.float32)
    clean[2000:2500] = 0.0
    broken = clean.copy()
    broken[2000:2400], broken[2450] = np.nan, np.inf
    sf.write(str(tmp_path / "broken.wav"), broken, 24_000, subtype="FLOAT")
    sf.write(str(tmp_path / "clean.wav"), clean, 24_000, subtype="FLOAT")
    greedy = ["--hf-repo", str(E2E), "--temp", "0", "--text-temp", "0"]
    for name in ("broken", "clean"):
        argv = [*greedy, "--input", str(tmp_path / f"{name}.wav"), "--output", str(tmp_path / f"{name}.out.wav")]
        assert main(argv) == 0
        err = capsys.readouterr().err
        assert err.count("NaN or infinite") == (name == "broken"), err
    a, _ = sf.read(str(tmp_path / "broken.out.wav"), dtype="float32")
    b, _ = sf.read(str(tmp_path / "clean.out.wav"), dtype="float32")
    np.testing.assert_array_equal(a, b)  # Moshi heard silence where the file was broken, nothing else


def test_non_finite_microphone_frames_are_silenced_once() -> None:
    from moshi_mlx.audio.devices import AudioIO
    from moshi_mlx.audio.fake import FakeClock, FakeStreamFactory
    from moshi_mlx.dialog.events import Notice, SessionEnded, SessionStarted
    from moshi_mlx.dialog.loop import FRAME, ModelLoop
    from support.fake_models import EchoModel

    model = EchoModel()
    loop = ModelLoop(lambda: model).start()
    try:
        assert loop.loaded.wait(5)
        backend = FakeStreamFactory(input_rate=24_000, output_rate=24_000)
        loop.begin_session(AudioIO(backend=backend, prebuffer_ms=0.0))
        deadline = time.monotonic() + 10
        while not isinstance(loop.events.get(timeout=10), SessionStarted):
            assert time.monotonic() < deadline
        mic = np.full(FRAME * 6, 0.25, np.float32)
        mic[FRAME // 2], mic[3 * FRAME : 3 * FRAME + 7] = np.inf, np.nan  # two bad stretches, one note
        backend.input.push_input(mic)
        with FakeClock([backend.input, backend.output], speed=8.0):
            while backend.input.pending_input() > 0 or model.steps < 5:
                assert time.monotonic() < deadline
                time.sleep(0.01)
        assert loop.end_session(10)
    finally:
        loop.close()
    events = []
    while not loop.events.empty():
        events.append(loop.events.get())
    assert [e for e in events if isinstance(e, Notice)] and sum(isinstance(e, Notice) for e in events) == 1
    assert any(isinstance(e, SessionEnded) for e in events)
    heard = np.concatenate(model.inputs)
    assert np.isfinite(heard).all()
    assert (heard == 0).sum() == 8 and (heard == 0.25).sum() == heard.size - 8  # only the bad samples


def test_the_app_shows_the_notice_in_its_status_bar(qtbot, tmp_path: Path) -> None:
    pytest.importorskip("PySide6")
    from moshi_mlx.dialog.events import Notice
    from moshi_mlx.dialog.loop import NON_FINITE_NOTE
    from support.app_window import App

    a = App(qtbot, tmp_path)
    try:
        a.ctl._loop_event.emit(a.ctl._gen, Notice(NON_FINITE_NOTE))  # as the loop thread reports it
        qtbot.waitUntil(lambda: a.window.status.currentMessage() == NON_FINITE_NOTE, timeout=5000)
        assert not a.dialogs.open_boxes  # a note, not an error dialog
    finally:
        assert a.presenter.shutdown()
