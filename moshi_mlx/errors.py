"""Errors a user can act on: each message says what was wrong and what to do, in no front end's words.

Where changing a setting gets around the problem, the error names that setting with a `Setting` (its
`hint`); each front end words it: `run` and `quantize` name their flags (moshi_mlx.cli.wording), the app
its window's settings (app.wording). A message never names a command-line flag or a window's label.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path


class Setting(Enum):
    """The setting a person changes to get around an error."""

    MICROPHONE = "microphone"
    SPEAKER = "speaker"
    MODEL_FILES = "model files"  # name the model files one by one (a local folder), not a repository
    PRECISION = "precision"  # the 4-bit weights
    CONFIG = "config"  # the LM config that belongs to the weights
    PERSONA = "persona"  # a PersonaPlex model's voice and role


class MoshiError(Exception):
    """Base class: `run`, `quantize` and the app turn these into one clear line or dialog.

    `hint`: the setting that would get around the problem, worded by each front end; None: none would.
    """

    def __init__(self, message: str, *, hint: Setting | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class CheckpointError(MoshiError):
    """A weight file is unreadable, or does not fit the model it is loaded into."""


class ConfigError(MoshiError):
    """A JSON config is malformed or has values this port cannot run."""


class AudioFormatError(MoshiError):
    """An audio file cannot be read or written in the format asked."""


class AudioDeviceError(MoshiError):
    """An audio device cannot be found or opened as asked, or stopped delivering audio."""


def device_setting(kind: str) -> Setting:
    """The setting that picks the `kind` ("input" or "output") device."""
    return Setting.MICROPHONE if kind == "input" else Setting.SPEAKER


class NoAudioDeviceError(AudioDeviceError):
    """No microphone (`kind` "input") or speaker ("output") to use, or no sound card at all ("any").

    A front end suggests going on without one: `run` names its file mode, the app its own way.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class MemoryBudgetError(MoshiError):
    """A model would not fit in this machine's memory at the requested precision."""


class OutputError(MoshiError):
    """An output cannot be written (read-only or full file system, no permission, a folder in the way), or
    would overwrite something the user did not name."""


class RecordingExistsError(OutputError):
    """The folder already holds a recording, which is never replaced; `free` is a folder that does not."""

    def __init__(self, message: str, free: Path) -> None:
        super().__init__(message)
        self.free = free


class OfflineError(MoshiError):
    """Files must be downloaded but the hub cannot be reached (or HF_HUB_OFFLINE=1).

    `reason` says why the hub was not used, without the advice, for front ends that word their own.
    """

    def __init__(self, message: str, reason: str = "", *, hint: Setting | None = None) -> None:
        super().__init__(message, hint=hint)
        self.reason = reason


def require_file(path: Path, what: str, error: type[MoshiError], expected: str = "", pipe_ok: bool = False) -> Path:
    """`path` if it is a file; else `error` saying that it is missing, that it is a folder and what to name, or
    that it is a pipe or device (accepted with `pipe_ok`: a stream read once from the start).

    `expected`: the usual name of such a file (shown as found inside a folder given by mistake), or a description.
    """
    if path.is_file():
        return path
    if path.is_dir():
        example = path / expected if expected and (path / expected).is_file() else expected
        raise error(
            f"the {what} {path} is a folder, not a file: name the file itself"
            + (f", e.g. {example}" if example else "")
        )
    if path.exists():
        if pipe_ok:
            return path
        raise error(f"the {what} {path} is not a regular file (a pipe or device): name a file")
    raise error(f"the {what} file {path} does not exist: check the path")
