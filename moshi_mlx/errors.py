"""Errors a user can act on: each message says what was wrong and what to do."""

from __future__ import annotations

from pathlib import Path


class MoshiError(Exception):
    """Base class: `run`, `quantize` and the app turn these into one clear line or dialog.

    `local_files_help`: naming the model files one by one would get around the problem. The message
    does not say how, as that depends on the front end (`run` names its flags, the app its folder setting).
    """

    def __init__(self, message: str, *, local_files_help: bool = False) -> None:
        super().__init__(message)
        self.local_files_help = local_files_help


class CheckpointError(MoshiError):
    """A weight file is unreadable, or does not fit the model it is loaded into."""


class ConfigError(MoshiError):
    """A JSON config is malformed or has values this port cannot run."""


class AudioFormatError(MoshiError):
    """An audio file cannot be read, or an audio device cannot be opened as asked."""


class NoAudioDeviceError(AudioFormatError):
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

    def __init__(self, message: str, reason: str = "", *, local_files_help: bool = False) -> None:
        super().__init__(message, local_files_help=local_files_help)
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
        raise error(f"the {what} {path} is a folder, not a file: name the file itself"
                    + (f", e.g. {example}" if example else ""))
    if path.exists():
        if pipe_ok:
            return path
        raise error(f"the {what} {path} is not a regular file (a pipe or device): name a file")
    raise error(f"the {what} file {path} does not exist: check the path")
