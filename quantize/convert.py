"""PyTorch-layout Moshi checkpoint -> MLX weights (bf16, q8, q4) in Kyutai's MLX release layout.

Tensor by tensor: the source is opened lazily (`mx.load` reads an array only when it is evaluated),
renamed by the loader's own mapping (`map_lm_torch`), and each tensor is cast, quantized with MLX's
affine quantizer (as `nn.quantize` does for Kyutai's releases, so the files are bit-identical to
theirs) and written into every output file at once before the next one is read. Everything lands in
a hidden staging folder inside `--out` and is renamed into place only once complete and verified.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from moshi_mlx.cli.signals import stops_deferred
from moshi_mlx.config import LmConfig, preset_path, read_json_object
from moshi_mlx.dtypes import FLOATS, SAFETENSORS_FLOATS
from moshi_mlx.errors import CheckpointError, ConfigError
from moshi_mlx.lm import Lm
from moshi_mlx.outputs import check_new_file, same_file
from moshi_mlx.release import CONFIG_FILE
from moshi_mlx.weights.formats import CheckpointFormat, detect_format, is_quantized, quantized_columns
from moshi_mlx.weights.lm_mlx import map_lm_mlx
from moshi_mlx.weights.lm_torch import map_lm_torch
from moshi_mlx.weights.quant import QuantSpec
from moshi_mlx.weights.safetensors_io import load_tensors, read_header
from moshi_mlx.weights.strict import check_tensors_match
from moshi_mlx.weights.tree import flatten

from .recipes import Output, plan_outputs
from .source import VOICES_KEY, Source
from .writer import Entry, StreamingSafetensors, check_space, file_size

DTYPES = FLOATS
_STAGING_PREFIX = ".quantize-"


@dataclass(frozen=True)
class Options:
    bits: int | None = None  # None: float + q8 + q4
    group_size: int | None = None  # None: 32 for 4 bits, 64 for 8 bits
    dtype: str = "bfloat16"  # float dtype of the float file, the norms, scales and biases
    mixed: bool = False  # mixed-precision 4-bit file (see recipes.py)
    force: bool = False  # replace existing outputs
    progress: bool = True  # tqdm bar on stderr


@dataclass(frozen=True)
class Staged:
    """A complete conversion, still in its staging folder."""

    folder: Path
    config: Path
    outputs: list[Output]
    cfg: LmConfig
    names: list[str]  # every file to move into --out
    created_out: bool = False  # --out did not exist before this run


@dataclass(frozen=True)
class Plan:
    """A conversion checked before anything is written (`plan`); `stage` uses it up (it pops `tensors`)."""

    source: Source
    out: Path
    dtype: mx.Dtype
    cfg: LmConfig
    raw: dict  # the Kyutai JSON config `cfg` came from
    model: Lm  # lazily initialised skeleton: names, shapes and module kinds, never computed
    outputs: list[Output]
    names: list[str]  # every file to move into --out
    tensors: dict  # the source's tensors under our names, read lazily


def lm_config(source: Source) -> tuple[LmConfig, dict]:
    """The model config and the raw Kyutai JSON it came from (the 7B preset when the source has none)."""
    raw = source.config
    if raw is None:
        raw = read_json_object(preset_path())
    return LmConfig.from_kyutai(raw, source.config_origin), raw


def open_source(source: Source, cfg: LmConfig, model: Lm) -> dict:
    """Lazily loaded source tensors under our (Kyutai MLX) names, checked against the config.

    Raises:
        CheckpointError: unreadable or truncated file, not a float Moshi LM, or names/shapes that do not
            fit the config (each tensor named).
    """
    where = str(source.weights)
    header = read_header(source.weights)
    fmt = detect_format(header, where)
    if fmt is CheckpointFormat.MIMI_KYUTAI_TORCH:
        raise CheckpointError(f"{where}: this is the Mimi codec, not the Moshi LM: pass the LM checkpoint.")
    if is_quantized(header):
        raise CheckpointError(
            f"{where}: already quantized. Pass the float (bf16) checkpoint file itself as SOURCE; "
            "re-quantizing quantized weights would compound their error."
        )
    not_float = sorted(k for k, v in header.items() if v.dtype not in SAFETENSORS_FLOATS)
    if not_float:
        raise CheckpointError(f"{where}: tensors that are not float weights: {not_float[:8]}")
    mapping = map_lm_torch if fmt is CheckpointFormat.LM_KYUTAI_TORCH else map_lm_mlx
    tensors = mapping(load_tensors(source.weights), cfg, where)
    check_tensors_match(
        model,
        tensors,
        f"{where} ({fmt.value})",
        f"Check that the checkpoint and the config ({source.config_origin}) belong to the same "
        "model; pass the fine-tune's own JSON config.",
    )
    return tensors


def _module_specs(output: Output, model: Lm) -> dict[str, QuantSpec]:
    return {} if output.recipe is None else output.recipe.resolve(model)


def _entries(names: list[str], params: dict[str, tuple], specs: dict[str, QuantSpec], dtype: mx.Dtype) -> list[Entry]:
    out = []
    for name in names:
        path = name[: -len(".weight")]
        spec = specs.get(path) if name.endswith(".weight") else None
        if spec is None:
            out.append(Entry(name, dtype, params[name]))
            continue
        rows, (packed, groups) = params[name][:-1], quantized_columns(params[name][-1], spec.bits, spec.group_size)
        out += [
            Entry(name, mx.uint32, (*rows, packed)),
            Entry(f"{path}.scales", dtype, (*rows, groups)),
            Entry(f"{path}.biases", dtype, (*rows, groups)),
        ]
    return out


def write_weights(
    staging: Path,
    outputs: list[Output],
    tensors: dict,
    model: Lm,
    dtype: mx.Dtype,
    progress: bool = True,
    out: Path | None = None,
    extra_bytes: int = 0,
) -> None:
    """One pass over the source: each tensor is read once, written to every output, then dropped.

    First, OutputError if the files (and `extra_bytes` more) cannot fit in `staging`."""
    from tqdm import tqdm

    params = {k: tuple(v.shape) for k, v in flatten(model.parameters())}
    names = sorted(tensors)
    specs = [_module_specs(o, model) for o in outputs]
    planned = [_entries(names, params, s, dtype) for s in specs]
    check_space(staging, out or staging, sum(map(file_size, planned)) + extra_bytes)
    writers: list[StreamingSafetensors] = []
    try:
        for o, entries in zip(outputs, planned):
            writers.append(StreamingSafetensors(staging / o.file_name, entries))
        total = sum(int(tensors[n].nbytes) for n in names)
        with tqdm(total=total, unit="B", unit_scale=True, desc="converting", disable=not progress) as bar:
            for name in names:
                source = tensors.pop(name)
                size = int(source.nbytes)
                x = source.astype(dtype)
                del source
                mx.eval(x)
                path = name[: -len(".weight")]
                for w, s in zip(writers, specs):
                    spec = s.get(path) if name.endswith(".weight") else None
                    if spec is None:
                        w.write(name, x)
                        continue
                    q, scales, biases = mx.quantize(x, group_size=spec.group_size, bits=spec.bits)
                    mx.eval(q, scales, biases)
                    w.write(name, q)
                    w.write(f"{path}.scales", scales)
                    w.write(f"{path}.biases", biases)
                    del q, scales, biases
                del x
                mx.clear_cache()  # freed buffers go back to the system: peak stays one tensor, not the file
                bar.update(size)
        for w in writers:
            w.close()
    except BaseException:
        for w in writers:
            w.abort()
        raise


def config_for_folder(raw: dict, outputs: list[Output], extras: dict[str, str]) -> dict:
    """Kyutai's LM JSON + the file names its loaders read + the quantization of each file.

    "moshi_name" and "quantization" describe the lowest-precision file (the one a Mac will run);
    "model_files" records every file of the folder.
    """
    out = {
        k: v
        for k, v in raw.items()
        if k not in ("quantization", "model_files", "moshi_name", "mimi_name", "tokenizer_name", "mimi_config_name")
    }
    primary = outputs[-1]
    out["moshi_name"] = primary.file_name
    out.update({k: v for k, v in extras.items() if k != VOICES_KEY})
    if primary.recipe is not None:
        out["quantization"] = primary.recipe.to_json()
    out["model_files"] = {o.file_name: None if o.recipe is None else o.recipe.to_json() for o in outputs}
    return out


def planned_names(outputs: list[Output], source: Source) -> list[str]:
    return [o.file_name for o in outputs] + [CONFIG_FILE] + [p.name for p in source.extras.values()]


def check_destination(out: Path, names: list[str], source: Source, force: bool) -> None:
    """ConfigError if --out cannot take these files (or would need --force)."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder (it is created if missing).")
    inputs = [source.weights, *source.extras.values(), *filter(None, [source.config_file])]
    if any(same_file(out / n, p) for n in names for p in inputs):
        raise ConfigError(f"--out {out} holds the source files, which the output would replace: choose another folder.")
    existing = [n for n in names if (out / n).exists()]
    if existing and not force:
        raise ConfigError(
            f"{out} already holds {', '.join(existing)}: pass --force to replace them, or choose another --out."
        )
    check_new_file(out / CONFIG_FILE, "--out", {})  # a read-only disk, a broken link: refused before any work


