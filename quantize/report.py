"""Verify each written file and measure how closely the quantized models follow the float one.

Every file is loaded back with `load_lm` (through the folder's config.json, so its quantization record
is checked too) and runs LmGen steps until it yields a frame. For the quality figures, each model is
teacher-forced over one fixed random code sequence, with float32 activations so that only the weights
differ, and compared with the float model: top-1 agreement and mean KL(float || quantized) of the text
logits and of the depformer's audio logits.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx
import numpy as np

from moshi_mlx.config import LmConfig
from moshi_mlx.errors import CheckpointError, ConfigError, MemoryBudgetError
from moshi_mlx.lm import Lm
from moshi_mlx.lm_gen import LmGen
from moshi_mlx.loading.lm import load_lm

from .writer import size_text

SEED = 20240917
# Teacher forcing attends over every step at once: memory grows with the square of the steps (30000
# steps of even a tiny model take tens of GB and minutes). A thousand steps measure agreement well.
MAX_REPORT_STEPS = 1000


def check_report_steps(steps: int, cfg: LmConfig | None = None) -> None:
    """ConfigError for a number of report steps out of range, or (given the model's `cfg`) too few for every
    stream to be predicted once: more than its longest delay."""
    if not (isinstance(steps, int) and 0 <= steps <= MAX_REPORT_STEPS):
        raise ConfigError(f"report steps {steps!r} out of range: use 0 to {MAX_REPORT_STEPS}")
    fewest = max(cfg.delays) + 1 if cfg is not None else 1
    if 0 < steps < fewest:
        raise ConfigError(
            f"--report-steps {steps}: this model's streams are delayed up to {fewest - 1} steps, so the report "
            f"needs at least {fewest} (or 0: only check that each file loads and runs)"
        )


@dataclass(frozen=True)
class Agreement:
    text_top1: float
    text_kl: float
    audio_top1: float
    audio_kl: float


@dataclass(frozen=True)
class FileReport:
    file_name: str
    label: str
    size: int  # bytes on disk
    verified: bool  # loaded and stepped (False: did not fit in memory here)
    agreement: Agreement | None  # None for the float reference or when it could not be computed
    note: str = ""


@dataclass(frozen=True)
class Logits:
    text: np.ndarray  # [T, text_card] float64
    audio: np.ndarray  # [dep_q, T, card] float64, NaN where a delayed stream is unknown


def fixed_codes(cfg: LmConfig, steps: int, seed: int = SEED) -> mx.array:
    """[1, 1 + n_q, steps] random text and audio tokens (the same for every model)."""
    rng = np.random.default_rng(seed)
    text = rng.integers(0, cfg.text_card, (1, 1, steps))
    audio = rng.integers(0, cfg.card, (1, cfg.n_q, steps))
    return mx.array(np.concatenate([text, audio], axis=1).astype(np.int32))


def teacher_logits(lm: Lm, codes: mx.array) -> Logits:
    text, audio = lm.teacher_forced(codes, condition=lm.condition())  # a conditioned model as it runs
    return Logits(np.array(text[0, 0]).astype(np.float64), np.array(audio[0]).astype(np.float64))


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _compare(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """Top-1 agreement and mean KL(ref || got) over rows [N, V] (rows with NaN skipped)."""
    keep = ~np.isnan(ref).any(-1) & ~np.isnan(got).any(-1)
    ref, got = ref[keep], got[keep]
    if not ref.size:  # no audio logits: a speech-to-text model
        return float("nan"), float("nan")
    lp, lq = _log_softmax(ref), _log_softmax(got)
    kl = (np.exp(lp) * (lp - lq)).sum(-1)
    return float((ref.argmax(-1) == got.argmax(-1)).mean()), float(kl.mean())


def agreement(ref: Logits, got: Logits) -> Agreement:
    t1, tkl = _compare(ref.text, got.text)
    v = ref.audio.shape[-1]
    a1, akl = _compare(ref.audio.reshape(-1, v), got.audio.reshape(-1, v))
    return Agreement(t1, tkl, a1, akl)


def step_check(lm: Lm, where: str) -> None:
    """Greedy LmGen steps until the model yields a frame; CheckpointError if it is not sane."""
    cfg = lm.cfg
    if cfg.is_stt:
        return _stt_step_check(lm, where)
    gen = LmGen(lm, temp=0.0, text_temp=0.0)
    state = gen.init_state()
    user = mx.zeros((1, cfg.user_codebooks), mx.int32)
    out = None
    while out is None:
        step, out, state = gen.advance(state, user)
        mx.eval(step, LmGen.state_arrays(state))
    mx.eval(out)
    frame = np.array(out)[0]
    finite = bool(mx.isfinite(step.text_logits).all()) and bool(mx.isfinite(step.audio_logits).all())
    if not finite or not 0 <= frame[0] < cfg.text_card or not ((frame[1:] >= 0) & (frame[1:] < cfg.card)).all():
        raise CheckpointError(
            f"{where}: the converted model does not run sanely (frame {frame.tolist()}, finite logits: {finite})."
        )


def _stt_step_check(lm: Lm, where: str) -> None:
    """Two greedy steps of a speech-to-text model (the first one reads only its initial tokens)."""
    from moshi_mlx.stt.stream import Stt

    stt = Stt(lm)
    state = stt.init_state()
    for _ in range(2):
        out, state = stt.advance(state, mx.zeros((1, lm.cfg.n_q), mx.int32))
        mx.eval(out, Stt.state_arrays(state))
    token = int(out.text_token[0])
    finite = bool(mx.isfinite(out.text_logits).all())
    if not finite or not 0 <= token < lm.cfg.text_card:
        raise CheckpointError(
            f"{where}: the converted model does not run sanely (token {token}, finite logits: {finite})."
        )


def _free() -> None:
    gc.collect()
    mx.clear_cache()


def verify_and_report(
    folder: Path,
    config: Path,
    outputs,
    reference: tuple[Path, LmConfig, mx.Dtype] | None,
    steps: int = 32,
    named: tuple[Path, str] | None = None,
) -> list[FileReport]:
    """Load every output file from `folder`, step it, and (steps > 0) measure its agreement.

    Args:
        outputs: the `recipes.Output`s written; a float one is the reference.
        named: (the folder the files go to, the source's description): what an error names a file by, when
            `folder` is a staging folder the user never sees (default: its path in `folder`).
        reference: (weights, config, dtype) to load as the float reference when no float file was written.
        steps: length of the teacher-forced code sequence (0: verification only).
    """
    reports: list[FileReport] = []
    float_out = next((o for o in outputs if o.recipe is None), None)
    ref_logits, ref_note = None, ""
    codes = None
    if steps > 0:
        try:
            if float_out is not None:
                lm = load_lm(folder / float_out.file_name, config)
            else:
                assert reference is not None
                lm = load_lm(reference[0], reference[1], dtype=reference[2])
            codes = fixed_codes(lm.cfg, steps)
            lm.set_compute_dtype(mx.float32)
            ref_logits = teacher_logits(lm, codes)
            del lm
        except MemoryBudgetError as e:
            ref_note = f"no agreement figures: the float reference does not fit in memory ({e})"
        _free()
    for o in outputs:
        path = folder / o.file_name
        size = path.stat().st_size
        try:
            lm = load_lm(path, config)
        except MemoryBudgetError as e:
            reports.append(FileReport(o.file_name, o.label, size, False, None, f"not verified here: {e}"))
            continue
        step_check(lm, str(path) if named is None else f"{named[0] / o.file_name} (converted from {named[1]})")
        got = None
        if ref_logits is not None and codes is not None and o.recipe is not None:
            lm.set_compute_dtype(mx.float32)
            got = agreement(ref_logits, teacher_logits(lm, codes))
        note = "reference" if o.recipe is None and ref_logits is not None else ("" if got else ref_note)
        reports.append(FileReport(o.file_name, o.label, size, True, got, note))
        del lm
        _free()
    return reports


def format_report(reports: list[FileReport], steps: int) -> str:
    """A plain-text table: size, then agreement with the float model."""
    head = (
        f"{'file':<24} {'weights':<10} {'size':>10}  {'text top-1':>10} {'text KL':>9}  "
        f"{'audio top-1':>11} {'audio KL':>9}"
    )
    lines = [
        f"Agreement with the float model, teacher-forced over {steps} random steps (float32 activations):",
        head,
        "-" * len(head),
    ]
    for r in reports:
        a = r.agreement
        figures = (
            f"{a.text_top1:>10.3f} {a.text_kl:>9.2e}  "
            + (f"{'-':>11} {'-':>9}" if np.isnan(a.audio_top1) else f"{a.audio_top1:>11.3f} {a.audio_kl:>9.2e}")
            if a
            else f"{'':>10} {'':>9}  {'':>11} {'':>9}"
        )
        lines.append(f"{r.file_name:<24} {r.label:<10} {size_text(r.size):>10}  {figures}  {r.note}".rstrip())
    return "\n".join(lines)
