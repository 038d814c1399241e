"""PersonaPlex voices: the released presets (`voices/NAME.pt` inside `voices.tgz`) and voices from audio.

A preset is what the reference's `LMGen` saved after feeding a voice recording (`save_voice_prompt_embeddings`):
`{"embeddings": [N, 1, 1, dim] bf16, "cache": [1, 1 + n_q, max_delay + 3] int64}`: the summed input embeddings of
the temporal transformer for the prompt's steps 1..N (replayed instead of the tokens), and its token ring after
them. It is read by `weights.torch_pickle`, which rebuilds plain tensors and refuses anything else.

A voice from audio is the recording itself (mono, 24 kHz, loudness-normalized to -24 LUFS as the reference's
`load_voice_prompt`); its frames are encoded by Mimi and fed as Moshi's own audio when the prompt runs.
"""

from __future__ import annotations

import math
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import FRAME, FRAME_S, MODEL_RATE
from ..audio.files import open_audio
from ..audio.loudness import integrated_loudness, normalize_loudness
from ..errors import CheckpointError, ConfigError, Setting
from ..release import DEFAULT_PERSONA_VOICE, DEFAULT_ROLE, PERSONA_VOICES
from ..weights.torch_pickle import load_torch_file

VOICE_LUFS = -24.0  # the reference's load_voice_prompt normalizes to this
PRESET_NAMES, DEFAULT_VOICE = PERSONA_VOICES, DEFAULT_PERSONA_VOICE
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
MAX_PRESET_BYTES = 64 << 20  # a preset is a few MB at most (embeddings of a few seconds at width 4096, bf16)


@dataclass(frozen=True)
class VoicePrompt:
    """One voice: a preset's replayed embeddings and token ring, or a recording to encode."""

    name: str
    embeddings: np.ndarray | None = None  # [N, dim] float32: the temporal transformer's inputs, prompt steps 1..N
    cache: np.ndarray | None = None  # [1 + n_q, R] int64: the reference's token ring after the prompt
    audio: np.ndarray | None = None  # [T] float32, 24 kHz, normalized to VOICE_LUFS

    @property
    def from_audio(self) -> bool:
        return self.audio is not None


def read_voice_preset(path: str | os.PathLike) -> VoicePrompt:
    """A released voice preset (`NAME.pt`), without torch; CheckpointError if it is not one."""
    path = Path(path)
    obj = load_torch_file(path)
    if not isinstance(obj, dict) or not {"embeddings", "cache"} <= set(obj):
        raise CheckpointError(f"{path}: not a PersonaPlex voice preset (expected the tensors 'embeddings' and 'cache')")
    emb, cache = obj["embeddings"], obj["cache"]
    if not (isinstance(emb, np.ndarray) and emb.ndim == 4 and emb.shape[1:3] == (1, 1) and emb.shape[0] > 0):
        raise CheckpointError(f"{path}: its 'embeddings' are not [steps, 1, 1, dim] (got {getattr(emb, 'shape', emb)})")
    if not (isinstance(cache, np.ndarray) and cache.ndim == 3 and cache.shape[0] == 1 and cache.dtype.kind == "i"):
        raise CheckpointError(f"{path}: its 'cache' is not a [1, streams, slots] integer ring")
    return VoicePrompt(path.stem, emb[:, 0, 0, :].astype(np.float32), cache[0].astype(np.int64))


def voice_from_audio(path: str | os.PathLike, max_frames: int | None = None) -> VoicePrompt:
    """A voice from a short recording (a few seconds of one speaker), normalized as the reference does; one
    longer than `max_frames` (the model's context) refused before it is read (its loudness alone would take
    a minute for an hour of audio, and the model would have forgotten its start by the conversation)."""
    audio = open_audio(Path(path), MODEL_RATE)
    if max_frames is not None and audio.length > max_frames * FRAME:
        raise ConfigError(
            f"voice {path} is {audio.length / MODEL_RATE:.0f} s long, more than the {max_frames} frames "
            f"({max_frames * FRAME_S:.0f} s) the model attends to: record a few seconds of the voice",
            hint=Setting.PERSONA,
        )
    if audio.non_finite:  # counted as the file was opened
        raise ConfigError(
            f"voice {path}: {audio.non_finite} NaN or infinite samples (a broken file); record the voice again"
        )
    pcm = audio.read(None)
    try:
        loudness = integrated_loudness(pcm, MODEL_RATE)
    except ValueError as e:
        raise ConfigError(f"voice {path}: {e}; record a few seconds of the voice") from None
    if not math.isfinite(loudness):  # every 400 ms block below -70 LUFS: there is no voice to take
        raise ConfigError(f"voice {path} is silent: record a few seconds of the voice")
    audio = normalize_loudness(pcm, MODEL_RATE, VOICE_LUFS, loudness)
    return VoicePrompt(Path(path).stem, audio=audio.astype(np.float32))


