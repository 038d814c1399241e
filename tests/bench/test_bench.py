"""The benchmark CLI runs and prints its figures (it asserts nothing about speed)."""

from __future__ import annotations

import sys
import time

import pytest

from moshi_mlx.bench import main


def test_bench_mimi_prints_figures(capsys) -> None:
    assert main(["mimi", "--frames", "1", "--warmup", "0", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    for needle in ("streaming encode_step", "streaming decode_step", "batch encode", "batch decode", "peak"):
        assert needle in out
    import re

    assert re.search(r"op by op: streaming enc \+ dec +median +[\d.]+ ms", out), out
    assert re.search(r"compiling makes the streamed frame [\d.]+x (faster|slower)", out), out
    found = {}
    for way in ("compiled", "op by op"):
        m = re.search(rf"host build and dispatch per frame, {way}: ([\d.]+) ms .*per frame: (\d+) ", out)
        assert m and float(m[1]) > 0, out
        found[way] = int(m[2])
    assert 0 < found["compiled"] < found["op by op"], found


def test_bench_needs_a_model(capsys) -> None:
    with pytest.raises(SystemExit):
        main([])


def _fake_kyutai_python(tmp_path, reply_ms: float):
    """An 'interpreter' that answers the bench/kyutai_*.py protocol with fixed times."""
    responder = tmp_path / "responder.py"
    responder.write_text(
        "import json, sys\n"
        "print(json.dumps({'ready': True, 'version': 'fake', 'mlx': 'x'}), flush=True)\n"
        "for line in sys.stdin:\n"
        f"    n = int(line); print(json.dumps({{'encode_ms': [{reply_ms}] * n, 'decode_ms': [{reply_ms}] * n,"
        f" 'step_ms': [{reply_ms}] * n}}), flush=True)\n"
    )
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} {responder}\n")
    fake.chmod(0o755)
    return str(fake)


def test_bench_mimi_compares_with_kyutai_in_the_same_run(tmp_path, capsys) -> None:
    fake = _fake_kyutai_python(tmp_path, 1e6)  # 1000 s per step: ours is faster
    args = ["mimi", "--frames", "2", "--warmup", "0", "--seconds", "0.2", "--kyutai-python", fake, "--rounds", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Kyutai's moshi_mlx fake" in out and "Kyutai streaming enc + dec" in out
    ratio_line = next(line for line in out.splitlines() if line.startswith("ours / Kyutai's"))
    assert "2 interleaved rounds" in ratio_line
    assert float(ratio_line.split(": ")[1].split(" =")[0]) < 0.01


def test_bench_mimi_reports_a_broken_kyutai_interpreter(tmp_path) -> None:
    """A program that runs but never answers (a missing one is refused with the flags: test_bad_input)."""
    with pytest.raises(SystemExit, match="^error: --kyutai-python: the timing script exited"):
        main(["mimi", "--frames", "1", "--warmup", "0", "--kyutai-python", "false"])


def test_bench_lm_compares_with_kyutai_step_by_step(tmp_path, capsys) -> None:
    """The LM bench alternates its steps with Kyutai's (a fake interpreter here) and prints the ratio."""
    from moshi_mlx.bench.lm import bench
    from moshi_mlx.config import LmConfig
    from support.lm import LM

    fake = _fake_kyutai_python(tmp_path, 1e6)  # 1000 s per step: ours is faster
    bench("q4", 2, 24.0, LmConfig.from_json(LM / "lm_small.json"), fake)
    out = capsys.readouterr().out
    assert "Kyutai's moshi_mlx fake" in out and "median of 2" in out and "x faster" in out


def test_bench_lm_says_slower_when_ours_is_slower(tmp_path, capsys) -> None:
    from moshi_mlx.bench.lm import bench
    from moshi_mlx.config import LmConfig
    from support.lm import LM

    fake = _fake_kyutai_python(tmp_path, 1e-3)  # 1 us per step: ours is slower
    bench("q4", 2, 24.0, LmConfig.from_json(LM / "lm_small.json"), fake)
    line = next(line for line in capsys.readouterr().out.splitlines() if "Kyutai's moshi_mlx fake" in line)
    assert "-> ours is " in line and line.endswith("x slower") and float(line.split()[-2][:-1]) > 1


def test_a_ratio_below_one_reads_slower() -> None:
    from moshi_mlx.bench import faster_or_slower

    assert faster_or_slower(0.013, 0.010) == "1.30x faster"
    assert faster_or_slower(0.010, 0.012) == "1.20x slower"  # lanes that cost time: was "0.83x faster"
    assert faster_or_slower(0.010, 0.010) == "1.00x faster"


def test_bench_lm_refuses_a_kyutai_comparison_it_cannot_make(capsys, monkeypatch) -> None:
    """Two bf16 7B models side by side (about 32 GiB) where 24 GiB is available: refused in one line that says
    what it needs (a GPU machine with the memory runs it); a --config is never compared."""
    import moshi_mlx.bench.lm as bench_lm
    from support.lm import LM

    monkeypatch.setattr(bench_lm, "available_bytes", lambda: 24 * 2**30)
    assert main(["lm", "--precision", "bf16", "--kyutai-python", "python3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --kyutai-python with bf16 holds two 7B models") and "q4 or q8" in err
    assert "about 32 GiB, and 24 GiB is available" in err and err.count("\n") == 1
    assert main(["lm", "--config", str(LM / "lm_small.json"), "--kyutai-python", "python3"]) == 2
    assert "not --config" in capsys.readouterr().err


def test_bench_loop_latency_is_never_negative_when_the_machine_stalls(monkeypatch) -> None:
    """A loaded machine stalls the devices' clock now and then (here: 0.3 s every 60 callbacks). The fake
    devices must not then deliver the overdue audio in one burst, which squeezed it in time and gave
    latencies down to -128 ms under load (-94 ms here)."""
    from moshi_mlx.audio.fake import FakeStream
    from moshi_mlx.bench.loop import measure_latency

    process = FakeStream.process
    calls = [0]

    def stalling(self, frames=None):
        calls[0] += 1
        if calls[0] % 60 == 0:
            time.sleep(0.3)
        return process(self, frames)

    monkeypatch.setattr(FakeStream, "process", stalling)
    r = measure_latency(compute_s=0.0, rate_in=48_000, rate_out=44_100, seconds=1.5)
    assert r.clicks_heard == r.clicks_sent >= 4
    assert min(r.added_ms) >= 0, r.added_ms


def test_bench_lm_skinny_prints_step_host_build_and_primitives(capsys) -> None:
    """The skinny shape (a small config here, made skinny) prints the three figures of issue 12 as numbers."""
    import re

    from moshi_mlx.bench.lm import bench, skinny
    from moshi_mlx.config import LmConfig
    from support.lm import LM

    bench("f32", 2, 24.0, skinny(LmConfig.from_json(LM / "lm_small.json"), dim=32, context=8))
    out = capsys.readouterr().out
    step = re.search(r"32-dim 2-layer  f32 .*: step \d+ ms median of 2 compiled .*op by op, interleaved: \d+ ms", out)
    assert step, out
    found = {}
    for way in ("compiled", "op by op"):
        host = re.search(rf"host build and dispatch per step, {way}: ([\d.]+) ms .*building the graph ([\d.]+) ms", out)
        assert host and float(host[1]) >= float(host[2]) > 0, out
        primitives = re.search(rf"{way}: .*primitives evaluated per step: (\d+) ", out)
        assert primitives and int(primitives[1]) > 100, out  # 2 + 8 x 1 layers: hundreds of operations
        found[way] = int(primitives[1])
    assert found["compiled"] < found["op by op"], found  # compiling fuses elementwise operations
    # every matrix product of a step once: 4 per temporal layer, the text head, 2 + 4 per layer for each slice
    floor = re.search(r"matrix products alone: the step's (\d+) Linears, .*: ([\d.]+) ms \((\d+)% of the compiled", out)
    assert floor and int(floor[1]) == 4 * 2 + 1 + 8 * (2 + 4 * 1) and float(floor[2]) > 0, out


def test_the_skinny_shape_is_the_7b_at_width_256() -> None:
    from moshi_mlx.bench.lm import skinny
    from moshi_mlx.config import LmConfig

    big = LmConfig.preset()
    cfg = skinny(big)
    assert (cfg.transformer.num_layers, cfg.depformer.transformer.num_layers, cfg.dep_q) == (32, 6, 8)
    assert (cfg.dim, cfg.depformer.transformer.d_model, cfg.transformer.context) == (256, 256, 64)
    assert cfg.transformer.gating_hidden == 704 and cfg.depformer.transformer.gating_hidden == 704  # 2.75 x 256
    assert (cfg.text_card, cfg.card, cfg.delays) == (big.text_card, big.card, big.delays)


def test_bench_echo_prints_a_row_per_canceller(capsys) -> None:
    assert main(["echo", "--case", "echo only", "--no-webrtc"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["case", "canceller", "ERLE", "dB"]
    rows = {ln[25:37].strip(): ln[37:].split() for ln in lines[1:]}  # canceller -> figures
    assert set(rows) == {"moshi_mlx", "+suppressor"}
    erle, ceiling = float(rows["moshi_mlx"][0]), float(rows["moshi_mlx"][1])
    assert 10 < erle < ceiling  # a figure was measured, under what an exact linear copy would leave


def test_peak_rss_is_counted_in_bytes_on_every_platform(monkeypatch) -> None:
    """getrusage's ru_maxrss is KiB on Linux and bytes on macOS: `bench lm` multiplied by 1024 everywhere, so a
    Mac's peak RSS read 1024 times too large."""
    import resource
    import types

    from moshi_mlx.bench import peak_rss_bytes

    if sys.platform.startswith("linux"):  # the kernel's own high-water mark, in kB
        with open("/proc/self/status") as f:
            hwm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
        assert abs(peak_rss_bytes() - hwm) <= 0.02 * hwm, (peak_rss_bytes(), hwm)
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_maxrss=123_456_789))
    assert peak_rss_bytes() == 123_456_789


def test_the_roofline_takes_the_published_bandwidth_of_the_device_it_runs_on() -> None:
    """`bench lm` without --bandwidth-gbs divided by 24 GB/s (one core of our test machine) on a Mac too, where
    an M2 reads 100 GB/s: its "% of bound" was 4x off. Names MLX reports pick their chip's published figure
    (the longest name that matches as whole words); an unknown device keeps the CPU figure and says so."""
    from moshi_mlx.bench.lm import CPU_BANDWIDTH_GBS, default_bandwidth_gbs

    for name, gbs in [
        ("Apple M2", 100),
        ("Apple M2 Pro", 200),
        ("Apple M1 Ultra", 800),
        ("Apple M3 Max", 300),
        ("NVIDIA H200", 4800),
        ("NVIDIA H100 PCIe", 2000),
        ("NVIDIA H100 80GB HBM3", 3350),
    ]:
        assert default_bandwidth_gbs({"device_name": name}) == (gbs, f"{name}, published")
    for unknown in ({"device_name": "AMD EPYC"}, {"device_name": "Apple M12"}, {}):
        gbs, what = default_bandwidth_gbs(unknown)
        assert gbs == CPU_BANDWIDTH_GBS and "no published figure known" in what
