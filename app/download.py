"""First-run download of Kyutai's weights, off the GUI thread, with progress and cancel.

`DownloadTask` runs `fetch_files` on a thread of its own and reports through Qt signals;
`DownloadDialog` shows it. Files already in the Hugging Face cache are used without any network
access. No network gives an `OfflineError` that says what to do, quickly (the hub module probes the
host before asking), and Cancel returns at once in any case.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QProgressDialog, QWidget

from moshi_mlx import release
from moshi_mlx.errors import MoshiError, OfflineError
from moshi_mlx.loading import hub

from .models import ModelChoice, ResolvedModel, from_hub
from .wording import WEIGHTS_FOLDER, for_window

Progress = Callable[[int, int, str], None]  # bytes done, bytes total (0 = unknown), file name
Resolver = Callable[[ModelChoice, Progress, threading.Event], hub.ModelFiles]


class DownloadCancelled(Exception):
    pass


def cached_files(choice: ModelChoice) -> hub.ModelFiles | None:
    """The choice's files if all are in the local Hugging Face cache (no network at all), else None."""
    try:
        return hub.resolve_model_files(choice.repo, choice.quant, local_only=True)
    except MoshiError:
        return None


def hub_resolver(choice: ModelChoice, progress: Progress, cancelled: threading.Event) -> hub.ModelFiles:
    """`moshi_mlx.loading.hub` downloads the repository's files into the Hugging Face cache (resumable),
    reporting bytes as they arrive; Cancel stops it at the next chunk."""
    from tqdm import tqdm

    class _Bar(tqdm):
        def __init__(self, *args, **kwargs) -> None:
            kwargs.pop("name", None)
            kwargs["disable"] = True  # no console output; we report through `progress`
            super().__init__(*args, **kwargs)
            self._done = int(kwargs.get("initial") or 0)
            self._total = int(kwargs.get("total") or 0)
            self._file = str(kwargs.get("desc") or "")

        def update(self, n=1):
            if cancelled.is_set():
                raise DownloadCancelled()
            self._done += int(n or 0)
            progress(self._done, self._total, self._file)
            return True

    try:
        from moshi_mlx.loading.memory import check_download_fits

        files = hub.resolve_model_files(choice.repo, choice.quant, tqdm_class=_Bar, before_download=check_download_fits)
        if choice.hub_repo in release.PERSONAPLEX_REPOS:
            hub.voices_folder(files, tqdm_class=_Bar)  # its voice presets (voices.tgz), read when a conversation starts
        return files
    except OfflineError as e:
        raise OfflineError(_offline_message(choice.repo, e.reason), e.reason) from None


def _offline_message(what: str, why: str = "") -> str:
    why = f" ({why})" if why else ""
    return (
        f"The weights of {what} are not on this computer yet, and the hub cannot be reached to download them{why}. "
        "Connect to the internet and press Start again, or choose a folder of weights you already have "
        f"under {WEIGHTS_FOLDER}."
    )


def fetch_files(
    choice: ModelChoice, progress: Progress, cancelled: threading.Event, resolver: Resolver = hub_resolver
) -> ResolvedModel:
    """Every file of `choice`: from the cache without any network access, else through `resolver`."""
    files = resolver(choice, progress, cancelled)
    if cancelled.is_set():
        raise DownloadCancelled()
    return from_hub(choice, files)


class DownloadTask(QObject):
    """Runs `fetch_files` on a thread; signals arrive on the GUI thread."""

    progress = Signal(object, object, str)  # done, total (Python ints: sizes exceed 32 bits), file
    finished = Signal(object)  # ResolvedModel
    failed = Signal(str)
    cancelled = Signal()

    def __init__(self, choice: ModelChoice, resolver: Resolver = hub_resolver, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.choice, self._resolver = choice, resolver
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
            files = fetch_files(self.choice, lambda d, t, n: self.progress.emit(d, t, n), self._cancel, self._resolver)
        except DownloadCancelled:
            self.cancelled.emit()
        except MoshiError as e:
            self.failed.emit(for_window(e))
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
        task.progress.connect(self._on_progress)
        self.canceled.connect(task.cancel)

    def _on_progress(self, done: int, total: int, name: str) -> None:
        head = f"Downloading {self.task.choice.repo}\n{name}"
        if total:
            self.setValue(int(1000 * min(done, total) / total))
            self.setLabelText(f"{head}: {done / 1e9:.2f} of {total / 1e9:.2f} GB")
        else:
            self.setLabelText(f"{head}: {done / 1e9:.2f} GB")
