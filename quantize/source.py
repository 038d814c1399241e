"""Where the PyTorch checkpoint comes from: a file, a folder, or a Hugging Face repo id.

A folder (or the folder of a file, or a downloaded repo) may also hold Kyutai's `config.json`, the text
tokenizer and the Mimi checkpoint; those are found by the names the config gives ("moshi_name",
"tokenizer_name", "mimi_name") or Kyutai's release names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from moshi_mlx.config import DEFAULT_PRESET, read_json_object
from moshi_mlx.errors import CheckpointError, ConfigError, OfflineError
from moshi_mlx.loading.hub import folder_file, gated_message, hub_unavailable, is_repo_id, repo_file
from moshi_mlx.release import CONFIG_FILE, MIMI_FILE, MOSHI_FILES, TOKENIZER_FILE, VOICES_ARCHIVE

_WEIGHT_NAMES = (MOSHI_FILES[None], "consolidated.safetensors")  # Kyutai's release; moshi-finetune
VOICES_KEY = "voices"  # the extra that is PersonaPlex's voices.tgz: copied, not named in the config


@dataclass
class Source:
    """A resolved input."""

    weights: Path
    config: dict | None  # Kyutai-schema LM config; None: the released 7B config
    config_origin: str  # where it came from, for messages
    extras: dict[str, Path] = field(default_factory=dict)  # tokenizer / Mimi: output name -> path
    description: str = ""
    config_file: Path | None = None  # the file the config was read from (None: the preset)


def _extra_names(config: dict | None) -> dict[str, str]:
    """Config key -> file name of the extras to copy along (the Mimi config only when the config names one)."""
    config = config or {}
    if config.get("lora_name"):
        raise ConfigError(
            f"the config names LoRA adapters (lora_name={config['lora_name']!r}): this tool converts full "
            "weights. Merge the adapters into the model first (moshi-finetune: save_adapters: false)."
        )
    names = {
        "tokenizer_name": str(config.get("tokenizer_name", TOKENIZER_FILE)),
        "mimi_name": str(config.get("mimi_name", MIMI_FILE)),
    }
    if config.get("mimi_config_name"):
        names["mimi_config_name"] = str(config["mimi_config_name"])
    if config.get("model_type") == "personaplex":  # its voice presets go along (not a config key)
        names[VOICES_KEY] = VOICES_ARCHIVE
    return names


def _weights_in_folder(folder: Path, config: dict | None) -> Path:
    given = str(config["moshi_name"]) if config and "moshi_name" in config else None
    names = ([given] if given else []) + list(_WEIGHT_NAMES)
    for name in names:
        if folder_file(folder, name, "moshi_name" if name == given else None).is_file():
            return folder / name
    skip = set(_extra_names(config).values())
    found = sorted(p for p in folder.glob("*.safetensors") if p.name not in skip)
    if len(found) == 1:
        return folder_file(folder, found[0].name)
    listing = ", ".join(p.name for p in found) or "no .safetensors file"
    raise CheckpointError(
        f"{folder}: cannot tell which file is the Moshi checkpoint (looked for {', '.join(names)}; found "
        f"{listing}). Pass the file itself as SOURCE."
    )


def resolve_local(path: Path, config_path: str | None) -> Source:
    folder = path if path.is_dir() else path.parent
    config, origin = None, f"released 7B config ({DEFAULT_PRESET})"
    config_file = Path(config_path) if config_path is not None else folder / CONFIG_FILE
    if config_path is not None or config_file.is_file():
        config, origin = read_json_object(config_file), str(config_file)
    else:
        config_file = None
    weights = _weights_in_folder(path, config) if path.is_dir() else path
    extras = {
        key: path
        for key, name in _extra_names(config).items()
        if (path := folder_file(folder, name, key if config and key in config else None)).is_file()
    }
    return Source(weights, config, origin, extras, str(weights), config_file)


def looks_like_repo_id(source: str) -> bool:
    return is_repo_id(source) and not Path(source).exists()


def resolve_hub(repo: str, config_path: str | None, download: Callable[..., str] | None = None) -> Source:
    """Download what the conversion needs from a Hugging Face repo (the cache is reused; when the hub cannot
    be reached, as `run` finds with one quick probe, only the cache is used)."""
    if download is None:
        from huggingface_hub import hf_hub_download as download
    reason = hub_unavailable()

    def fetch(name: str, required: bool, key: str | None = None) -> Path | None:
        from huggingface_hub.errors import (
            EntryNotFoundError,
            GatedRepoError,
            LocalEntryNotFoundError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
        )

        try:
            return Path(download(repo, repo_file(repo, name, key), local_files_only=reason is not None))
        except (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError) as e:
            why = reason or f"the hub cannot be reached ({type(e).__name__})"
            raise OfflineError(
                f"cannot download {name} from the Hugging Face repo {repo}: {why}; it is not in the Hugging Face "
                "cache, and nothing can be downloaded offline. Connect to the internet, or download the repo "
                "yourself and pass its local folder as SOURCE.",
                why,
            ) from None
        except GatedRepoError:
            raise CheckpointError(gated_message(repo)) from None
        except RepositoryNotFoundError:
            raise CheckpointError(
                f"{repo}: no such Hugging Face repo (or it is private/gated: log in with `hf auth login`). "
                "Check the repo id, or pass a local file or folder."
            ) from None
        except EntryNotFoundError:
            if required:
                raise CheckpointError(f"{repo}: the repo has no {name}. Pass the checkpoint file explicitly.") from None
            return None

    config, origin, config_file = None, f"released 7B config ({DEFAULT_PRESET})", None
    if config_path is not None:
        config_file = Path(config_path)
        config, origin = read_json_object(config_file), str(config_path)
    else:
        config_file = fetch(CONFIG_FILE, required=False)
        if config_file is not None:
            config, origin = read_json_object(config_file), f"{repo}/config.json"
    name = str(config["moshi_name"]) if config and "moshi_name" in config else MOSHI_FILES[None]
    weights = fetch(name, required=True, key="moshi_name")
    assert weights is not None
    extras = {}
    for key, extra in _extra_names(config).items():
        got = fetch(extra, required=False, key=key)
        if got is not None:
            extras[key] = got
    return Source(weights, config, origin, extras, f"{repo} ({name})", config_file)


def resolve(source: str, config_path: str | None = None, download: Callable[..., str] | None = None) -> Source:
    """A local file or folder if it exists, else a Hugging Face repo id."""
    path = Path(source).expanduser()
    if path.exists():
        return resolve_local(path, config_path)
    if looks_like_repo_id(source):
        return resolve_hub(source, config_path, download)
    raise CheckpointError(f"{source}: no such file or folder, and not a Hugging Face repo id (owner/name).")
