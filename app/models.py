"""Which model to run: a released Kyutai repository (voice x precision) or a local folder of weights.

Finding the files is `moshi_mlx.loading.hub`'s job (the same code `python -m moshi_mlx.run` uses); this
module adds what the window shows (a label, the precision read from the weights' header) and the
factory that builds the real FrameModel on the ModelLoop's thread. Nothing here touches MLX.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from moshi_mlx import release
from moshi_mlx.errors import CheckpointError, MoshiError
from moshi_mlx.loading import hub
from moshi_mlx.weights import formats
from moshi_mlx.weights.safetensors_io import read_header

from .settings import DEFAULT_PRECISION, DEFAULT_VOICE, PRECISIONS, VOICES
from .wording import other_folder

if TYPE_CHECKING:
    from moshi_mlx.dialog.events import FrameModel

TEXT_TEMP_RATIO = 0.7 / 0.8  # Kyutai's defaults: audio 0.8, text 0.7; one slider moves both


@dataclass(frozen=True)
class ModelChoice:
    voice: str = DEFAULT_VOICE
    precision: str = DEFAULT_PRECISION
    folder: str = ""  # a local folder of weights replaces the download when set
    hub_repo: str = ""  # a repository of its own (the family's, the STT model's) replaces voice x precision

    def __post_init__(self) -> None:
        if self.voice not in VOICES:
            raise ValueError(f"unknown voice {self.voice!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"unknown precision {self.precision!r}")

    @property
    def quant(self) -> int | None:
        """The precision to pick; None for a repository of its own (what it holds: the best it has)."""
        return None if self.hub_repo else release.PRECISIONS[self.precision]

    @property
    def repo(self) -> str:
        """Kyutai's MLX release for this voice and precision, e.g. kyutai/moshiko-mlx-q4, or `hub_repo`."""
        return self.hub_repo or hub.default_repo(self.quant, self.voice)

    @property
    def files(self) -> tuple[str, str, str]:
        """The repository files a conversation needs: LM weights, Mimi weights, text tokenizer."""
        return release.MOSHI_FILES[self.quant], release.MIMI_FILE, release.TOKENIZER_FILE

    def label(self) -> str:
        if self.folder:
            return Path(self.folder).name or self.folder
        if self.hub_repo:
            return self.hub_repo.rsplit("/", 1)[-1]
        return self.voice.capitalize()


@dataclass(frozen=True)
class ResolvedModel:
    """Files on disk plus what the status bar shows about them."""

    files: hub.ModelFiles
    label: str  # "Moshiko", or the folder name
    quantization: str  # "4-bit", "8-bit", "bf16", ...
    kind: str = "moshi"  # the config's model_type; "hibiki": Translate mode (French in, English out)
    user: hub.ModelFiles | None = None  # a speech-to-text model's files: the user's words are shown too


def resolve_folder(folder: str | Path) -> ResolvedModel:
    """The model files in a local folder (a Kyutai MLX repository copy, or one written by quantize).

    Raises:
        CheckpointError / ConfigError: the folder is missing or lacks a file, said in app terms.
    """
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise CheckpointError(other_folder(f"the weights folder {d} does not exist"))
    try:
        files = hub.resolve_model_files(d)  # a folder: never the network
    except MoshiError as e:
        raise type(e)(other_folder(e)) from None
    return _resolved(files, d.name or str(d), describe_precision(files.moshi))


def _resolved(files: hub.ModelFiles, label: str, quantization: str) -> ResolvedModel:
    kind = model_kind(files)
    return ResolvedModel(files, f"{label} · {TRANSLATE}" if kind == "hibiki" else label, quantization, kind)


TRANSLATE = "translates French to English"  # what the status bar adds for Hibiki


def model_kind(files: hub.ModelFiles) -> str:
    """The model_type of the files' config ("moshi" without one); the hub already refused other kinds."""
    if files.config is None:
        return "moshi"
    return str(hub.read_repo_config(files.config)[0].get("model_type", "moshi"))


def from_hub(choice: ModelChoice, files: hub.ModelFiles) -> ResolvedModel:
    """A downloaded model (its kind read from its config: Hibiki translates)."""
    quantization = describe_precision(files.moshi) if choice.hub_repo else PRECISIONS[choice.precision]
    return _resolved(files, choice.label(), quantization)


def describe_precision(path: Path) -> str:
    """'4-bit', '8-bit', 'bf16'... read from the safetensors header only (never the file name)."""
    try:
        return formats.describe_precision(read_header(path))
    except CheckpointError:
        return "unknown"


def is_personaplex(files: hub.ModelFiles) -> bool:
    """Whether the model takes a voice and a role (its config says model_type 'personaplex'); False if unreadable."""
    from moshi_mlx.config import LmConfig

    if files.config is None:
        return False
    try:
        return LmConfig.from_json(files.config).is_personaplex
    except MoshiError:
        return False


def folder_is_personaplex(folder: str) -> bool:
    """The same for a local folder (its config.json only; False when there is none)."""
    config = Path(folder).expanduser() / release.CONFIG_FILE
    return (
        bool(folder)
        and config.is_file()
        and is_personaplex(hub.ModelFiles(config, config, config, config, None, folder))
    )


def persona_presets(folder: str) -> list[str]:
    """The voice presets a PersonaPlex weights folder offers (none for another model, or when it has none)."""
    from moshi_mlx.persona.voices import preset_names

    if not folder_is_personaplex(folder):
        return []
    try:
        found = hub.local_voices(Path(folder).expanduser())
    except MoshiError:  # an unreadable voices.tgz: said when the conversation starts
        return []
    return preset_names(found) if found is not None else []


def resolve_persona(model: ResolvedModel, voice: str, role: str):
    """A PersonaPlex model's (voice, role) for the factory, read now (a bad voice is said before loading)."""
    from moshi_mlx.config import LmConfig
    from moshi_mlx.persona.voices import resolve_persona as resolve

    assert model.files.config is not None
    cfg = LmConfig.from_json(model.files.config)
    if not voice:  # "No voice prompt" chosen
        return resolve(None, role or None, cfg, None)
    # a release's presets were fetched with its weights (download.hub_resolver): no network on the GUI thread here
    return resolve(voice, role or None, cfg, hub.voices_folder(model.files, local_only=True))


def frame_model_factory(model: ResolvedModel, temperature: float, persona=None) -> Callable[[], FrameModel]:
    """A factory for the ModelLoop: called on the loop thread, it builds the real FrameModel
    (Mimi encode -> LM step -> Mimi decode, with text detokenization); `persona`: a PersonaPlex model's
    (voice, role) from `resolve_persona`; `model.user`: the STT model that transcribes the user too."""

    def build() -> FrameModel:
        from moshi_mlx import pipeline  # MLX work starts here, on the loop thread

        sampling = pipeline.Sampling(temp=temperature, text_temp=temperature * TEXT_TEMP_RATIO)
        if model.kind == "hibiki":  # Translate mode: the microphone is the French source, never ending
            from moshi_mlx.translation import TranslationPipeline

            return TranslationPipeline.from_files(model.files, sampling)
        # a live dialog: the user's transcript is kept where it keeps up on this machine
        return pipeline.MoshiPipeline.from_files(
            model.files, sampling, persona=persona, user_files=model.user, live=True
        )

    return build
