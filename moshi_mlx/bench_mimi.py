"""Mimi benchmark: real config, random (non-degenerate) weights, float32 unless asked otherwise."""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import mlx.core as mx

from .config import MimiConfig
from .mimi import Mimi

_DTYPES = {"float32": mx.float32, "bfloat16": mx.bfloat16, "float16": mx.float16}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--frames", type=int, default=40, help="streamed 80 ms frames timed (default 40)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed frames first (default 3)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length for batch figures (default 10)")
    parser.add_argument("--batch", type=int, default=1, help="parallel streams (default 1)")
    parser.add_argument("--dtype", choices=sorted(_DTYPES), default="float32")
    parser.add_argument("--num-codebooks", type=int, default=8)


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
                child.set_dtype(dtype)
    mimi.post_load()
    return mimi


def _median_ms(times: list[float]) -> str:
    return f"{statistics.median(times) * 1e3:7.1f} ms (min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f})"


def run(args: argparse.Namespace) -> int:
    cfg = MimiConfig.preset("mimi_202407", args.num_codebooks)
    dtype = _DTYPES[args.dtype]
    mimi = _random_mimi(cfg, dtype)
    fs, b = cfg.frame_size, args.batch
    print(f"Mimi benchmark: mlx {mx.__version__}, device {mx.default_device()}, {platform.machine()}, "
          f"{args.dtype}, batch {b}, {cfg.num_codebooks} codebooks, frame {fs} samples = "
          f"{1e3 * fs / cfg.sample_rate:.0f} ms")

    n = args.warmup + args.frames
    audio = 0.1 * mx.random.normal((b, 1, n * fs))
    mx.eval(audio)
    state = mimi.init_state(b)
    enc_t, dec_t = [], []
    for i in range(n):
        frame = audio[..., i * fs : (i + 1) * fs]
        t0 = time.perf_counter()
        codes, state = mimi.stream_encode(frame, state)
        mx.eval(codes, state.encoder, state.downsample, state.encoder_transformer.arrays())
        t1 = time.perf_counter()
        pcm, state = mimi.stream_decode(codes, state)
        mx.eval(pcm, state.decoder, state.upsample, state.decoder_transformer.arrays())
        t2 = time.perf_counter()
        if i >= args.warmup:
            enc_t.append(t1 - t0)
            dec_t.append(t2 - t1)
    both = [e + d for e, d in zip(enc_t, dec_t)]
    budget = fs / cfg.sample_rate
    print(f"streaming encode_step  median {_median_ms(enc_t)}")
    print(f"streaming decode_step  median {_median_ms(dec_t)}")
    print(f"streaming enc + dec    median {_median_ms(both)}  "
          f"real-time factor {statistics.median(both) / budget:.2f} (budget {budget * 1e3:.0f} ms per frame; < 1 keeps up)")

    seconds = args.seconds
    long = 0.1 * mx.random.normal((b, 1, int(seconds * cfg.sample_rate)))
    mx.eval(long)
    mx.eval(mimi.encode(long[..., : 4 * fs]))                       # warm up
    t0 = time.perf_counter()
    codes = mimi.encode(long)
    mx.eval(codes)
    t1 = time.perf_counter()
    pcm = mimi.decode(codes)
    mx.eval(pcm)
    t2 = time.perf_counter()
    print(f"batch encode {seconds:.0f} s audio: {t1 - t0:6.2f} s = {b * seconds / (t1 - t0):6.1f} s audio / s")
    print(f"batch decode {seconds:.0f} s audio: {t2 - t1:6.2f} s = {b * seconds / (t2 - t1):6.1f} s audio / s")

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024     # KiB on Linux
    if platform.system() == "Darwin":
        rss /= 1024
    print(f"peak MLX memory {mx.get_peak_memory() / 2**20:.0f} MiB, peak RSS {rss:.0f} MiB")
    return 0