def remove_stale_staging(out: Path) -> list[Path]:
    """Remove staging folders left in `out` by conversions that were killed outright (SIGKILL, power loss).

    A staging folder's name carries the converting process's id; one whose process is gone is stale.
    """
    removed = []
    for d in out.glob(f"{_STAGING_PREFIX}*.partial") if out.is_dir() else []:
        pid = d.name[len(_STAGING_PREFIX) :].split("-", 1)[0]
        if d.is_dir() and pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def plan(source: Source, out: str | os.PathLike, opts: Options = Options()) -> Plan:
    """Every check that needs no writing, before any work: --dtype, the config, the precisions, --out, and
    the source's tensors against the config.

    Raises:
        MoshiError: bad input (a ConfigError or CheckpointError saying what); nothing was written.
    """
    if opts.dtype not in DTYPES:
        raise ConfigError(f"unsupported --dtype {opts.dtype!r}: use one of {', '.join(DTYPES)}")
    out = Path(out)
    cfg, raw = lm_config(source)
    model = Lm(cfg)
    outputs = plan_outputs(model, opts.bits, opts.group_size, opts.mixed)
    names = planned_names(outputs, source)
    check_destination(out, names, source, opts.force)
    tensors = open_source(source, cfg, model)
    return Plan(source, out, DTYPES[opts.dtype], cfg, raw, model, outputs, names, tensors)


