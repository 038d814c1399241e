"""`run --voice NAME|FILE --role TEXT` on a tiny PersonaPlex model: subprocesses, exit codes, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from support.cli import E2E, assert_one_line_error, run_module
from support.personaplex import ASSETS, personaplex_folder

GREEDY = ("--temp", "0", "--text-temp", "0", "--seed", "1")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return personaplex_folder(tmp_path_factory.mktemp("plex") / "personaplex-7b-v1")


def _run(model: Path, out: Path, *flags: str):
    return run_module(
        "moshi_mlx.run",
        "--hf-repo",
        str(model),
        "--input",
        str(ASSETS / "user.wav"),
        "--output",
        str(out),
        *GREEDY,
        *flags,
    )


def test_a_preset_voice_and_a_role_answer(model: Path, tmp_path: Path) -> None:
    """The default voice (NATF2, from the model's voices/) and the default role; then a voice from a WAV and
    another role: both answer, and the answer depends on them."""
    first = _run(model, tmp_path / "a.wav", "--transcript", str(tmp_path / "a.json"))
    assert first.code == 0, first.why()
    second = _run(model, tmp_path / "b.wav", "--voice", str(ASSETS / "voice.wav"), "--role", "You are a pirate.")
    assert second.code == 0, second.why()
    a, rate = sf.read(str(tmp_path / "a.wav"), dtype="float32")
    b, _ = sf.read(str(tmp_path / "b.wav"), dtype="float32")
    assert rate == 24_000 and a.shape == b.shape and np.abs(a).max() > 0
    assert not np.array_equal(a, b)
    assert json.loads((tmp_path / "a.json").read_text())  # a transcript was written


def _refused(model: Path, out: Path, capsys, *flags: str) -> str:
    """`run` in this process (the refusals come before any model loads): exit 2 and its one error line."""
    from moshi_mlx.run import main

    capsys.readouterr()
    argv = ["--hf-repo", str(model), "--input", str(ASSETS / "user.wav"), "--output", str(out), *flags]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert not out.exists()
    return lines[0]


@pytest.mark.parametrize(
    "flags, needles",
    [
        (("--voice", "NATX9"), ("unknown voice 'NATX9'", "NATF2", "--voice")),
        (("--voice", "missing.wav"), ("missing.wav", "no such file")),
        (("--voice", "/nonexistent/NATF2.pt"), ("no such file",)),
        # these three were taken: a prompt of silence, of NaN (carried through Mimi's states), "no such file"
        (("--voice", "{tmp}/silence.wav"), ("silence.wav", "silent", "record")),
        (("--voice", "{tmp}/broken.wav"), ("broken.wav", "NaN or infinite", "record")),
        (("--voice", "{tmp}/takes.wav"), ("takes.wav", "is a folder")),
    ],
    ids=["unknown-name", "missing-recording", "missing-preset-file", "silence", "nan", "folder"],
)
def test_a_bad_voice_is_refused_before_the_model_loads(model: Path, tmp_path: Path, capsys, flags, needles) -> None:
    sf.write(str(tmp_path / "silence.wav"), np.zeros(48_000, np.float32), 24_000)
    voice = np.sin(np.arange(48_000, dtype=np.float32) / 10) * 0.3
    voice[1000] = np.nan
    sf.write(str(tmp_path / "broken.wav"), voice, 24_000, subtype="FLOAT")
    (tmp_path / "takes.wav").mkdir()
    line = _refused(model, tmp_path / "o.wav", capsys, *(f.format(tmp=tmp_path) for f in flags))
    assert all(n in line for n in needles), line


def test_a_preset_name_is_taken_in_any_case_when_only_one_matches(tmp_path: Path) -> None:
    """`--voice natf2` was an unknown voice where the model ships NATF2: a name in another case is that preset
    when it matches one; when it matches several (natf2.pt beside NATF2.pt), it is refused naming them."""
    from moshi_mlx.errors import ConfigError
    from moshi_mlx.persona.voices import resolve_voice

    folder = personaplex_folder(tmp_path / "plex") / "voices"
    exact = resolve_voice("NATF2", folder)
    for spec in ("natf2", "Natf2.pt"):
        got = resolve_voice(spec, folder)
        assert got.name == "NATF2" and got.embeddings is not None and exact.embeddings is not None
        assert np.array_equal(got.embeddings, exact.embeddings)
    (folder / "natf2.pt").write_bytes((folder / "NATF2.pt").read_bytes())
    with pytest.raises(ConfigError, match="unknown voice 'Natf2'.*NATF2, natf2"):
        resolve_voice("Natf2", folder)


def test_a_role_longer_than_the_models_context_is_refused(model: Path, tmp_path: Path) -> None:
    """The prompt (voice, role) is fed before the conversation: one longer than the model attends to pushed its
    start, the voice, out of the window before anyone spoke, and the run went on as if it were there."""
    r = _run(model, tmp_path / "o.wav", "--role", "teacher " * 3200)
    r = dataclasses.replace(r, argv=r.argv[:-1])  # a message without the 25 kB role
    assert_one_line_error(r, 1, "role", "3000 frames", "shorter")
    assert not (tmp_path / "o.wav").exists()


def test_a_voice_longer_than_the_context_is_refused_before_the_model_loads(model: Path, tmp_path: Path) -> None:
    """A 5-minute recording as the voice (the model attends to 4): refused at once, exit 2, not after its
    loudness was measured and Mimi had encoded all of it (23 s here with the tiny model, exit 1; minutes for an
    hour of audio or with the 7B)."""
    t = np.arange(8_000 * 300) / 8_000
    sf.write(str(tmp_path / "talk.wav"), 0.3 * np.sin(2 * np.pi * 200 * t), 8_000, subtype="PCM_16")
    r = _run(model, tmp_path / "o.wav", "--voice", str(tmp_path / "talk.wav"))
    assert_one_line_error(r, 2, "voice", "300 s long", "3000 frames", "record a few seconds")


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_malicious_preset_is_refused_in_one_line_and_nothing_runs(model: Path, tmp_path: Path) -> None:
    """A subprocess, as a person runs it: the pickle's command must not run in any process."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "NATF2.pt"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"embeddings": _Evil(marker), "cache": 0}, protocol=2))
    line = assert_one_line_error(_run(model, tmp_path / "o.wav", "--voice", str(evil)), 2, "refused", "system")
    assert "nothing in it was run" in line
    assert not marker.exists()


def test_moshi_refuses_a_voice_and_a_role(tmp_path: Path, capsys) -> None:
    line = _refused(E2E, tmp_path / "o.wav", capsys, "--role", "You are a pirate.")
    assert "Moshi model" in line and "PersonaPlex" in line and "--role" in line


def test_hibiki_refuses_a_voice_calling_itself_hibiki(tmp_path: Path, capsys) -> None:
    """It was called "a Moshi model"."""
    from support.hibiki import CONFIG

    cfg = json.loads(CONFIG.read_text())
    (tmp_path / "hibiki.json").write_text(json.dumps(cfg))
    line = _refused(E2E, tmp_path / "o.wav", capsys, "--config", str(tmp_path / "hibiki.json"), "--voice", "NATF2")
    assert "Hibiki model" in line and "Moshi model" not in line, line


def test_quantize_keeps_the_voices_and_the_result_runs_with_a_preset(tmp_path: Path) -> None:
    import tarfile

    src = personaplex_folder(tmp_path / "src", voices=False)
    with tarfile.open(src / "voices.tgz", "w:gz") as tar:  # as nvidia/personaplex-7b-v1 ships them
        tar.add(ASSETS / "voice.pt", arcname="voices/NATM1.pt")
    q = run_module("quantize", str(src), "--out", str(tmp_path / "q8"), "--q-bits", "8", "--no-progress")
    assert q.code == 0, q.why()
    assert (tmp_path / "q8" / "voices.tgz").is_file()
    assert "voices" not in json.loads((tmp_path / "q8" / "config.json").read_text())
    ran = _run(tmp_path / "q8", tmp_path / "o.wav", "--voice", "NATM1", "--role", "You are a pirate.")
    assert ran.code == 0, ran.why()
    assert (tmp_path / "q8" / "voices" / "NATM1.pt").is_file()  # extracted once, beside the archive
