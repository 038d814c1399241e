"""python -m quantize: bad input, existing outputs, interrupted writes, Hugging Face sources."""

from __future__ import annotations

import json
import os
import shutil

import huggingface_hub
import mlx.core as mx
import pytest
from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

from moshi_mlx.release import MIMI_FILE as MIMI
from moshi_mlx.release import TOKENIZER_FILE as TOKENIZER
from quantize import writer
from quantize.__main__ import main
from support.lm import CONFIG, FILES

TORCH, CFG = str(FILES["torch"]), str(CONFIG)


def cli(*args: str) -> list[str]:
    return [*args, "--no-progress", "--report-steps", "2"]


def error_of(capsys, argv: list[str], code: int = 2) -> str:
    """The one error line of a run that ends with `code`: 2 for bad input refused before any work, 1 when
    the work failed (the README's exit status)."""
    assert main(argv) == code
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    return err


def test_cli_success(tmp_path, capsys):
    assert main(cli(TORCH, "--config", CFG, "--out", str(tmp_path / "o"), "--q-bits", "8")) == 0
    out = capsys.readouterr().out
    assert "model.q8.safetensors" in out and "text top-1" in out and "wrote" in out


def test_help_documents_every_flag(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for flag in (
        "--out",
        "--config",
        "--q-bits",
        "--q-group-size",
        "--dtype",
        "--mixed",
        "--force",
        "--report-steps",
        "SOURCE",
        "--hf-repo",
    ):
        assert flag in text


# Bad flags (--q-bits 3, --q-group-size 48, --mixed with 8 bits, --dtype int8) are rows of test_bad_input.py.


def test_not_a_safetensors_file(tmp_path, capsys):
    bad = tmp_path / "model.safetensors"
    bad.write_text("this is not a checkpoint" * 10)
    assert "not a safetensors file" in error_of(capsys, cli(str(bad), "--config", CFG, "--out", str(tmp_path / "o")))


def test_truncated_file(tmp_path, capsys):
    cut = tmp_path / "model.safetensors"
    data = FILES["torch"].read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    assert "truncated" in error_of(capsys, cli(str(tmp_path), "--config", CFG, "--out", str(tmp_path / "o")))
    assert not (tmp_path / "o").exists()


def test_checkpoint_not_matching_config_names_tensors(tmp_path, capsys):
    w = dict(mx.load(TORCH))
    del w["transformer.layers.1.gating.linear_out.weight"]
    w["text_linear.weight"] = mx.zeros((50, 128), mx.bfloat16)
    mx.save_safetensors(str(tmp_path / "model.safetensors"), w)
    err = error_of(capsys, cli(str(tmp_path), "--config", CFG, "--out", str(tmp_path / "o")))
    assert "transformer.layers.1.gating.linear_out.weight" in err and "text_linear.weight (file (50, 128)" in err
    assert "--config" in err


def test_wrong_config_size(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps(json.loads(CONFIG.read_text()) | {"dim": 192, "num_heads": 3}))
    err = error_of(capsys, cli(TORCH, "--config", str(cfg), "--out", str(tmp_path / "o")))
    assert "does not fit" in err and "audio_embs.0.weight (file (33, 128), model (33, 192))" in err


@pytest.mark.parametrize("name,message", [("mlx_q4", "already quantized"), ("missing", "no such file or folder")])
def test_refused_sources(tmp_path, capsys, name, message):
    src = str(FILES[name]) if name in FILES else str(tmp_path / "nope.safetensors")
    assert message in error_of(capsys, cli(src, "--config", CFG, "--out", str(tmp_path / "o")))


def test_mimi_checkpoint_is_refused(tmp_path, capsys):
    mimi = tmp_path / "m.safetensors"
    mx.save_safetensors(str(mimi), {"encoder.model.0.conv.conv.weight": mx.zeros((2, 1, 3))})
    err = error_of(capsys, cli(str(mimi), "--config", CFG, "--out", str(tmp_path / "o")))
    assert "Mimi codec, not the Moshi LM" in err


def test_existing_output_needs_force(tmp_path, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "model.q4.safetensors").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    err = error_of(capsys, cli(TORCH, "--config", CFG, "--out", str(out), "--q-bits", "4"))
    assert "already holds model.q4.safetensors" in err and "--force" in err
    assert (out / "model.q4.safetensors").read_bytes() == b"old"
    assert main(cli(TORCH, "--config", CFG, "--out", str(out), "--q-bits", "4", "--force")) == 0
    assert (out / "model.q4.safetensors").stat().st_size > 1000
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.q4.safetensors", "notes.txt"]


def test_a_closed_or_full_standard_output_is_not_blamed_on_out(tmp_path):
    """`quantize ... | head -1` said "cannot write --out o: Broken pipe (choose another --out)", exit 1; with
    standard output on a full disk, that --out's disk was full. Nothing is left in --out either way."""
    import subprocess
    import sys

    from support.cli import REPO, Ran, assert_one_line_error, cli_env

    argv = (sys.executable, "-m", "quantize", TORCH, "--config", CFG, "--q-bits", "4", "--no-progress")
    env = cli_env(PYTHONUNBUFFERED="1")  # each line written as printed: the report's fails, during the work
    out = str(tmp_path / "a")
    p = subprocess.Popen((*argv, "--out", out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    assert p.stdout.readline().startswith(b"source:") and p.stdout.readline().startswith(b"config:")
    p.stdout.close()  # `| head -2`
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and "error" not in err and "Traceback" not in err, err
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            (*argv, "--out", str(tmp_path / "b")), cwd=REPO, env=cli_env(), stdout=full, stderr=subprocess.PIPE
        )
    r = Ran(argv, done.returncode, "", done.stderr.decode())
    assert "--out" not in assert_one_line_error(r, 1, "standard output", "no space left")
    assert not list(tmp_path.iterdir())


def test_output_must_not_replace_the_source(tmp_path, capsys):
    shutil.copyfile(TORCH, tmp_path / "model.safetensors")
    err = error_of(capsys, cli(str(tmp_path), "--config", CFG, "--out", str(tmp_path), "--force"))
    assert "holds the source files" in err


def test_output_must_not_replace_the_source_config(tmp_path, capsys):
    """--force replaced the config the source was read with (--config, or config.json beside it)."""
    shutil.copyfile(TORCH, tmp_path / "consolidated.safetensors")
    shutil.copyfile(CFG, tmp_path / "config.json")
    source = str(tmp_path / "consolidated.safetensors")
    for given in (["--config", str(tmp_path / "config.json")], []):
        err = error_of(capsys, cli(source, *given, "--out", str(tmp_path), "--force"))
        assert "holds the source files" in err
    assert (tmp_path / "config.json").read_bytes() == CONFIG.read_bytes()


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch, exc, capsys):
    out = tmp_path / "o"
    out.mkdir()
    (out / "model.q8.safetensors").write_bytes(b"previous good file")
    calls = []
    real = writer.StreamingSafetensors.write

    def failing(self, name, x):
        calls.append(name)
        if len(calls) == 40:
            raise exc
        real(self, name, x)

    monkeypatch.setattr(writer.StreamingSafetensors, "write", failing)
    with pytest.raises(type(exc)):
        from quantize.__main__ import run
        from quantize.convert import Options

        run(TORCH, out, CFG, Options(force=True, progress=False), report_steps=0, echo=lambda *_: None)
    assert len(calls) == 40
    assert sorted(p.name for p in out.iterdir()) == ["model.q8.safetensors"]  # no partial file, no staging
    assert (out / "model.q8.safetensors").read_bytes() == b"previous good file"


def test_keyboard_interrupt_in_cli_is_one_line(tmp_path, monkeypatch, capsys):
    def stop(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(writer.StreamingSafetensors, "write", stop)
    assert main(cli(TORCH, "--config", CFG, "--out", str(tmp_path / "o"))) == 130
    assert "nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_stop_just_after_the_staging_folder_is_made_leaves_nothing(tmp_path, monkeypatch, capsys):
    """SIGTERM / Ctrl-C may land between two bytecodes anywhere: here, as mkdtemp returns the staging folder
    (the old code left that folder behind in about one run of test_exit's SIGTERM case out of ten)."""
    from quantize import convert

    real = convert.tempfile.mkdtemp

    def made_then_stopped(*a, **k):
        real(*a, **k)
        raise KeyboardInterrupt

    monkeypatch.setattr(convert.tempfile, "mkdtemp", made_then_stopped)
    out = tmp_path / "o"
    out.mkdir()
    (out / "mine.txt").write_text("kept")
    assert main(cli(TORCH, "--config", CFG, "--out", str(out))) == 130
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    assert main(cli(TORCH, "--config", CFG, "--out", str(tmp_path / "new"))) == 130
    assert not (tmp_path / "new").exists()  # created by this run, and removed again


def test_a_stop_while_the_files_move_into_place_leaves_them_whole(tmp_path, monkeypatch, capsys):
    """A real SIGINT between two of the final renames: the files were verified, and --out held the float file
    without the config.json that names it (or, with --force, a mix of new and old files). The move finishes;
    the stop changes nothing, as one after the exit status is decided."""
    import signal

    from quantize import convert

    real = convert.os.replace
    moved = []

    def replace_then_ctrl_c(src, dst):
        real(src, dst)
        moved.append(dst)
        if len(moved) == 1:
            signal.raise_signal(signal.SIGINT)

    monkeypatch.setattr(convert.os, "replace", replace_then_ctrl_c)
    out = tmp_path / "o"
    assert main(cli(TORCH, "--config", CFG, "--out", str(out), "--q-bits", "4")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.q4.safetensors"]
    assert len(moved) == 2


def test_failed_verification_leaves_nothing(tmp_path, monkeypatch, capsys):
    import quantize.report as report
    from moshi_mlx.errors import CheckpointError

    def broken(lm, where):
        raise CheckpointError(f"{where}: the converted model does not run sanely")

    monkeypatch.setattr(report, "step_check", broken)
    assert "does not run sanely" in error_of(capsys, cli(TORCH, "--config", CFG, "--out", str(tmp_path / "o")), code=1)
    assert not (tmp_path / "o").exists()


def test_nan_weights_are_named_by_the_source_and_out_not_the_staging_folder(tmp_path, capsys):
    """A checkpoint with NaN weights converts to a model that does not run sanely: the error named the file in
    the staging folder, gone by the time the user reads it. It names --out's file and the source."""
    w = dict(mx.load(TORCH))
    w["text_linear.weight"] = mx.full(w["text_linear.weight"].shape, float("nan"), mx.bfloat16)
    src = tmp_path / "model.safetensors"
    mx.save_safetensors(str(src), w)
    out = tmp_path / "o"
    err = error_of(capsys, cli(str(src), "--config", CFG, "--out", str(out), "--q-bits", "8"), code=1)
    assert "does not run sanely" in err and str(out / "model.q8.safetensors") in err and str(src) in err, err
    assert ".partial" not in err and not out.exists(), err


def test_writer_refuses_what_was_not_planned(tmp_path):
    path = tmp_path / "x.safetensors"
    w = writer.StreamingSafetensors(path, [writer.Entry("a", mx.float32, (2,))])
    with pytest.raises(ValueError, match="planned"):
        w.write("a", mx.zeros((3,)))
    with pytest.raises(ValueError, match="not written"):
        w.close()
    assert not path.exists()


def _fake_repo(tmp_path, with_extras: bool):
    repo = tmp_path / "hub"
    repo.mkdir()
    shutil.copyfile(TORCH, repo / "model.safetensors")
    shutil.copyfile(CONFIG, repo / "config.json")
    if with_extras:
        (repo / TOKENIZER).write_bytes(b"spm")
        (repo / MIMI).write_bytes(b"mimi")
    asked = []

    def download(repo_id, filename, **_):
        asked.append((repo_id, filename))
        if not (repo / filename).exists():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(repo / filename)

    return download, asked


def test_hub_repo_source(tmp_path, monkeypatch, capsys):
    download, asked = _fake_repo(tmp_path, with_extras=True)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    out = tmp_path / "o"
    assert main(cli("someone/moshiko-finetune", "--out", str(out), "--q-bits", "4")) == 0
    assert {f for _, f in asked} == {"config.json", "model.safetensors", TOKENIZER, MIMI}
    assert {r for r, _ in asked} == {"someone/moshiko-finetune"}
    raw = json.loads((out / "config.json").read_text())
    assert (raw["moshi_name"], raw["tokenizer_name"], raw["mimi_name"]) == ("model.q4.safetensors", TOKENIZER, MIMI)
    assert (out / TOKENIZER).read_bytes() == b"spm" and (out / MIMI).read_bytes() == b"mimi"


def test_local_folder_without_extras_writes_no_extra_names(tmp_path, monkeypatch):
    download, _ = _fake_repo(tmp_path, with_extras=False)
    assert main(cli(str(tmp_path / "hub"), "--out", str(tmp_path / "o"), "--q-bits", "8")) == 0
    raw = json.loads((tmp_path / "o" / "config.json").read_text())
    assert "mimi_name" not in raw and "tokenizer_name" not in raw and raw["dim"] == 128


def test_hub_offline_is_a_clear_error(tmp_path, monkeypatch, capsys):
    def offline(repo_id, filename, **_):
        raise LocalEntryNotFoundError("cannot reach the hub and not in cache")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    err = error_of(capsys, cli("kyutai/moshiko-pytorch-bf16", "--out", str(tmp_path / "o")))
    assert "offline" in err and "local folder" in err and "config.json" in err


def test_staging_left_by_a_killed_conversion_is_removed_next_time(tmp_path):
    """SIGKILL skips every cleanup; the next conversion into that folder removes what the dead process left."""
    import subprocess
    import sys

    from quantize.convert import _STAGING_PREFIX, remove_stale_staging

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f"{_STAGING_PREFIX}{int(dead.stdout)}-abc.partial"
    live = tmp_path / f"{_STAGING_PREFIX}{os.getpid()}-def.partial"
    for d in (stale, live):
        d.mkdir()
        (d / "model.q4.safetensors").write_bytes(b"half written")
    assert remove_stale_staging(tmp_path) == [stale]
    assert not stale.exists() and live.exists()
