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

from moshi_mlx.errors import CheckpointError

from .settings import PRECISIONS, VOICES

LM_FILES = {"q4": "model.q4.safetensors", "q8": "model.q8.safetensors", "bf16": "model.safetensors"}
MIMI_FILE = "tokenizer-e351c8d8-checkpoint125.safetensors"
TOKENIZER_FILE = "tokenizer_spm_32k_3.model"
TEXT_TEMP_RATIO = 0.7 / 0.8  # Kyutai's defaults: audio 0.8, text 0.7; one slider moves both


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
    config: Path | None  # the LM's config.json in Kyutai's schema, if any (else the 7B preset)
    label: str  # for the status bar: "Moshiko", or the folder name
    quantization: str  # "4-bit", "8-bit", "bf16", ...
    mimi_config: Path | None = None  # Mimi's config, if any (else the released Mimi preset)


def resolve_folder(folder: str | Path) -> ModelFiles:
    """Finds LM weights, Mimi weights and tokenizer in a folder.

    A Kyutai-style `config.json` naming its files (`moshi_name`, `mimi_name`, `tokenizer_name`,
    `mimi_config_name`) is followed; otherwise the folder must hold one LM `.safetensors`, one Mimi
    file (`tokenizer*.safetensors` or `mimi*.safetensors`) and one sentencepiece `.model`.

    Raises:
        CheckpointError: the folder is missing or does not hold exactly one of each.
    """
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise CheckpointError(f"the weights folder {d} does not exist. Pick another folder in Settings.")
    cfg_path = d / "config.json"
    named: dict = {}
    if cfg_path.is_file():
        try:
            raw = json.loads(cfg_path.read_text())
        except (OSError, UnicodeDecodeError, ValueError) as e:
            raise CheckpointError(f"{cfg_path} is not readable JSON ({e}); fix or remove it.") from None
        named = {k: raw[k] for k in ("moshi_name", "mimi_name", "tokenizer_name", "mimi_config_name")
                 if isinstance(raw, dict) and isinstance(raw.get(k), str)}  # fmt: skip
    tensors = sorted(p for p in d.glob("*.safetensors") if p.is_file())
    mimi = [p for p in tensors if p.name.startswith(("tokenizer", "mimi"))]
    lm = [p for p in tensors if p not in mimi]
    spm = sorted(p for p in d.glob("*.model") if p.is_file())
    def pick(key: str, found: list[Path]) -> list[Path]:  # a file named by config.json wins
        return found if key not in named else [d / named[key]] if (d / named[key]).is_file() else []

    lm, mimi, spm = pick("moshi_name", lm), pick("mimi_name", mimi), pick("tokenizer_name", spm)
    problems = []
    for what, found, hint in (("Moshi LM weights", lm, named.get("moshi_name", "model*.safetensors")),
                              ("Mimi codec weights", mimi, named.get("mimi_name", MIMI_FILE)),
                              ("text tokenizer", spm, named.get("tokenizer_name", TOKENIZER_FILE))):  # fmt: skip
        if not found:
            problems.append(f"no {what} (expected a file like {hint})")
        elif len(found) > 1:
            problems.append(f"several {what}: {', '.join(p.name for p in found)}; keep one")
    if problems:
        raise CheckpointError(f"the folder {d} cannot be used: " + "; ".join(problems) + ".")
    mimi_cfg = d / named.get("mimi_config_name", "mimi_config.json")
    return ModelFiles(lm[0], mimi[0], spm[0], cfg_path if cfg_path.is_file() else None, d.name or str(d),
                      describe_precision(lm[0]), mimi_cfg if mimi_cfg.is_file() else None)  # fmt: skip


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
        from moshi_mlx import pipeline  # MLX is imported here, on the loop thread

        mf = pipeline.ModelFiles(moshi=files.lm, mimi=files.mimi, tokenizer=files.tokenizer,
                                 lm_config=files.config, mimi_config=files.mimi_config)  # fmt: skip
        sampling = pipeline.Sampling(temp=temperature, text_temp=temperature * TEXT_TEMP_RATIO)
        return pipeline.MoshiPipeline.from_files(mf, sampling)

    return build
