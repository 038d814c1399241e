"""Which model to run: a released Kyutai repository (voice x precision) or a local folder of weights.

Resolving a choice to files never touches MLX (the GUI thread calls it); building the FrameModel
from those files happens in `frame_model_factory`'s closure, which the ModelLoop calls on its thread.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from moshi_mlx.errors import CheckpointError, ConfigError

from .settings import PRECISIONS, VOICES

LM_FILES = {"q4": "model.q4.safetensors", "q8": "model.q8.safetensors", "bf16": "model.safetensors"}
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_FILE = "tokenizer_spm_32k_3.model"


@dataclass(frozen=True)
class ModelChoice:
    voice: str = "moshiko"
    precision: str = "q4"
    folder: str = ""  # a local folder of weights replaces the download when set

    def __post_init__(self) -> None:
        if self.voice not in VOICES:
            raise ValueError(f"unknown voice {self.voice!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}")

    @property
    def repo(self) -> str:
        """Kyutai's MLX release for this voice and precision, e.g. kyutai/moshiko-mlx-q4."""
        return f"kyutai/{self.voice}-mlx-{self.precision}"

    @property
    def files(self) -> tuple[str, str, str]:
        """The repository files a conversation needs: LM weights, Mimi weights, text tokenizer."""
        return LM_FILES[self.precision], MIMI_FILE, TOKENIZER_FILE

    def label(self) -> str:
        if self.folder:
            return Path(self.folder).name or self.folder
        return self.voice.capitalize()


@dataclass(frozen=True)
class ModelFiles:
    """Everything needed to build the model, already on disk."""

    lm: Path
    mimi: Path
    tokenizer: Path
    config: Path | None  # config.json next to the weights, if any (else the 7B preset)
    label: str  # for the status bar: "Moshiko", or the folder name
    quantization: str  # "4-bit", "8-bit", "bf16", ...


def resolve_folder(folder: str | Path) -> ModelFiles:
    """Finds LM weights, Mimi weights and tokenizer in a folder (Kyutai's release names, or any
    single LM `.safetensors` next to a `tokenizer*.safetensors` Mimi file and a `.model` tokenizer).

    Raises:
        CheckpointError: the folder is missing or does not hold exactly one of each.
    """
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise CheckpointError(f"the weights folder {d} does not exist. Pick another folder in Settings.")
    tensors = sorted(p for p in d.glob("*.safetensors") if p.is_file())
    mimi = [p for p in tensors if p.name.startswith(("tokenizer", "mimi"))]
    lm = [p for p in tensors if p not in mimi]
    spm = sorted(p for p in d.glob("*.model") if p.is_file())
    problems = []
    for what, found, hint in (("Moshi LM weights", lm, "model*.safetensors"),
                              ("Mimi codec weights", mimi, MIMI_FILE),
                              ("text tokenizer", spm, TOKENIZER_FILE)):  # fmt: skip
        if not found:
            problems.append(f"no {what} (expected a file like {hint})")
        elif len(found) > 1:
            problems.append(f"several {what}: {', '.join(p.name for p in found)}; keep one")
    if problems:
        raise CheckpointError(f"the folder {d} cannot be used: " + "; ".join(problems) + ".")
    cfg = d / "config.json"
    return ModelFiles(lm[0], mimi[0], spm[0], cfg if cfg.is_file() else None, d.name or str(d), describe_precision(lm[0]))


def describe_precision(path: Path) -> str:
    """'4-bit', '8-bit', 'bf16'... read from the safetensors header only (never the file name)."""
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            if n > 100 * 1024 * 1024:
                return "unknown"
            header = json.loads(f.read(n))
    except (OSError, ValueError, struct.error):
        return "unknown"
    header.pop("__metadata__", None)
    dtypes = {v.get("dtype") for v in header.values() if isinstance(v, dict)}
    if "U32" not in dtypes:
        floats = [t for t in ("BF16", "F16", "F32") if t in dtypes]
        return floats[0].lower() if floats else "unknown"
    # MLX affine quantization: packed uint32 columns = in_dim * bits / 32; the width is out_norm's size.
    w, norm = header.get("transformer.layers.0.self_attn.in_proj.weight"), header.get("out_norm.weight")
    if w and norm and w.get("dtype") == "U32" and norm.get("shape"):
        bits = 32 * w["shape"][-1] // norm["shape"][-1]
        return f"{bits}-bit"
    return "quantized"


def hub_files(choice: ModelChoice, paths: dict[str, Path]) -> ModelFiles:
    """ModelFiles from the downloaded repository files (`paths`: repo file name -> local path)."""
    lm_name, mimi_name, tok_name = choice.files
    return ModelFiles(paths[lm_name], paths[mimi_name], paths[tok_name], None, choice.label(),
                      PRECISIONS[choice.precision])  # fmt: skip


def frame_model_factory(files: ModelFiles, temperature: float) -> Callable[[], object]:
    """A factory for the ModelLoop: called on the loop thread, it builds the real FrameModel
    (Mimi encode -> LM step -> Mimi decode, with text detokenization)."""

    def build():
        try:
            from moshi_mlx import pipeline  # the real FrameModel; MLX is imported here, on the loop thread
        except ImportError as e:
            raise ConfigError(
                f"this installation has no model pipeline ({e}); update moshi-mlx-local."
            ) from None
        return pipeline.build_frame_model(
            lm_weights=files.lm, mimi_weights=files.mimi, tokenizer=files.tokenizer, config=files.config,
            temperature=temperature, text_temperature=temperature * 0.875,
        )  # fmt: skip

    return build
