"""`python -m moshi_mlx.bench stt`: what transcribing the user live (`run --transcribe-user`) costs per frame.

Times, in one run and with random weights (the figures do not depend on them): one step of Kyutai's STT 1B
(presets/stt_1b_en_fr.json: kyutai/stt-1b-en_fr's shapes as its releases describe them, reconstructed here
because the hub file cannot be fetched: dim 2048, 16 layers, 32 codebooks, context 750), Mimi's streaming
encode at 32 codebooks against Moshi's 8, and the baseline: one Moshi 7B step at the same precision
(`--no-moshi` skips it: it needs about 6 GB at 4 bits and seconds per step on a CPU). Prints; asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import mlx.core as mx

from ..audio import FRAME, FRAME_S
from ..cli.args import number
from ..config import LmConfig, MimiConfig
from ..dialog.pacing import step_budget_ms
from ..lm_gen import LmGen
from ..stt.stream import Stt
from .lm import random_model
from .mimi import _random_mimi

STT_PRESET = "stt_1b_en_fr"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--precision", choices=("bf16", "q8", "q4"), default="q4", help="both models' (default q4)")
    parser.add_argument("--steps", type=number(int, 1, 100_000), default=10, help="timed steps (default 10)")
    parser.add_argument("--no-moshi", action="store_true", help="leave out the Moshi 7B baseline")


def _median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def _timed(step, steps: int) -> list[float]:
    step()  # warm-up (first-call allocations)
    out = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def stt_step_ms(precision: str, steps: int) -> tuple[float, float]:
    """Median ms of one STT 1B step, compiled and op by op (its model is gone when this returns)."""
    cfg = LmConfig.preset(STT_PRESET)
    lm = random_model(cfg, precision)
    codes = mx.random.randint(0, cfg.card, (1, cfg.n_q))

    def median(stt: Stt) -> float:
        state = [stt.init_state(1)]

        def step() -> None:
            out, state[0] = stt.advance(state[0], codes)
            mx.eval(out.text_token, Stt.state_arrays(state[0]))

        return _median_ms(_timed(step, steps))

    return median(Stt(lm, compile=True)), median(Stt(lm, compile=False))


def encode_ms(codebooks: int, steps: int) -> float:
    """Median ms of one streaming Mimi encode (the released config, random weights) at `codebooks`."""
    mimi = _random_mimi(MimiConfig.preset("mimi_202407", codebooks), mx.float32)
    pcm = 0.1 * mx.random.normal((1, 1, FRAME))
    state = [mimi.init_state(1)]

    def encode() -> None:
        codes, state[0] = mimi.stream_encode(pcm, state[0])
        mx.eval(codes, state[0])

    return _median_ms(_timed(encode, steps))


def run(args: argparse.Namespace) -> int:
    frame_ms = 1000 * FRAME_S
    stt_ms, op_by_op_ms = stt_step_ms(args.precision, args.steps)
    print(
        f"STT 1B {args.precision}: {stt_ms:.1f} ms per step compiled (median of {args.steps}), RTF "
        f"{stt_ms / frame_ms:.2f}; op by op {op_by_op_ms:.1f} ms: compiled takes {stt_ms / op_by_op_ms:.2f}x as long"
    )
    enc = {n: encode_ms(n, args.steps) for n in (8, 32)}
    extra = enc[32] - enc[8]
    print(f"Mimi streaming encode: {enc[8]:.1f} ms at 8 codebooks, {enc[32]:.1f} ms at 32 (+{extra:.1f} ms)")
    added = stt_ms + extra
    print(
        f"--transcribe-user adds {added:.1f} ms per 80 ms frame ({added / frame_ms:.0%} of the frame; STT step + 24 "
        f"more codebooks); a live dialog's step may take {step_budget_ms():.0f} ms (dialog/pacing.py)"
    )
    if args.no_moshi:
        return 0
    gen = LmGen(random_model(LmConfig.preset(), args.precision), temp=0.0, text_temp=0.0)
    gstate = [gen.init_state(1)]
    user = mx.random.randint(0, 2048, (1, 8))

    def moshi_step() -> None:
        step, out, gstate[0] = gen.advance(gstate[0], user)
        mx.eval(step, LmGen.state_arrays(gstate[0]))

    moshi_ms = _median_ms(_timed(moshi_step, args.steps))
    print(f"Moshi 7B {args.precision}: {moshi_ms:.1f} ms per step (median of {args.steps})")
    rtf = (moshi_ms + enc[32] + stt_ms) / frame_ms
    print(
        f"the user's transcript costs {added / moshi_ms:.1%} of a Moshi step: a frame takes "
        f"{(moshi_ms + added) / moshi_ms:.3f}x as long (RTF {rtf:.2f} with Mimi's encode)"
    )
    return 0