def extract_voices(archive: str | os.PathLike) -> Path:
    """The `voices/` folder of a `voices.tgz` (extracted once beside it, as the reference); only regular `.pt`
    files under `voices/` are written, never a link or a path leaving the folder."""
    archive = Path(archive)
    folder = archive.parent / "voices"
    if folder.is_dir() and any(folder.glob("*.pt")):
        return folder
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = [
                m
                for m in tar.getmembers()
                if m.isfile()
                and m.size <= MAX_PRESET_BYTES
                and re.fullmatch(r"(\./)?voices/[A-Za-z0-9_.-]+\.pt", m.name)
            ]
            folder.mkdir(exist_ok=True)
            for m in members:
                src = tar.extractfile(m)
                assert src is not None
                tmp = folder / (Path(m.name).name + ".part")
                tmp.write_bytes(src.read())
                tmp.replace(folder / Path(m.name).name)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CheckpointError(f"{archive}: cannot extract the voice presets ({e})") from None
    if not members:
        raise CheckpointError(f"{archive} holds no voices/*.pt presets")
    return folder


def preset_names(folder: Path | None) -> list[str]:
    """Voices a folder of presets offers (sorted), or the release's names when there is no folder yet."""
    if folder is None or not folder.is_dir():
        return list(PRESET_NAMES)
    return sorted(p.stem for p in folder.glob("*.pt"))


def resolve_voice(spec: str, voices: Path | None, max_frames: int | None = None) -> VoicePrompt:
    """`--voice`: a preset name (NATF2, or NATF2.pt as the reference writes it; natf2 when only one preset is
    named so in any case), a .pt file, or an audio file.

    Raises:
        ConfigError: an unknown name or a missing file, naming what exists.
    """
    path = Path(spec).expanduser()
    is_file = path.suffix.lower() in AUDIO_SUFFIXES or (path.suffix.lower() == ".pt" and len(path.parts) > 1)
    if is_file and path.is_dir():
        raise ConfigError(f"voice {spec} is a folder: name a recording of the voice, or a preset", hint=Setting.PERSONA)
    if is_file and not path.is_file():
        raise ConfigError(f"voice {spec}: no such file (a recording of the voice, or a preset)", hint=Setting.PERSONA)
    if path.suffix.lower() in AUDIO_SUFFIXES:
        return voice_from_audio(path, max_frames)
    if path.suffix.lower() == ".pt" and path.is_file():
        return read_voice_preset(path)
    name = path.stem if path.suffix.lower() == ".pt" else spec
    if voices is not None and voices.is_dir():  # the name as written, else the one preset it is in any case
        names = preset_names(voices)
        same = [n for n in names if n == name] or [n for n in names if n.lower() == name.lower()]
        if len(same) == 1:
            return read_voice_preset(voices / f"{same[0]}.pt")
    known = ", ".join(preset_names(voices))
    where = f" in {voices}" if voices is not None else " (this model has no voice presets)"
    raise ConfigError(
        f"unknown voice {spec!r}{where}: use one of {known}, or a .wav file of the voice", hint=Setting.PERSONA
    )


def resolve_persona(
    voice: str | None, role: str | None, cfg, voices: Path | None
) -> tuple[VoicePrompt | None, str] | None:
    """The (voice, role) of a conversation with `cfg`'s model, checked before anything loads; None for Moshi.

    A PersonaPlex model gets the release's default voice when it ships presets and `voice` is None (no voice
    prompt otherwise), and the reference's default role when `role` is None.

    Raises:
        ConfigError: a voice or role given for a model that takes none, an unknown voice, an unreadable file.
    """
    if not cfg.is_personaplex:
        if voice is not None or role is not None:
            kind = "Hibiki" if cfg.model_type == "hibiki" else "Moshi"
            raise ConfigError(
                f"this is a {kind} model, whose voice and role are fixed: a chosen voice or role needs a PersonaPlex "
                "model (model_type 'personaplex', e.g. nvidia/personaplex-7b-v1)",
                hint=Setting.PERSONA,
            )
        return None
    if voice is None and voices is not None and (voices / f"{DEFAULT_VOICE}.pt").is_file():
        voice = DEFAULT_VOICE
    context = cfg.transformer.context or None  # frames the model attends to
    return (None if voice is None else resolve_voice(voice, voices, context)), (DEFAULT_ROLE if role is None else role)
