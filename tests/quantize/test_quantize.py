"""python -m quantize on the small PyTorch-layout fixture: outputs, parity, agreement, mixed precision."""

from __future__ import annotations

import json
import shutil
import warnings

import mlx.core as mx
import mlx.nn as nn
import numpy as np
import pytest
from mlx.utils import tree_flatten

from moshi_mlx.config import LmConfig
from moshi_mlx.errors import CheckpointError
from moshi_mlx.lm import Lm
from moshi_mlx.loading.lm import load_lm
from moshi_mlx.weights import quant
from moshi_mlx.weights.formats import CheckpointFormat, detect_format
from moshi_mlx.weights.quant_config import QuantRecipe, recipe_for_file
from moshi_mlx.weights.safetensors_io import read_header
from quantize.__main__ import run
from quantize.convert import Options
from quantize.recipes import plan_outputs, recipe_bytes
from support.lm import CONFIG, FILES, goldens, greedy_run

FLOAT, Q8, Q4 = "model.safetensors", "model.q8.safetensors", "model.q4.safetensors"
KYUTAI = {FLOAT: FILES["mlx_bf16"], Q8: FILES["mlx_q8"], Q4: FILES["mlx_q4"]}


def _quiet(*_):
    pass


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    out = tmp_path_factory.mktemp("all") / "moshi-mlx"
    result = run(str(FILES["torch"]), out, str(CONFIG), Options(progress=False), echo=_quiet)
    return out, {r.file_name: r for r in result.reports}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed")
    result = run(str(FILES["torch"]), out, str(CONFIG), Options(bits=4, mixed=True, progress=False), echo=_quiet)
    return out, result.reports[0]


