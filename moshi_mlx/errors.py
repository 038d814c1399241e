"""Errors a user can act on: each message says what was wrong and what to do."""

from __future__ import annotations


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


class MemoryBudgetError(MoshiError):
    """A model would not fit in this machine's memory at the requested precision."""


class OfflineError(MoshiError):
    """Files must be downloaded but the hub cannot be reached (or HF_HUB_OFFLINE=1).

    `reason` says why the hub was not used, without the advice, for front ends that word their own.
    """

    def __init__(self, message: str, reason: str = "", *, local_files_help: bool = False) -> None:
        super().__init__(message, local_files_help=local_files_help)
        self.reason = reason
