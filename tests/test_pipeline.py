"""The real FrameModel: Mimi encode -> LM step -> Mimi decode on the tiny end-to-end model folder."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx import sampling
from moshi_mlx.errors import ConfigError
from moshi_mlx.loading.hub import ModelFiles, read_repo_config, resolve_model_files
from moshi_mlx.pipeline import MoshiPipeline, Sampling
from moshi_mlx.run import build_parser
from support import ASSETS
from support.signals import hum

E2E = ASSETS / "e2e"
GREEDY = Sampling(temp=0.0, text_temp=0.0)


def e2e_files() -> ModelFiles:
    return resolve_model_files(E2E)


@pytest.fixture(scope="module")
def pipeline() -> MoshiPipeline:
    return MoshiPipeline.from_files(e2e_files(), GREEDY)


def speechlike(frames: int, seed: int = 0) -> np.ndarray:
    return hum(frames * 1920, seed=seed)


def run(p: MoshiPipeline, pcm: np.ndarray):
    return [p.step(f) for f in pcm.reshape(-1, 1920)]


def test_frames_match_the_python_api(pipeline):
    """The pipeline equals Mimi.encode_step -> LmGen.step -> Mimi.decode_step done by hand."""
    pcm = speechlike(8)
    pipeline.reset()
    got = run(pipeline, pcm)
    max_delay = pipeline.lm.cfg.max_delay
    assert [r.pcm is None for r in got] == [i < max_delay for i in range(8)]
    assert all(r.pcm.shape == (1920,) and r.pcm.dtype == np.float32 for r in got[max_delay:])

    mimi, gen = pipeline.mimi, pipeline.gen
    mimi.reset()
    gen.reset()
    for frame, result in zip(pcm.reshape(-1, 1920), got):
        codes = mimi.encode_step(mx.array(frame).reshape(1, 1, -1))
        text, audio = gen.step(codes[:, : pipeline.lm.cfg.user_codebooks, 0])
        if text is None:
            continue
        assert result.token == int(text[0])
        out = mimi.decode_step(mx.array(audio)[:, :, None])
        np.testing.assert_allclose(result.pcm, np.array(out).reshape(-1), atol=1e-6)


def test_greedy_is_deterministic_and_reset_restarts(pipeline):
    pcm = speechlike(6, seed=1)
    pipeline.reset()
    a = run(pipeline, pcm)
    pipeline.reset()
    b = run(pipeline, pcm)
    assert [r.token for r in a] == [r.token for r in b]
    for x, y in zip(a, b):
        if x.pcm is not None:
            np.testing.assert_array_equal(x.pcm, y.pcm)


def test_output_depends_on_input(pipeline):
    pipeline.reset()
    a = run(pipeline, speechlike(6, seed=1))
    pipeline.reset()
    b = run(pipeline, np.zeros(6 * 1920, np.float32))
    assert any(not np.array_equal(x.pcm, y.pcm) for x, y in zip(a[1:], b[1:]))


def test_text_is_detokenized(pipeline):
    pipeline.reset()
    results = run(pipeline, speechlike(12, seed=2))
    tokens = [r.token for r in results if r.token is not None]
    shown = "".join(r.text or "" for r in results)
    pieces = [t for t in tokens if t not in (0, 3) and t < pipeline.text.sp.GetPieceSize()]
    assert len(pieces) > 0, "the fixture model should emit some text"
    expected = pipeline.text.sp.DecodeIds(pieces)
    assert shown.replace(" ", "") == expected.replace(" ", "")


def test_bad_frame_shape(pipeline):
    with pytest.raises(ValueError, match="1920 mono samples"):
        pipeline.step(np.zeros(1000, np.float32))


def test_mismatched_codec_is_refused():
    files = e2e_files()
    from moshi_mlx.loading.lm import load_lm
    from moshi_mlx.loading.mimi import load_mimi
    from moshi_mlx.text import TextStream

    mimi = load_mimi(ASSETS / "mimi_tiny.safetensors", config=ASSETS / "mimi_tiny_config.json")  # 64 bins
    lm = load_lm(files.moshi, config=files.config)
    with pytest.raises(ConfigError, match="do not belong together"):
        MoshiPipeline(mimi, lm, TextStream(files.tokenizer))


def test_folder_resolution_follows_config_names():
    files = e2e_files()
    assert files.quant == 4 and files.moshi == E2E / "model.q4.safetensors"
    assert files.config == E2E / "config.json" and files.mimi_config == E2E / "mimi_config.json"


def test_repo_config_split():
    cfg, names = read_repo_config(E2E / "config.json")
    assert names["moshi_name"] == "model.q4.safetensors" and "moshi_name" not in cfg
    assert cfg["dim"] == 128


def test_a_folder_config_recording_another_quantization_is_refused(tmp_path):
    """The quantization a folder's config.json records is checked against the weight file."""
    import json
    import shutil

    from moshi_mlx.errors import CheckpointError

    folder = tmp_path / "swapped"
    shutil.copytree(E2E, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["quantization"] = {"bits": 8, "group_size": 64, "mode": "affine"}  # but the file is 4-bit, group 32
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError):
        MoshiPipeline.from_files(resolve_model_files(folder), GREEDY)


