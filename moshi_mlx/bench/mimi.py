"""Mimi benchmark: real config, random (non-degenerate) weights, float32 unless asked otherwise.

With `--kyutai-python PY` it also times Kyutai's MLX Mimi (installed in the interpreter PY) in the same
run: `kyutai_mimi.py` runs there as a subprocess with the same environment (so the same BLAS), and
the streamed frames are timed in interleaved rounds, ours then theirs, so both see the same machine load.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from typing import cast

import mlx.core as mx
import mlx.nn as nn

from ..cli.args import number
from ..config import MimiConfig
from ..cpu import blas
from ..cpu.swap import use_cpu_variants
from ..dtypes import FLOATS
from ..mimi import Mimi, MimiState
from ..modules.state_tree import arrays_of
from . import count_primitives, faster_or_slower, peak_rss_bytes
from .kyutai import KyutaiTimer, program


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frames", type=number(int, 1, 100_000), default=40, help="streamed 80 ms frames timed (default 40)"
    )
    parser.add_argument("--warmup", type=number(int, 0, 10_000), default=3, help="untimed frames first (default 3)")
    parser.add_argument(
        "--seconds", type=number(float, 0.08, 3600), default=10.0, help="audio length for batch figures (default 10)"
    )
    parser.add_argument("--batch", type=number(int, 1, 64), default=1, help="parallel streams (default 1)")
    parser.add_argument("--dtype", choices=sorted(FLOATS), default="float32")
    parser.add_argument("--num-codebooks", type=number(int, 1, 32), default=8)
    parser.add_argument(
        "--kyutai-python",
        metavar="PY",
        type=program,
        help="also time Kyutai's MLX Mimi, installed in this Python interpreter, in the same run",
    )
    parser.add_argument(
        "--rounds",
        type=number(int, 1, 1000),
        default=None,
        help="interleaved rounds the streamed frames are split into (default 4 with --kyutai-python, else 1)",
    )


def _random_mimi(cfg: MimiConfig, dtype: mx.Dtype) -> Mimi:
    mimi = Mimi(cfg)
    for rvq in (mimi.quantizer.rvq_first, mimi.quantizer.rvq_rest):  # codebooks are all zeros by default
        for layer in rvq.vq.layers:
            cb = layer.codebook
            cb.embedding_sum = mx.random.normal(cb.embedding_sum.shape)
            cb.cluster_usage = mx.random.uniform(0.5, 2.0, cb.cluster_usage.shape)
    if dtype != mx.float32:
        for name, child in mimi.children().items():
            if name != "quantizer":
                cast(nn.Module, child).set_dtype(dtype)  # Mimi's children are modules, not lists
    mimi.post_load()
    use_cpu_variants(mimi)  # as load_mimi does
    return mimi


def _median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:7.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})"


def _stream_frames(mimi: Mimi, state: MimiState, audio: mx.array) -> tuple[MimiState, list[float], list[float]]:
    """Stream audio [B, 1, n * frame] frame by frame; seconds per encode and per decode step."""
    fs = mimi.frame_size
    enc_t, dec_t = [], []
    for i in range(audio.shape[2] // fs):
        frame = audio[..., i * fs : (i + 1) * fs]
        t0 = time.perf_counter()
        codes, state = mimi.stream_encode(frame, state)
        mx.eval(codes, state.encoder, state.downsample, state.encoder_transformer.arrays())
        t1 = time.perf_counter()
        pcm, state = mimi.stream_decode(codes, state)
        mx.eval(pcm, state.decoder, state.upsample, state.decoder_transformer.arrays())
        t2 = time.perf_counter()
        enc_t.append(t1 - t0)
        dec_t.append(t2 - t1)
    return state, enc_t, dec_t


def _built_frames(mimi: Mimi, state: MimiState, compiled: bool, batch: int, frames: int = 5) -> tuple[float, int]:
    """Median seconds to build one streamed frame's graph (encode then decode, nothing evaluated) and the
    primitives that graph evaluates."""
    mimi.compiled = compiled
    times, primitives = [], 0
    try:
        for _ in range(frames):
            frame = 0.1 * mx.random.normal((batch, 1, mimi.frame_size))
            mx.eval(frame)
            t = time.perf_counter()
            codes, new = mimi.stream_encode(frame, state)
            pcm, new = mimi.stream_decode(codes, new)
            times.append(time.perf_counter() - t)
            arrays = [pcm, *arrays_of(new)]
            primitives = count_primitives(*arrays)
            mx.eval(arrays)
            state = new
    finally:
        mimi.compiled = True
    return statistics.median(times), primitives


def _print_streaming(who: str, enc_t: list[float], dec_t: list[float], budget: float) -> float:
    both = [e + d for e, d in zip(enc_t, dec_t)]
    print(f"{who}streaming encode_step  median {_median_ms(enc_t)}")
    print(f"{who}streaming decode_step  median {_median_ms(dec_t)}")
    print(
        f"{who}streaming enc + dec    median {_median_ms(both)}  real-time factor "
        f"{statistics.median(both) / budget:.2f} (budget {budget * 1e3:.0f} ms per frame; < 1 keeps up)"
    )
    return statistics.median(both)


def run(args: argparse.Namespace) -> int:
    cfg = MimiConfig.preset("mimi_202407", args.num_codebooks)
    dtype = FLOATS[args.dtype]
    mimi = _random_mimi(cfg, dtype)
    fs, b = cfg.frame_size, args.batch
    version = mx.__version__  # pyright: ignore[reportAttributeAccessIssue]  (mlx's stubs omit __version__)
    print(
        f"Mimi benchmark: mlx {version}, device {mx.default_device()}, {platform.machine()}, "
        f"{args.dtype}, batch {b}, {cfg.num_codebooks} codebooks, frame {fs} samples = "
        f"{1e3 * fs / cfg.sample_rate:.0f} ms"
    )
    if mx.default_device() == mx.cpu:
        print(f"CPU matmuls: {blas.describe()}")

    kyutai = None
    if args.kyutai_python:
        if b != 1 or dtype != mx.float32:
            raise SystemExit("error: --kyutai-python compares batch 1, float32 only")
        kyutai = KyutaiTimer(
            args.kyutai_python,
            "kyutai_mimi.py",
            "--warmup",
            str(args.warmup),
            "--num-codebooks",
            str(cfg.num_codebooks),
        )
        print(f"Kyutai's moshi_mlx {kyutai.version} (mlx {kyutai.mlx}) via {args.kyutai_python}")
    rounds = args.rounds or (4 if kyutai else 1)
    per_round = max(1, -(-args.frames // rounds))

    state = plain_state = mimi.init_state(b)
    warm = 0.1 * mx.random.normal((b, 1, max(args.warmup, 0) * fs))
    mx.eval(warm)
    state, _, _ = _stream_frames(mimi, state, warm)
    enc_t, dec_t, k_enc, k_dec, p_enc, p_dec = [], [], [], [], [], []
    for _ in range(rounds):
        audio = 0.1 * mx.random.normal((b, 1, per_round * fs))
        mx.eval(audio)
        state, e, d = _stream_frames(mimi, state, audio)
        enc_t += e
        dec_t += d
        mimi.compiled = False  # the same frames op by op (MOSHI_MLX_COMPILE=0), interleaved by rounds
        plain_state, e, d = _stream_frames(mimi, plain_state, audio)
        mimi.compiled = True
        p_enc += e
        p_dec += d
        if kyutai:
            reply = kyutai.request(per_round)
            e, d = [t / 1e3 for t in reply["encode_ms"]], [t / 1e3 for t in reply["decode_ms"]]
            k_enc += e
            k_dec += d
    budget = fs / cfg.sample_rate
    ours = _print_streaming("", enc_t, dec_t, budget)
    plain = _print_streaming("op by op: ", p_enc, p_dec, budget)
    print(f"compiling makes the streamed frame {faster_or_slower(plain, ours)} (enc + dec medians, same run)")
    for compiled, frame_state in ((True, state), (False, plain_state)):
        build_s, primitives = _built_frames(mimi, frame_state, compiled, b)
        print(
            f"host build and dispatch per frame, {'compiled' if compiled else 'op by op'}: {build_s * 1e3:.1f} ms "
            f"(stream_encode + stream_decode until they return, nothing evaluated); primitives evaluated per "
            f"frame: {primitives} (nodes of the frame's graph, counted in mx.export_to_dot)"
        )
    if kyutai:
        kyutai.close()
        theirs = _print_streaming("Kyutai ", k_enc, k_dec, budget)
        print(
            f"ours / Kyutai's (enc + dec medians, same run, {rounds} interleaved rounds): "
            f"{ours / theirs:.3f} = {faster_or_slower(theirs, ours)} "
            f"(encode {faster_or_slower(statistics.median(k_enc), statistics.median(enc_t))}, "
            f"decode {faster_or_slower(statistics.median(k_dec), statistics.median(dec_t))})"
        )

    seconds = args.seconds
    long = 0.1 * mx.random.normal((b, 1, int(seconds * cfg.sample_rate)))
    mx.eval(long)
    mx.eval(mimi.encode(long[..., : 4 * fs]))  # warm up
    t0 = time.perf_counter()
    codes = mimi.encode(long)
    mx.eval(codes)
    t1 = time.perf_counter()
    pcm = mimi.decode(codes)
    mx.eval(pcm)
    t2 = time.perf_counter()
    print(f"batch encode {seconds:.0f} s audio: {t1 - t0:6.2f} s = {b * seconds / (t1 - t0):6.1f} s audio / s")
    print(f"batch decode {seconds:.0f} s audio: {t2 - t1:6.2f} s = {b * seconds / (t2 - t1):6.1f} s audio / s")

    print(f"peak MLX memory {mx.get_peak_memory() / 2**20:.0f} MiB, peak RSS {peak_rss_bytes() / 2**20:.0f} MiB")
    return 0
