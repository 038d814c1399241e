"""`python -m moshi_mlx.bench lm`: speed and memory of one Moshi LM step at the released 7B size.

`--shape skinny` keeps the 7B's layers, codebooks and vocabularies at width 256, float32, with a short
context (`skinny`): compute is then small and the cost per operation dominates, as on a GPU. Each
configuration also prints the host time to build one step's graph and the primitives it evaluates.

Random weights (the numbers do not depend on them) built directly in the requested precision, one
module at a time, so a 4-bit model never exists in bf16 first. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import statistics
import sys
import time

import mlx.core as mx
import mlx.nn as nn
import numpy as np

from ..audio import FRAME_S
from ..cli.args import name, number
from ..config import LmConfig
from ..cpu import lanes
from ..cpu.swap import use_cpu_variants
from ..errors import ConfigError
from ..lm import Lm
from ..lm_gen import LmGen
from ..loading.memory import GiB, available_bytes, estimate_bytes, fits, release_header
from ..release import GROUP_SIZE, PRECISIONS
from ..weights import quant
from ..weights.formats import unpacked_columns
from ..weights.tree import flatten
from . import count_primitives, faster_or_slower, peak_rss_bytes
from .kyutai import KyutaiTimer, program

_PRECISIONS = {name: None if b is None else quant.QuantSpec(b, GROUP_SIZE[b]) for name, b in PRECISIONS.items()}
_PRECISIONS["f32"] = None  # float32 weights (the skinny shape's default; not a release)
SKINNY_DIM, SKINNY_CONTEXT = 256, 64


# Published memory bandwidths, GB/s, by the device name MLX reports (the lower figure where a chip comes in
# two: M3 Max 300/400, M4 Max 410/546); a CPU's is this repository's 2-core test machine's, one core reading.
DEVICE_BANDWIDTH_GBS = {
    "M1": 68,
    "M1 Pro": 200,
    "M1 Max": 400,
    "M1 Ultra": 800,
    "M2": 100,
    "M2 Pro": 200,
    "M2 Max": 400,
    "M2 Ultra": 800,
    "M3": 100,
    "M3 Pro": 150,
    "M3 Max": 300,
    "M3 Ultra": 800,
    "M4": 120,
    "M4 Pro": 273,
    "M4 Max": 410,
    "H100": 3350,
    "H100 PCIe": 2000,
    "H200": 4800,
    "A100": 1555,
}
CPU_BANDWIDTH_GBS = 24.0


def default_bandwidth_gbs(info: dict | None = None) -> tuple[float, str]:
    """(GB/s, what it is) for the roofline: the published figure of the device MLX runs on where its name is
    known (the longest name in DEVICE_BANDWIDTH_GBS that its name holds as whole words), else the CPU's."""
    if info is None:
        info = mx.device_info() if hasattr(mx, "device_info") else {}
    name = str(info.get("device_name", ""))
    words = f" {name.replace('-', ' ')} "
    known = [k for k in DEVICE_BANDWIDTH_GBS if f" {k} " in words]
    if known:
        key = max(known, key=len)
        return float(DEVICE_BANDWIDTH_GBS[key]), f"{name}, published"
    return CPU_BANDWIDTH_GBS, f"{name or 'this device'}: no published figure known, one core of our test machine's"