def test_an_8_bit_kv_cache_runs_through_the_pipeline():
    p = MoshiPipeline.from_files(e2e_files(), GREEDY, kv_bits=8)
    assert isinstance(p._gen_state.lm.temporal.caches[0].keys, tuple)
    results = run(p, speechlike(4))
    assert all(r.pcm is None or r.pcm.shape == (1920,) for r in results) and results[-1].pcm is not None


def test_tight_memory_stores_the_cache_at_8_bits_and_says_so(pipeline, monkeypatch):
    from moshi_mlx.loading import memory
    from moshi_mlx.loading.memory import estimate_bytes
    from moshi_mlx.weights.safetensors_io import read_header

    files = e2e_files()
    header, cfg = read_header(files.moshi), pipeline.lm.cfg
    assert pipeline.notes == [] and pipeline.lm.kv_bits is None  # plenty of memory: the reference's cache
    between = (estimate_bytes(header, cfg, None) + estimate_bytes(header, cfg, None, kv_bits=8)) // 2
    monkeypatch.setattr(memory, "available_bytes", lambda: memory.HEADROOM + between)
    p = MoshiPipeline.from_files(files, GREEDY)
    assert p.lm.kv_bits == 8 and len(p.notes) == 1 and "8 bits" in p.notes[0]
    assert MoshiPipeline.from_files(files, GREEDY, kv_bits=8).notes == []  # asked for: nothing to say


def test_on_metal_the_weights_are_wired_and_a_tight_fit_is_said(monkeypatch):
    wired = []
    monkeypatch.setattr(mx.metal, "is_available", lambda: True)
    monkeypatch.setattr(mx, "device_info", lambda: {"max_recommended_working_set_size": 1 << 20})
    monkeypatch.setattr(mx, "set_wired_limit", lambda n: wired.append(n) or 0)
    p = MoshiPipeline.from_files(e2e_files(), GREEDY)
    assert wired == [1 << 20] and any("GPU keeps resident" in n for n in p.notes)


RANGES = {
    "temp": sampling.TEMP_RANGE,
    "text_temp": sampling.TEMP_RANGE,
    "top_k": sampling.TOP_K_RANGE,
    "text_top_k": sampling.TOP_K_RANGE,
    "seed": sampling.SEED_RANGE,
}


@pytest.mark.parametrize(
    "field,value",
    [
        ("temp", float("nan")),
        ("text_temp", float("inf")),
        ("temp", -0.1),
        ("top_k", 0),
        ("text_top_k", 2**21),
        ("seed", -1),
        ("seed", 2**64),
    ],
)
def test_sampling_refuses_what_the_command_line_refuses(field: str, value: float) -> None:
    """The app and the API build a Sampling without the command line: it checks the same ranges."""
    flag = f"--{field.replace('_', '-')}"
    with pytest.raises(ConfigError, match=field):
        Sampling(**{field: value})
    with pytest.raises(SystemExit):
        build_parser().parse_args([flag, str(value)])
    for edge in RANGES[field]:  # both ends of the range are allowed, by both
        Sampling(**{field: edge})
        assert getattr(build_parser().parse_args([flag, str(edge)]), field) == edge


def test_a_conversation_traces_nothing_the_pipeline_did_not_trace_while_loading(monkeypatch):
    """The compiled frame (Mimi's encode and decode, the LM's step for each attention window) is traced
    while loading: a trace takes the skinny 7B ~45 ms the first time, a stall in the conversation's first
    frame. Counted by how often the traced Python functions run."""
    from moshi_mlx.lm_gen import LmGen
    from moshi_mlx.mimi import Mimi

    runs: dict[str, int] = {}
    for cls, name in (
        (LmGen, "_temporal_half"),
        (LmGen, "_depformer_half"),
        (Mimi, "_encode_part"),
        (Mimi, "_decode_part"),
    ):
        original = getattr(cls, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            runs[_name] = runs.get(_name, 0) + 1
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(cls, name, counting)
    p = MoshiPipeline.from_files(e2e_files(), GREEDY)
    assert p.gen.compiled and p.mimi.compiled
    loaded = dict(runs)
    assert loaded["_temporal_half"] >= 12  # the 3000-slot ring: 11 windows of 256, then the whole ring
    run(p, speechlike(6))
    assert runs == loaded, (runs, loaded)
