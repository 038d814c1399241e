"""First-run download of Kyutai's weights, off the GUI thread, with progress and cancel.

`DownloadTask` runs `fetch_files` on a thread of its own and reports through Qt signals;
`DownloadDialog` shows it. Files already in the Hugging Face cache are used without any network
access. No network gives an `OfflineError` that says what to do, quickly: the hub client gives up
after its own connection timeout and Cancel returns at once in any case.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from moshi_mlx.errors import CheckpointError, MoshiError, OfflineError

from .models import ModelChoice, ModelFiles, hub_files

Progress = Callable[[int, int, str], None]  # bytes done, bytes total (0 = unknown), file name
Downloader = Callable[[str, str, Progress, threading.Event], Path]  # repo, file -> local path


class DownloadCancelled(Exception):
    pass


def cached_files(choice: ModelChoice) -> dict[str, Path] | None:
    """The choice's files if all are in the local Hugging Face cache (no network), else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    out = {}
    for name in choice.files:
        p = try_to_load_from_cache(choice.repo, name)
        if not isinstance(p, str):
            return None
        out[name] = Path(p)
    return out


def hf_download(repo: str, filename: str, progress: Progress, cancelled: threading.Event) -> Path:
    """Downloads one file into the Hugging Face cache (resumable), reporting bytes as they arrive."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors
    from tqdm import tqdm

    class _Bar(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True  # no console output; we report through `progress`
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._total = int(kwargs.get("total") or 0)

        def update(self, n=1):
            if cancelled.is_set():
                raise DownloadCancelled()
            self._done += int(n or 0)
            progress(self._done, self._total, filename)
            return True

    try:
        return Path(huggingface_hub.hf_hub_download(repo, filename, tqdm_class=_Bar))
    except DownloadCancelled:
        raise
    except (hf_errors.LocalEntryNotFoundError, hf_errors.OfflineModeIsEnabled, ConnectionError, TimeoutError) as e:
        raise OfflineError(_offline_message(repo, e)) from None  # (before EntryNotFoundError, its base class)
    except (hf_errors.RepositoryNotFoundError, hf_errors.GatedRepoError, hf_errors.EntryNotFoundError) as e:
        raise CheckpointError(f"{repo} has no file {filename} that can be downloaded ({type(e).__name__}).") from None
    except OSError as e:  # disk full, unwritable cache, and requests/httpx network errors (OSError subclasses)
        if _looks_like_network(e):
            raise OfflineError(_offline_message(repo, e)) from None
        raise CheckpointError(f"could not save {filename} from {repo}: {e}. Check free disk space.") from None
    except Exception as e:  # noqa: BLE001 (httpx/requests network errors are not all OSErrors)
        if _looks_like_network(e):
            raise OfflineError(_offline_message(repo, e)) from None
        raise CheckpointError(f"downloading {filename} from {repo} failed: {e}") from None


def check_reachable(timeout_s: float = 5.0) -> None:
    """Fails fast with OfflineError when the hub's host cannot be resolved or connected to (the hub
    client itself retries for ~25 s before it gives up on a machine without network)."""
    import os
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        raise OfflineError(
            "HF_HUB_OFFLINE is set, so Moshi's weights cannot be downloaded. Unset it and press Start "
            "again, or choose a folder of weights you already have under Settings -> Weights folder."
        )
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    host, port = url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            pass
    except OSError as e:
        raise OfflineError(
            f"Moshi's weights are not on this computer yet, and {host} cannot be reached to download "
            f"them ({e.strerror or e}). Connect to the internet and press Start again, or choose a "
            "folder of weights you already have under Settings -> Weights folder."
        ) from None


def _looks_like_network(e: BaseException) -> bool:
    names = " ".join(type(x).__name__ for x in type(e).__mro__).lower()
    return any(w in names for w in ("connect", "timeout", "network", "proxy", "ssl"))


def _offline_message(repo: str, e: BaseException) -> str:
    return (
        f"Moshi's weights ({repo}) are not on this computer yet, and huggingface.co cannot be reached "
        f"to download them ({type(e).__name__}). Connect to the internet and press Start again, or "
        "choose a folder of weights you already have under Settings -> Weights folder."
    )


def fetch_files(choice: ModelChoice, progress: Progress, cancelled: threading.Event,
                downloader: Downloader = hf_download) -> ModelFiles:  # fmt: skip
    """Every file of `choice`, from the cache or downloaded one after the other."""
    paths: dict[str, Path] = {}
    cache = cached_files(choice) if downloader is hf_download else None
    if downloader is hf_download and not cache:
        check_reachable()
    for name in choice.files:
        if cancelled.is_set():
            raise DownloadCancelled()
        paths[name] = cache[name] if cache else downloader(choice.repo, name, progress, cancelled)
    return hub_files(choice, paths)


class DownloadTask(QObject):
    """Runs `fetch_files` on a thread; signals arrive on the GUI thread."""

    progress = Signal(object, object, str)  # done, total (Python ints: sizes exceed 32 bits), file
    finished = Signal(object)  # ModelFiles
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, choice: ModelChoice, downloader: Downloader = hf_download, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.choice, self._downloader = choice, downloader
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="moshi-download", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def _run(self) -> None:
        try:
            files = fetch_files(self.choice, lambda d, t, n: self.progress.emit(d, t, n), self._cancel, self._downloader)
        except DownloadCancelled:
            self.cancelled.emit()
        except MoshiError as e:
            self.failed.emit(str(e))
        except Exception as e:  # noqa: BLE001 (a bug must still reach the user as a dialog, not kill the thread silently)
            self.failed.emit(f"the download failed: {e!r}")
        else:
            if self._cancel.is_set():
                self.cancelled.emit()
            else:
                self.finished.emit(files)


class DownloadDialog(QProgressDialog):
    """Progress of a DownloadTask; Cancel stops it (the partial file is kept and resumed next time)."""

    def __init__(self, task: DownloadTask, parent: QWidget | None = None) -> None:
        super().__init__("Checking for Moshi's weights…", "Cancel", 0, 1000, parent)
        self.setWindowTitle("Downloading Moshi")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.setMinimumDuration(0)
        self.setMinimumWidth(460)
        self.setAutoClose(False)
        self.setAutoReset(False)
        self.task = task
        self._files = list(task.choice.files)
        task.progress.connect(self._on_progress)
        self.canceled.connect(task.cancel)

    def _on_progress(self, done: int, total: int, name: str) -> None:
        k = self._files.index(name) + 1 if name in self._files else 1
        head = f"Downloading {task_label(self.task.choice)} ({k} of {len(self._files)}): {name}"
        if total:
            self.setValue(int(1000 * min(done, total) / total))
            self.setLabelText(f"{head}\n{done / 1e9:.2f} of {total / 1e9:.2f} GB")
        else:
            self.setLabelText(f"{head}\n{done / 1e9:.2f} GB")


def task_label(choice: ModelChoice) -> str:
    return choice.repo