def stage(job: Plan, progress: bool = True) -> Staged:
    """Convert into a staging folder inside --out (created); the caller verifies, then `commit`s."""
    out, source = job.out, job.source
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(out)
        staging = Path(tempfile.mkdtemp(prefix=_own_prefix(), suffix=".partial", dir=out))
        staged = Staged(staging, staging / CONFIG_FILE, job.outputs, job.cfg, job.names, created)
        extra_bytes = sum(p.stat().st_size for p in source.extras.values())
        write_weights(staging, job.outputs, job.tensors, job.model, job.dtype, progress, out, extra_bytes)
        extras = {}
        for key, path in source.extras.items():
            shutil.copyfile(path, staging / path.name)
            extras[key] = path.name
        staged.config.write_text(json.dumps(config_for_folder(job.raw, job.outputs, extras), indent=2) + "\n")
    except BaseException:  # a stop (Ctrl-C, SIGTERM) may land anywhere here, even before `staged` exists
        _remove_own_staging(out, created)
        raise
    return staged


def commit(staged: Staged, out: Path) -> list[Path]:
    """Move every staged file into `out` (each rename atomic) and remove the staging folder. The files are
    verified: a stop (Ctrl-C, SIGTERM) now would leave some of them in place, so it waits, and changes nothing
    (as one that comes once a program's exit status is decided)."""
    moved = []
    with stops_deferred():
        for name in staged.names:
            os.replace(staged.folder / name, out / name)
            moved.append(out / name)
    shutil.rmtree(staged.folder, ignore_errors=True)
    return moved


def discard(staged: Staged) -> None:
    """Remove the staging folder, and `--out` too if this run created it and it is empty."""
    _remove_own_staging(staged.folder.parent, staged.created_out)


def _own_prefix() -> str:
    return f"{_STAGING_PREFIX}{os.getpid()}-"  # the process id tells a stale staging folder (remove_stale_staging)


def _remove_own_staging(out: Path, created_out: bool) -> None:
    """Remove this process's staging folders in `out`, found by name (so that one whose creation was
    interrupted goes too), and `out` itself if this run created it and it is empty."""
    for d in out.glob(f"{_own_prefix()}*.partial"):
        shutil.rmtree(d, ignore_errors=True)
    if created_out:
        with contextlib.suppress(OSError):
            out.rmdir()


def convert(job: Plan, verify: Callable[[Staged], object] | None = None, progress: bool = True) -> list[Path]:
    """Convert, run `verify(staged)` on the staged files, then move them into --out.

    Nothing appears in --out unless every file is complete and `verify` returned; on any error (or
    Ctrl-C) the staging folder is removed.
    """
    staged = stage(job, progress)
    try:
        if verify is not None:
            verify(staged)
        return commit(staged, job.out)
    except BaseException:
        discard(staged)
        raise