def test_writes_the_three_files_and_a_config(converted):
    out, reports = converted
    assert sorted(p.name for p in out.iterdir()) == sorted([FLOAT, Q8, Q4, "config.json"])  # no staging left
    raw = json.loads((out / "config.json").read_text())
    assert raw["moshi_name"] == Q4
    assert raw["quantization"] == {"bits": 4, "group_size": 32, "mode": "affine"}
    assert raw["model_files"] == {
        FLOAT: None,
        Q8: {"bits": 8, "group_size": 64, "mode": "affine"},
        Q4: {"bits": 4, "group_size": 32, "mode": "affine"},
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every key is known to LmConfig.from_kyutai
        assert LmConfig.from_json(out / "config.json") == LmConfig.from_json(CONFIG)
    assert all(r.verified for r in reports.values())
    assert {r.size for r in reports.values()} == {(out / n).stat().st_size for n in (FLOAT, Q8, Q4)}


@pytest.mark.parametrize("name", [FLOAT, Q8, Q4])
def test_outputs_are_bit_identical_to_kyutai_recipe(converted, name):
    # The committed Kyutai-MLX fixtures were made by Kyutai's moshi_mlx from the same PyTorch file
    # (tests/reference/make_lm_mlx_fixtures.py: bf16, then nn.quantize 8/64 and 4/32).
    out, _ = converted
    ours, theirs = mx.load(str(out / name)), mx.load(str(KYUTAI[name]))
    assert sorted(ours) == sorted(theirs)
    differ = [k for k in ours if ours[k].dtype != theirs[k].dtype or not mx.array_equal(ours[k], theirs[k]).item()]
    assert differ == []
    assert detect_format(read_header(out / name)) is CheckpointFormat.LM_KYUTAI_MLX


def test_float_output_generates_exactly_as_the_reference(converted):
    # As test_lm's parity tests: bf16 weights computed in float32 reproduce the reference's greedy run.
    out, _ = converted
    lm = load_lm(out / FLOAT, out / "config.json", dtype=mx.float32)
    g = goldens()
    assert (greedy_run(lm, g["user_codes"]) == g["gen_tokens"]).all()


@pytest.mark.parametrize("name,spec", [(Q8, (8, 64)), (Q4, (4, 32))])
def test_quantized_outputs_load_with_their_spec(converted, name, spec):
    out, _ = converted
    lm = load_lm(out / name, out / "config.json")
    leaves = [m for _, m in tree_flatten(lm.leaf_modules(), is_leaf=nn.Module.is_module)]
    quantized = [m for m in leaves if hasattr(m, "bits")]
    assert {(m.bits, m.group_size) for m in quantized} == {spec}
    assert len(quantized) == len(quant.quantizable_modules(Lm(lm.cfg)))  # every Linear and Embedding


def test_quantized_agreement_floors(converted):
    # Random weights have no margins, so 4 bits flip many close choices; measured (32 random teacher-forced
    # steps): q8 text 0.94 / audio 0.92, KL 9e-4 / 6e-4; q4 0.56 / 0.60, KL 7.9e-2 / 5.0e-2.
    _, reports = converted
    q8, q4 = reports[Q8].agreement, reports[Q4].agreement
    assert q8.text_top1 >= 0.9 and q8.audio_top1 >= 0.88 and q8.text_kl < 3e-3 and q8.audio_kl < 3e-3, q8
    assert q4.text_top1 >= 0.45 and q4.audio_top1 >= 0.5 and q4.text_kl < 0.15 and q4.audio_kl < 0.1, q4
    assert reports[FLOAT].agreement is None and reports[FLOAT].note == "reference"


def test_mixed_beats_plain_4bit_for_a_small_size_increase(converted, mixed):
    _, reports = converted
    out, mix = mixed
    plain = reports[Q4]
    # Measured: text top-1 0.56 -> 0.72, KL 7.9e-2 -> 4.3e-2; audio 0.60 -> 0.68, KL 5.0e-2 -> 3.4e-2.
    a, b = plain.agreement, mix.agreement
    assert b.text_top1 > a.text_top1 and b.audio_top1 > a.audio_top1, (a, b)
    assert b.text_kl < 0.75 * a.text_kl and b.audio_kl < 0.8 * a.audio_kl, (a, b)
    # The fixture is tiny, so its embeddings weigh much more than at 7B (+12 % here, +4.2 % at 7B).
    assert mix.size < 1.2 * plain.size
    model = Lm(LmConfig.preset())
    (q4,) = plan_outputs(model, 4, None, False)
    (q4_mixed,) = plan_outputs(model, 4, None, True)
    assert 1.0 < recipe_bytes(model, q4_mixed.recipe) / recipe_bytes(model, q4.recipe) < 1.05
    raw = json.loads((out / "config.json").read_text())
    recipe = recipe_for_file(raw, Q4)
    assert isinstance(recipe, QuantRecipe) and recipe.overrides["text_emb"] == quant.QuantSpec(8, 64)
    assert "transformer.layers.0.self_attn.in_proj" not in recipe.overrides
    assert mix.verified and sorted(p.name for p in out.iterdir()) == ["config.json", Q4]


def test_kyutai_files_pass_the_recorded_quantization_check(converted, tmp_path):
    out, _ = converted
    for name, src in KYUTAI.items():
        shutil.copyfile(src, tmp_path / name)
        load_lm(tmp_path / name, out / "config.json")


def test_a_file_that_disagrees_with_the_config_is_refused(converted, tmp_path):
    out, _ = converted
    shutil.copyfile(out / "config.json", tmp_path / "config.json")
    shutil.copyfile(out / Q8, tmp_path / Q4)  # the 8-bit file under the 4-bit name
    shutil.copyfile(out / FLOAT, tmp_path / Q8)  # a float file where the config records 8 bits
    with pytest.raises(CheckpointError, match=r"text_emb: config 4-bit, group 32, file 8-bit, group 64"):
        load_lm(tmp_path / Q4, tmp_path / "config.json")
    with pytest.raises(CheckpointError, match=r"82 modules differ(.|\n)*text_emb: config 8-bit, group 64, file float"):
        load_lm(tmp_path / Q8, tmp_path / "config.json")


def test_source_in_kyutai_mlx_float_layout_converts_too(tmp_path):
    out = tmp_path / "o"
    run(str(FILES["mlx_bf16"]), out, str(CONFIG), Options(bits=8, progress=False), report_steps=0, echo=_quiet)
    ours, theirs = mx.load(str(out / Q8)), mx.load(str(FILES["mlx_q8"]))
    assert all(mx.array_equal(ours[k], theirs[k]).item() for k in theirs)


def test_float32_dtype_and_group_size(tmp_path):
    out = tmp_path / "o"
    result = run(
        str(FILES["torch"]),
        out,
        str(CONFIG),
        Options(bits=4, group_size=64, dtype="float32", progress=False),
        report_steps=4,
        echo=_quiet,
    )
    w = mx.load(str(out / Q4))
    assert w["text_emb.scales"].dtype == mx.float32 and w["out_norm.weight"].dtype == mx.float32
    assert w["text_emb.scales"].shape == (49, 2)  # 128 / 64 groups
    assert json.loads((out / "config.json").read_text())["quantization"]["group_size"] == 64
    assert result.reports[0].agreement is not None  # reference: the source, cast to float32
    assert np.isfinite(result.reports[0].agreement.text_kl)


def test_memcheck_synthesises_the_pytorch_release_layout():
    # quantize.memcheck measures peak memory on synthetic checkpoints of this layout: it must be the real one.
    from moshi_mlx.weights.lm_torch import torch_layout_shapes

    header = read_header(FILES["torch"])
    assert torch_layout_shapes(LmConfig.from_json(CONFIG)) == {k: v.shape for k, v in header.items()}


def test_output_folder_runs_in_the_dialog_pipeline(tmp_path):
    # What `python -m moshi_mlx.run --hf-repo DIR` does: find the files in the folder, load, step frames.
    from moshi_mlx.loading.hub import resolve_model_files
    from moshi_mlx.pipeline import MoshiPipeline, Sampling
    from support import ASSETS

    e2e, src = ASSETS / "e2e", tmp_path / "finetune"
    src.mkdir()
    shutil.copyfile(FILES["torch"], src / "model.safetensors")
    raw = json.loads((e2e / "config.json").read_text()) | {"moshi_name": "model.safetensors"}
    (src / "config.json").write_text(json.dumps(raw))
    for name in (raw["mimi_name"], raw["tokenizer_name"], raw["mimi_config_name"]):
        shutil.copyfile(e2e / name, src / name)
    out = tmp_path / "mlx"
    run(str(src), out, opts=Options(bits=4, progress=False), report_steps=0, echo=_quiet)
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["config.json", "model.q4.safetensors", raw["mimi_name"], raw["tokenizer_name"], raw["mimi_config_name"]]
    )

    greedy = Sampling(temp=0.0, text_temp=0.0)
    ours, released = (MoshiPipeline.from_files(resolve_model_files(d), greedy) for d in (out, e2e))
    pcm = np.random.default_rng(0).standard_normal(1920 * 6).astype(np.float32) * 0.1
    spoke = 0
    for frame in pcm.reshape(6, 1920):
        a, b = ours.step(frame), released.step(frame)
        assert a.token == b.token
        assert (a.pcm is None) == (b.pcm is None) and (a.pcm is None or np.array_equal(a.pcm, b.pcm))
        spoke += a.pcm is not None
    assert spoke >= 4


