"""Voice presets read without torch (plain tensors only), voices from audio, voices.tgz."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import mlx.core as mx
import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.audio.loudness import integrated_loudness, normalize_loudness
from moshi_mlx.errors import CheckpointError, ConfigError
from moshi_mlx.persona.voices import extract_voices, read_voice_preset, resolve_voice, voice_from_audio
from moshi_mlx.weights.safetensors_io import load_tensors
from moshi_mlx.weights.torch_pickle import load_torch_file

ASSETS = Path(__file__).resolve().parents[1] / "assets" / "personaplex"


def test_a_released_preset_reads_without_torch() -> None:
    """voice.pt was written by the reference (LMGen with save_voice_prompt_embeddings) with torch.save."""
    v = read_voice_preset(ASSETS / "voice.pt")
    assert v.name == "voice" and v.embeddings is not None and v.cache is not None
    assert v.embeddings.shape == (14, 64) and v.embeddings.dtype == np.float32  # 15 voice frames: 14 model runs
    assert v.cache.shape == (17, 4) and v.cache.dtype == np.int64
    assert np.isfinite(v.embeddings).all() and v.embeddings.std() > 0.1
    assert v.cache.min() >= 0 and v.cache.max() <= 48


def test_a_bfloat16_preset_reads_exactly() -> None:
    """The released presets hold bf16 embeddings (the 7B runs in bf16): widened to float32 exactly."""
    f32, bf16 = read_voice_preset(ASSETS / "voice.pt"), read_voice_preset(ASSETS / "voice_bf16.pt")
    assert f32.embeddings is not None and bf16.embeddings is not None and bf16.cache is not None
    rounded = np.array(mx.array(f32.embeddings).astype(mx.bfloat16).astype(mx.float32))
    assert np.array_equal(bf16.embeddings, rounded) and not np.array_equal(bf16.embeddings, f32.embeddings)
    assert f32.cache is not None and np.array_equal(bf16.cache, f32.cache)


def _torch_zip(path: Path, payload: bytes, name: str = "archive") -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name}/data.pkl", payload)
        z.writestr(f"{name}/byteorder", "little")
    return path


class _RunsACommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_asks_for_a_callable_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = _torch_zip(tmp_path / "NATF9.pt", pickle.dumps({"embeddings": _RunsACommand(marker)}, protocol=2))
    with pytest.raises(CheckpointError) as e:
        read_voice_preset(evil)
    message = str(e.value)
    assert "\n" not in message and "refused" in message and ("posix.system" in message or "os.system" in message)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload, needle",
    [
        (pickle.dumps(np.zeros(3), protocol=2), "numpy"),  # a numpy array is an arbitrary object too
        (b"ctorch._utils\n_rebuild_tensor_v2\n(S'x'\nI0\n(I1\nt(I1\ntI00\nNtR.", "storage is not one of the file's"),
        (b"not a pickle", "not a readable"),
    ],
    ids=["numpy-object", "tensor-without-storage", "garbage"],
)
def test_anything_but_plain_tensors_is_refused(tmp_path: Path, payload: bytes, needle: str) -> None:
    with pytest.raises(CheckpointError, match=needle):
        load_torch_file(_torch_zip(tmp_path / "x.pt", payload))


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path: Path) -> None:
    with zipfile.ZipFile(ASSETS / "voice.pt") as z:
        names = {n: z.read(n) for n in z.namelist()}
    prefix = next(n for n in names if n.endswith("/data.pkl")).split("/")[0]
    storage = min((n for n in names if n.startswith(f"{prefix}/data/")), key=lambda n: len(names[n]))  # the cache
    names[storage] = names[storage][:-8]  # one value short
    bad = tmp_path / "short.pt"
    with zipfile.ZipFile(bad, "w") as z:
        for n, data in names.items():
            z.writestr(n, data)
    with pytest.raises(CheckpointError, match="refused"):
        read_voice_preset(bad)
    (tmp_path / "plain.pt").write_bytes(b"PK not really a zip")
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        read_voice_preset(tmp_path / "plain.pt")


def test_the_loudness_is_the_references() -> None:
    """pyloudnorm's integrated loudness of voice.wav, as the reference measured it (float32 golden)."""
    golden = float(np.array(load_tensors(ASSETS / "goldens.safetensors")["voice_loudness"])[0])
    pcm = sf.read(str(ASSETS / "voice.wav"), dtype="float32")[0]
    assert abs(integrated_loudness(pcm, 24_000) - golden) < 1e-4
    normalized = normalize_loudness(pcm, 24_000, -24.0)
    assert abs(integrated_loudness(normalized.astype(np.float32), 24_000) + 24.0) < 1e-3
    assert np.array_equal(normalize_loudness(np.zeros(24_000, np.float32), 24_000, -24.0), np.zeros(24_000))


def test_a_voice_from_audio_is_normalized(tmp_path: Path) -> None:
    v = voice_from_audio(ASSETS / "voice.wav")
    assert v.audio is not None and v.embeddings is None and abs(integrated_loudness(v.audio, 24_000) + 24.0) < 1e-3
    sf.write(str(tmp_path / "short.wav"), np.zeros(2_000, np.float32), 24_000)
    with pytest.raises(ConfigError, match="shorter than one 400 ms"):
        voice_from_audio(tmp_path / "short.wav")


def _tgz(path: Path, files: dict[str, bytes], link: str | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


def test_voices_tgz_extracts_only_presets(tmp_path: Path) -> None:
    preset = (ASSETS / "voice.pt").read_bytes()
    archive = _tgz(
        tmp_path / "voices.tgz",
        {"voices/NATF2.pt": preset, "voices/../../escape.pt": b"x", "other/readme.txt": b"x"},
        link="voices/NATM0.pt",
    )
    folder = extract_voices(archive)
    assert sorted(p.name for p in folder.iterdir()) == ["NATF2.pt"]
    assert not (tmp_path.parent / "escape.pt").exists()
    assert resolve_voice("NATF2", folder).embeddings is not None
    assert resolve_voice("NATF2.pt", folder).name == "NATF2"  # as the reference's --voice-prompt names it
    with pytest.raises(ConfigError, match="unknown voice 'NATX1'.*use one of NATF2"):
        resolve_voice("NATX1", folder)
    with pytest.raises(ConfigError, match="this model has no voice presets.*NATF0"):
        resolve_voice("NATF0", None)