def skinny(cfg: LmConfig, dim: int = SKINNY_DIM, context: int = SKINNY_CONTEXT) -> LmConfig:
    """`cfg` (the 7B preset) at width `dim` for both stacks, feed-forward widths scaled alike, and `context`
    steps: the same layers, heads, codebooks, delays and vocabularies, so the same graph per step."""
    assert cfg.depformer is not None  # a Moshi preset
    t, d = cfg.transformer, cfg.depformer.transformer
    temporal = dataclasses.replace(
        t, d_model=dim, dim_feedforward=t.dim_feedforward * dim // t.d_model, context=context
    )
    dep = dataclasses.replace(d, d_model=dim, dim_feedforward=d.dim_feedforward * dim // d.d_model)
    return dataclasses.replace(cfg, transformer=temporal, depformer=dataclasses.replace(cfg.depformer, transformer=dep))


def random_model(cfg: LmConfig, precision: str, seed: int = 0) -> Lm:
    """An Lm of `cfg` with random weights, quantized as Kyutai's releases, materialised module by module."""
    model = Lm(cfg)
    spec = _PRECISIONS[precision]
    dtype = mx.float32 if precision == "f32" else mx.bfloat16
    if spec is not None:
        quant.apply(
            model, {p: spec for p, m in quant.quantizable_modules(model).items() if quant.should_quantize(m, spec)}
        )
    key = mx.random.key(seed)
    for _, module in flatten(model.leaf_modules(), is_leaf=nn.Module.is_module):
        key, sub = mx.random.split(key)
        params = dict(flatten(module.parameters()))
        if not params:
            continue
        if "scales" in params:  # affine-quantized: random codes, scales and biases centring them
            w, s = params["weight"], params["scales"]
            levels = 2**module.bits
            scale = 0.04 / levels * mx.ones(s.shape, mx.bfloat16)
            module.weight = mx.random.randint(-(2**31), 2**31 - 1, w.shape, key=sub).view(mx.uint32)
            module.scales, module.biases = scale, (-scale * (levels / 2)).astype(mx.bfloat16)
        elif module.weight.ndim == 1:  # norms
            module.weight = mx.ones(module.weight.shape, dtype)
        else:
            module.weight = (0.02 * mx.random.normal(module.weight.shape, key=sub)).astype(dtype)
        mx.eval(module.parameters())
    model.stack_embeddings()  # as load_lm does
    use_cpu_variants(model)
    return model


def weight_bytes(model: Lm) -> int:
    """Bytes of weights one step reads (all but the embedding tables, of which it reads 17 rows)."""
    total = 0
    for key, p in flatten(model.parameters()):
        if not (key.startswith(("text_emb.", "audio_embs.")) or ".emb." in key):
            total += p.nbytes
    return total


def matmul_floor(model: Lm, dtype: mx.Dtype, rounds: int) -> tuple[float, int]:
    """Median seconds to multiply one row by every Linear of `model` (each temporal layer's and each
    depformer slice's, the text head: the matrix products of one step), compiled and evaluated at once, and
    how many products that is. What a step could not go below with these weights and this BLAS or kernel."""
    linears = [m for _, m in model.named_modules() if isinstance(m, (nn.Linear, nn.QuantizedLinear))]
    rows = [mx.zeros((1, _in_dims(m)), dtype) for m in linears]

    def products(xs: list[mx.array]) -> list[mx.array]:
        return [m(x) for m, x in zip(linears, xs)]

    fn = mx.compile(products)
    mx.eval(fn(rows))
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        mx.eval(fn(rows))
        times.append(time.perf_counter() - t)
    return statistics.median(times), len(linears)


def _in_dims(m: nn.Module) -> int:
    columns = m["weight"].shape[1]
    return unpacked_columns(columns, m.bits) if isinstance(m, nn.QuantizedLinear) else columns


def timed_steps(gen: LmGen, lm_state, frames: list[mx.array]) -> list[tuple[float, float]]:
    """Greedy steps evaluated in two parts to split the time: temporal transformer, then text head +
    depformer (op by op, as written); both durations per frame. The temporal state is threaded here, so
    that each step lets go of the previous one before its evaluation (a state still held is copied)."""
    lm = gen.lm
    cfg = lm.cfg
    times = []
    for f in frames:
        t0 = time.perf_counter()
        user = gen.check_user_codes(f)
        inputs = mx.concatenate([mx.zeros((1, 1 + cfg.dep_q), mx.int32), user], axis=1)
        context, text_logits, lm_state = lm.step_text(inputs[:, :, None], lm_state)
        mx.eval(context, lm_state.arrays())
        t1 = time.perf_counter()
        text = mx.argmax(text_logits[:, 0], axis=-1).astype(mx.int32)  # the text head counts as depth here
        dep_state = lm.depformer.init_state(1, lm.compute_dtype)
        prev = text
        for k in range(cfg.dep_q):
            logits, dep_state = lm.depformer.step(k, context, prev, dep_state)
            prev = mx.argmax(logits, axis=-1).astype(mx.int32)
        mx.eval(prev)
        times.append((t1 - t0, time.perf_counter() - t1))
    return times


def built_steps(gen: LmGen, frames: list[mx.array]) -> tuple[float, float, int]:
    """One step per frame of `frames`, timing the host's part: `LmGen.advance` building the step's graph
    (it evaluates nothing), then `mx.async_eval` dispatching it (returning once every operation is queued).
    Median seconds of each and the primitives of the last step's graph."""
    build, dispatch, primitives = [], [], 0
    for f in frames:
        t = time.perf_counter()
        _, out, state = gen.advance(gen._state, f)
        t1 = time.perf_counter()
        gen._state = state  # let go of the old state, as a conversation does
        arrays = ([] if out is None else [out]) + gen.state_arrays(state)
        primitives = count_primitives(*arrays)
        t2 = time.perf_counter()
        mx.async_eval(arrays)
        t3 = time.perf_counter()
        mx.eval(arrays)
        build.append(t1 - t)
        dispatch.append(t3 - t2)
    return statistics.median(build), statistics.median(dispatch), primitives


def bench(
    precision: str,
    steps: int,
    bandwidth_gbs: float,
    cfg: LmConfig,
    kyutai_python: str | None = None,
    kv_bits: int | None = None,
) -> None:
    mx.reset_peak_memory()
    t0 = time.perf_counter()
    model = random_model(cfg, precision)
    model.set_kv_bits(kv_bits)
    build_s = time.perf_counter() - t0
    nbytes = weight_bytes(model)
    gen = LmGen(model, seed=0, compile=True)
    rng = np.random.default_rng(0)
    frames = [mx.array(rng.integers(0, cfg.card, (1, cfg.user_codebooks))) for _ in range(steps + 2)]
    gen.step(frames[0])
    gen.step(frames[1])  # warm-up (and the compiled step's trace)
    # peak memory of our conversation alone: the op-by-op comparison below holds a second KV cache
    peak = mx.get_peak_memory()
    plain = LmGen(model, seed=0, compile=False)
    plain.step(frames[0])
    plain.step(frames[1])
    # and over the whole ring, as the reference, where ours attends only over the written slots
    whole = LmGen(model, seed=0, window_bucket=None) if gen.window(gen._state) is not None else None
    if whole is not None:
        whole.step(frames[0])
        whole.step(frames[1])
    kyutai = _kyutai_timer(kyutai_python, precision, steps, cfg)
    n_lanes = len(lanes.lane_streams()) if mx.default_device() == mx.cpu else 1
    total, cpu, theirs, one_lane, op_by_op, whole_ring = [], [], [], [], [], []
    for f in frames[2:]:
        t, c = time.perf_counter(), time.process_time()
        gen.step(f)
        total.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
        t = time.perf_counter()  # the same step op by op (MOSHI_MLX_COMPILE=0), interleaved
        plain.step(f)
        op_by_op.append(time.perf_counter() - t)
        if whole is not None:
            t = time.perf_counter()
            whole.step(f)
            whole_ring.append(time.perf_counter() - t)
        if kyutai is not None:  # alternate single steps: all models see the same machine load
            theirs += kyutai.request(1)["step_ms"]
        if n_lanes > 1:  # and the same step on one core, as MLX alone runs it (op by op: a compiled step
            lanes.limit_lanes(1)  # keeps the lanes it was traced with)
            t = time.perf_counter()
            plain.step(f)
            one_lane.append(time.perf_counter() - t)
            lanes.limit_lanes(None)
    state = gen._state  # continue the same conversation (a second KV cache would distort peak memory)
    # a step reads the slots it attends over: the written ones (rounded up) until the ring wraps, then all
    window = gen.window(state)
    capacity = cfg.transformer.context or 1
    cache_bytes = sum(a.nbytes for a in state.lm.arrays()) * (window or capacity) // capacity
    split = timed_steps(gen, state.lm, frames[:steps])
    temporal = statistics.median(s[0] for s in split)
    depth = statistics.median(s[1] for s in split)
    step_s = statistics.median(total)
    plain_s = statistics.median(op_by_op)
    bound = (nbytes + cache_bytes) / (bandwidth_gbs * 1e9)
    rss = peak_rss_bytes()
    built = {g.compiled: built_steps(g, frames[:steps]) for g in (gen, plain)}
    floor_s, products = matmul_floor(model, model.compute_dtype, steps)
    print(
        f"lm {cfg.dim}-dim {cfg.transformer.num_layers}-layer {precision:>4} ({model.compute_dtype} activations, "
        f"{model.cache_dtype if kv_bits is None else f'{kv_bits}-bit'} KV cache): "
        f"step {step_s * 1e3:.0f} ms median of {steps} compiled (process CPU time "
        f"{statistics.median(cpu) * 1e3:.0f} ms; op by op, interleaved: {plain_s * 1e3:.0f} ms -> compiling makes "
        f"the step {faster_or_slower(plain_s, step_s)}; temporal {temporal * 1e3:.0f} ms, text head + depth "
        f"{depth * 1e3:.0f} ms op by op), "
        f"real-time factor {step_s / FRAME_S:.1f}x (1 = real time), "
        f"read/step {nbytes / 1e9:.2f} GB weights + {cache_bytes / 1e9:.2f} GB KV cache, "
        f"bandwidth bound {bound * 1e3:.0f} ms at {bandwidth_gbs:g} GB/s -> {bound / step_s:.0%} of bound, "
        f"peak MLX memory {peak / 2**30:.2f} GiB, peak RSS {rss / 2**30:.2f} GiB, build {build_s:.0f} s"
    )
    for compiled, (build_step_s, dispatch_s, primitives) in sorted(built.items(), reverse=True):
        print(
            f"host build and dispatch per step, {'compiled' if compiled else 'op by op'}: "
            f"{(build_step_s + dispatch_s) * 1e3:.1f} ms median of {steps} (LmGen.advance building the graph "
            f"{build_step_s * 1e3:.1f} ms, mx.async_eval queueing it {dispatch_s * 1e3:.1f} ms); primitives "
            f"evaluated per step: {primitives} (nodes of the step's graph, counted in mx.export_to_dot)"
        )
    print(
        f"matrix products alone: the step's {products} Linears, one row each, compiled and evaluated at once: "
        f"{floor_s * 1e3:.1f} ms ({floor_s / step_s:.0%} of the compiled step; the other "
        f"{max(step_s - floor_s, 0) * 1e3:.1f} ms is everything else: attention, norms, sampling, the cost per "
        f"operation)"
    )
    if whole_ring:
        ws = statistics.median(whole_ring)
        print(
            f"attention over the {window} slots written so far (rounded up to {gen.window_bucket}) of the "
            f"{capacity}-slot ring, against the whole ring as the reference (window_bucket=None), interleaved: "
            f"{ws * 1e3:.0f} ms -> the window makes the step {faster_or_slower(ws, step_s)} (same values)"
        )
    if one_lane:
        one = statistics.median(one_lane)
        print(
            f"CPU lanes: {n_lanes} (cpu/lanes.py; {lanes.ENV}=1 for one); the same steps op by op on one lane, "
            f"interleaved: {one * 1e3:.0f} ms -> lanes make the op-by-op step {faster_or_slower(one, plain_s)}"
        )
    if kyutai is not None:
        kyutai.close()
        ks = statistics.median(theirs) / 1e3
        print(
            f"Kyutai's moshi_mlx {kyutai.version} (mlx {kyutai.mlx}), same weights' sizes and precision, "
            f"interleaved: step {ks * 1e3:.0f} ms median of {len(theirs)} -> ours is {faster_or_slower(ks, step_s)}"
        )
    del gen, plain, whole, model, state
    mx.clear_cache()


def _kyutai_timer(python: str | None, precision: str, steps: int, cfg: LmConfig):
    """Kyutai's MLX LM at the same precision and width, timing itself in its own interpreter (kyutai_lm.py)."""
    if python is None:
        return None
    spec = _PRECISIONS[precision]
    bits, group = (0, 0) if spec is None else (spec.bits, spec.group_size)  # kyutai_lm.py: --bits 0 is bf16
    args = ["--bits", str(bits), "--group-size", str(group), "--max-steps", str(steps + 16)]
    if precision == "f32":
        args.append("--float32")
    if cfg != LmConfig.preset():  # the skinny shape (run() refuses other configs)
        args += ["--dim", str(cfg.dim), "--context", str(cfg.transformer.context)]
    return KyutaiTimer(python, "kyutai_lm.py", *args)


def _model_bytes(precision: str, cfg: LmConfig) -> int:
    """What a model of `cfg` at `precision` holds in memory with its KV cache (Kyutai's release layout)."""
    spec = _PRECISIONS[precision]
    header = release_header(None if spec is None else spec.bits, cfg)
    return estimate_bytes(header, cfg, mx.float32 if precision == "f32" else None)


def _precisions(text: str) -> list[str]:
    """--precision: a comma list of known precisions."""
    precisions = text.split(",")
    unknown = [p for p in precisions if p not in _PRECISIONS]
    if unknown:
        known = ",".join(sorted(_PRECISIONS))
        raise argparse.ArgumentTypeError(f"unknown precision {unknown[0]!r}; choose from {known}")
    return precisions


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        default=None,
        type=_precisions,
        help="comma list of bf16,q8,q4,f32 (default q4; f32 with --shape skinny)",
    )
    parser.add_argument("--steps", type=number(int, 1, 100_000), default=5, help="timed steps per precision")
    parser.add_argument(
        "--bandwidth-gbs",
        type=number(float, 0.1, 100_000),
        default=None,
        help="memory bandwidth of this machine for the roofline (default: the GPU's published figure where "
        f"its name is known, else {CPU_BANDWIDTH_GBS:g}: what one core of our 2-core test machine reads)",
    )
    shape = parser.add_mutually_exclusive_group()
    shape.add_argument("--config", default=None, type=name, help="Kyutai-schema JSON (default: the 7B preset)")
    shape.add_argument(
        "--shape",
        choices=("7b", "skinny"),
        default="7b",
        help=f"skinny: the 7B preset at width {SKINNY_DIM}, context {SKINNY_CONTEXT}, where the cost per "
        "operation dominates as on a GPU (default 7b)",
    )
    parser.add_argument(
        "--kv-bits",
        type=int,
        choices=(8,),
        default=None,
        help="store the temporal KV cache quantized (default: the weights' float dtype)",
    )
    parser.add_argument(
        "--kyutai-python",
        metavar="PY",
        type=program,
        help="also time Kyutai's moshi_mlx LM (installed for interpreter PY), step by step "
        "alternating with ours: the 7B preset (where two such models fit in memory: q4 or q8 here, bf16 on a "
        "large GPU) or --shape skinny",
    )