def test_lora_adapters_are_refused(tmp_path, capsys):
    from quantize.__main__ import main

    raw = json.loads(CONFIG.read_text()) | {"lora_name": "lora.safetensors"}
    (tmp_path / "config.json").write_text(json.dumps(raw))
    shutil.copyfile(FILES["torch"], tmp_path / "model.safetensors")
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--no-progress"]) == 2  # refused before any work
    assert "Merge the adapters" in capsys.readouterr().err


def test_quantization_record_parsing():
    from moshi_mlx.errors import ConfigError
    from moshi_mlx.weights.quant_config import NO_CLAIM, recipe_from_json

    r = recipe_from_json(
        {"bits": 4, "group_size": 32, "mode": "affine", "text_emb": False, "text_linear": {"bits": 8, "group_size": 64}}
    )
    assert r.overrides == {"text_emb": None, "text_linear": quant.QuantSpec(8, 64)}
    assert recipe_from_json(r.to_json()) == r
    for bad, message in [
        ({"bits": 3.5, "group_size": 32}, "no MLX affine"),
        ({"bits": 4, "group_size": 48}, "no MLX"),
        ({"bits": 4, "group_size": 32, "mode": "mxfp4"}, "mode 'mxfp4'"),
        ({"bits": 4, "group_size": 32, "x": 7}, r"\['x'\]"),
        ([4, 32], "must be an object"),
    ]:
        with pytest.raises(ConfigError, match=message):
            recipe_from_json(bad)
    # Kyutai's own configs record nothing: no claim, nothing checked.
    assert recipe_for_file({"moshi_name": Q4}, Q4) is NO_CLAIM
    assert recipe_for_file({"moshi_name": Q4, "quantization": {"bits": 4, "group_size": 32}}, Q8) is NO_CLAIM
    assert recipe_for_file({"model_files": {FLOAT: None}}, FLOAT) is None


def test_memcheck_stopped_by_ctrl_c_removes_its_work_folder(tmp_path):
    """`python -m quantize.memcheck` writes gigabytes of synthetic checkpoints into a temporary folder, removed
    when it ends. A Ctrl-C ended it at once (the start-up handler, meant only until a program's own signal
    handling takes over, stayed: memcheck never handed over), leaving the folder behind."""
    import signal
    import time

    from support.cli import finished, start_python

    p = start_python("-m", "quantize.memcheck", "--dim", "256", "--layers", "2", "--workdir", tmp_path)
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob("*/src/model.safetensors")) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob("*/src/model.safetensors")), "memcheck never started writing"
    p.send_signal(signal.SIGINT)
    r = finished(p, timeout=60)
    assert r.code in (130, -signal.SIGINT) and "Traceback" not in r.err, r.why()
    assert list(tmp_path.iterdir()) == []