def run(args: argparse.Namespace) -> int:
    cfg = LmConfig.preset() if args.config is None else LmConfig.from_json(args.config)
    if cfg.is_stt:  # no depformer: this benchmark's step does not exist for it
        raise ConfigError(
            f"{args.config} describes a speech-to-text model: time it with `python -m moshi_mlx.bench stt`"
        )
    if args.shape == "skinny":
        cfg = skinny(cfg)
    precisions = args.precision or (["f32"] if args.shape == "skinny" else ["q4"])
    if args.kyutai_python and args.config is not None:
        print("error: --kyutai-python compares the 7B preset or --shape skinny, not --config", file=sys.stderr)
        return 2
    if args.kyutai_python and args.shape == "7b":  # ours and Kyutai's side by side, the largest precision asked
        need = max(2 * _model_bytes(p, cfg) for p in precisions)
        have = available_bytes()
        if not fits(need, have):
            have = have or 0
            print(
                f"error: --kyutai-python with {','.join(precisions)} holds two 7B models side by side, about "
                f"{need / GiB:.0f} GiB, and {have / GiB:.0f} GiB is available: compare at q4 or q8 here, or on "
                "a machine with more memory",
                file=sys.stderr,
            )
            return 2
    version = mx.__version__  # pyright: ignore[reportAttributeAccessIssue]  (mlx's stubs omit __version__)
    print(f"LM benchmark: mlx {version}, device {mx.default_device()}, {platform.machine()}, {platform.system()}")
    bandwidth = args.bandwidth_gbs
    if bandwidth is None:
        bandwidth, device = default_bandwidth_gbs()
        print(f"memory bandwidth for the roofline: {bandwidth:g} GB/s ({device}; --bandwidth-gbs sets it)")
    for p in precisions:
        bench(p, args.steps, bandwidth, cfg, args.kyutai_python, args.kv_bits)
    return 0
