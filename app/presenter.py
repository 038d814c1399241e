"""Behaviour of the main window: settings <-> widgets, the Start button, downloads, saving.

The presenter runs on the GUI thread and only calls the Controller (which owns the model loop),
the download task (its own thread) and Qt.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QObject, QTimer
from PySide6.QtGui import QGuiApplication

from moshi_mlx.dialog.events import too_slow
from moshi_mlx.errors import MoshiError
from moshi_mlx.loading import hub
from moshi_mlx.release import (
    DEFAULT_PERSONA_VOICE,
    DEFAULT_ROLE,
    HIBIKI_REPO,
    PERSONA_VOICES,
    PERSONAPLEX_REPOS,
    STT_REPO,
    precision_label,
)

from . import controller as c
from .dialogs import Dialogs
from .download import DownloadDialog, DownloadTask, Resolver, cached_files, hub_resolver
from .models import (
    ModelChoice,
    ResolvedModel,
    folder_is_personaplex,
    frame_model_factory,
    from_hub,
    is_personaplex,
    persona_presets,
    resolve_folder,
    resolve_persona,
)
from .saving import Conversation, save_copy
from .settings import VOICES, AppSettings
from .window import ECHO_CHECK, USER_CHECK, USER_NOT_HERE, USER_TIP, MainWindow
from .wording import for_window

_BUTTON = {
    c.IDLE: ("Start", True, False),
    c.READY: ("Start", True, False),
    c.LOADING: ("Loading…", False, False),
    c.STARTING: ("Starting…", True, True),
    c.RUNNING: ("Stop", True, True),
    c.STOPPING: ("Stopping…", False, True),
}
_STATE_TEXT = {
    c.IDLE: "Ready",
    c.READY: "Model loaded",
    c.LOADING: "Loading the model…",
    c.STARTING: "Opening the microphone…",
    c.RUNNING: "Listening — talk to Moshi",
    c.STOPPING: "Stopping…",
}
ENDED, ENDED_BY_ERROR = "Conversation ended", "Conversation stopped by an error"
NO_VOICE = "No voice prompt"
USER_PROBLEM = "Cannot show what you say"
USER_DOWNLOAD = "Could not download the speech-to-text model"


class Presenter(QObject):
    """Wires a MainWindow to a Controller and the saved settings.

    Args:
        model_factory: (ResolvedModel, temperature) -> factory the ModelLoop calls on its thread.
        resolver: finds or downloads a released model's files (tests pass a fake).
        device_poll_ms: how often the device lists are refreshed while no conversation runs (0: never).
        user_model: the speech-to-text model of "Show what I say" (a repository or a local folder).
    """

    def __init__(
        self,
        window: MainWindow,
        controller: c.Controller,
        settings: AppSettings,
        dialogs: Dialogs | None = None,
        model_factory: Callable = frame_model_factory,
        resolver: Resolver = hub_resolver,
        device_poll_ms: int = 3000,
        user_model: str = STT_REPO,
    ) -> None:
        super().__init__(window)
        self.w, self.ctl, self.settings = window, controller, settings
        self.dialogs = dialogs or Dialogs(window)
        self.model_factory, self.resolver, self.user_model = model_factory, resolver, user_model
        self._moshi_waiting: ResolvedModel | None = None  # Moshi's files, while the STT model downloads
        self.download: DownloadTask | None = None
        self.download_dialog: DownloadDialog | None = None
        self._loaded_key: tuple | None = None  # (choice, temperature) of the model in the controller
        self._said_too_slow = False  # this conversation's note on a machine far slower than real time
        self._closing = False
        self.conversations: list[Conversation] = []  # this session's, with their recordings
        self._load_settings()
        self._connect()
        if problem := settings.problem():
            self.dialogs.error("Your choices will not be remembered", problem)
        self.ctl.refresh_devices(rescan=False)
        self._device_timer = QTimer(self)
        self._device_timer.timeout.connect(self._poll_devices)
        self._last_rescan = 0.0
        if device_poll_ms:
            self._device_timer.start(device_poll_ms)
        self._on_state(self.ctl.state)
        window.installEventFilter(self)
        window.input_combo.installEventFilter(self)
        window.output_combo.installEventFilter(self)

    # -- settings <-> widgets --------------------------------------------------------------------
    def _load_settings(self) -> None:
        s, w = self.settings, self.w
        w.voice_combo.setCurrentIndex(max(0, w.voice_combo.findData(s.hub_repo or s.voice)))
        w.precision_combo.setCurrentIndex(max(0, w.precision_combo.findData(s.precision)))
        w.folder_edit.setText(s.local_folder)
        w.role_edit.setPlaceholderText(DEFAULT_ROLE)
        w.role_edit.setText(s.role)
        w.temperature_spin.setValue(s.temperature)
        w.echo_check.setChecked(s.echo_cancellation and self.ctl.echo_available)
        w.echo_check.setEnabled(self.ctl.echo_available)
        w.suppressor_check.setChecked(s.echo_suppressor and self.ctl.echo_available)
        self._sync_suppressor()
        w.user_check.setChecked(s.transcribe_user)
        if not self.ctl.echo_available:
            w.echo_check.setToolTip(f"{ECHO_CHECK} is not available in this installation")
        self._sync_model_widgets()
        if s.geometry is not None:
            w.restoreGeometry(s.geometry)

    def _sync_suppressor(self) -> None:
        """The suppressor works on echo cancellation's output: it is offered only while that is on."""
        self.w.suppressor_check.setEnabled(self.ctl.echo_available and self.w.echo_check.isChecked())

    def _sync_model_widgets(self) -> None:
        from_folder = bool(self.settings.local_folder)
        self.w.voice_combo.setEnabled(not from_folder)
        self.w.precision_combo.setEnabled(not from_folder and not self.settings.hub_repo)  # one precision: bf16
        self.w.folder_clear.setEnabled(from_folder)
        plex = self._chosen_kind() == "personaplex"
        self.w.persona_box.setEnabled(plex)
        if plex:
            self._fill_persona_voices()
        moshi = self._chosen_kind() == "moshi"
        self.w.user_check.setEnabled(moshi)
        self.w.user_check.setToolTip(USER_TIP if moshi else USER_NOT_HERE)
        self._update_model_status()

    def _chosen_kind(self) -> str:
        """The chosen model's model_type as far as it is known before its files are fetched ("moshi" if unknown)."""
        folder, repo = self.settings.local_folder, self.settings.hub_repo
        if folder:
            try:
                return "personaplex" if folder_is_personaplex(folder) else resolve_folder(folder).kind
            except MoshiError:  # said at Start
                return "moshi"
        return "hibiki" if repo == HIBIKI_REPO else "personaplex" if repo in PERSONAPLEX_REPOS else "moshi"

    def _persona_presets(self) -> list[str]:
        """The chosen PersonaPlex model's voice presets: a folder's own, a release's as NVIDIA publishes them."""
        folder = self.settings.local_folder
        return persona_presets(folder) if folder else list(PERSONA_VOICES)

    def _fill_persona_voices(self) -> None:
        """The folder's presets, 'No voice prompt', and a recording chosen before; the remembered one selected
        (else the release's default voice, else the first preset)."""
        combo, saved = self.w.persona_voice_combo, self.settings.persona_voice
        presets = self._persona_presets()
        combo.blockSignals(True)
        combo.clear()
        for name in presets:
            combo.addItem(name, name)
        combo.addItem(NO_VOICE, "")
        if saved and saved not in presets and Path(saved).suffix:
            combo.addItem(Path(saved).name, saved)
        fallback = DEFAULT_PERSONA_VOICE if DEFAULT_PERSONA_VOICE in presets else (presets[0] if presets else "")
        combo.setCurrentIndex(combo.findData(saved) if combo.findData(saved) >= 0 else combo.findData(fallback))
        combo.blockSignals(False)
        self.settings.persona_voice = combo.currentData()

    def _show_persona_voice(self, voice: str) -> None:
        combo = self.w.persona_voice_combo
        if combo.findData(voice) < 0:  # a recording or preset file chosen before
            combo.addItem(Path(voice).name, voice)
        combo.setCurrentIndex(combo.findData(voice))

    def choose_persona_voice(self) -> None:
        path = self.dialogs.choose_file(
            "A recording of the voice (a few seconds of one speaker)", "", "Voices (*.wav *.flac *.ogg *.mp3 *.pt)"
        )
        if path:
            self._show_persona_voice(path)  # the combo's signal remembers it

    def _update_model_status(self) -> None:
        if self.ctl.loaded or self.ctl.state == c.LOADING:
            self.w.status.set_model(self.ctl.model_label, self.ctl.quantization)
            return
        ch = self.choice()
        if ch.folder:
            self.w.status.set_model(ch.label(), "from folder")
        elif ch.hub_repo:
            self.w.status.set_model(ch.label(), precision_label(None))
        else:
            self.w.status.set_model(ch.label(), self.w.precision_combo.currentText())

    def choice(self) -> ModelChoice:
        s = self.settings
        return ModelChoice(s.voice, s.precision, s.local_folder, s.hub_repo)

    def _connect(self) -> None:
        w, ctl = self.w, self.ctl
        w.voice_combo.currentIndexChanged.connect(lambda _: self.pick_model(w.voice_combo.currentData()))
        w.precision_combo.currentIndexChanged.connect(lambda _: self._set("precision", w.precision_combo.currentData()))
        w.temperature_spin.valueChanged.connect(lambda v: self._set("temperature", float(v)))
        w.echo_check.toggled.connect(lambda on: self._set("echo_cancellation", bool(on)))
        w.echo_check.toggled.connect(lambda _: self._sync_suppressor())
        w.suppressor_check.toggled.connect(lambda on: self._set("echo_suppressor", bool(on)))
        w.user_check.toggled.connect(self.set_transcribe_user)
        w.input_combo.activated.connect(lambda _: self._set("input_device", w.input_combo.currentData() or ""))
        w.output_combo.activated.connect(lambda _: self._set("output_device", w.output_combo.currentData() or ""))
        w.persona_voice_combo.currentIndexChanged.connect(
            lambda _: self._set("persona_voice", w.persona_voice_combo.currentData() or "")
        )
        w.persona_voice_file.clicked.connect(self.choose_persona_voice)
        w.role_edit.editingFinished.connect(lambda: self._set("role", w.role_edit.text().strip()))
        w.folder_button.clicked.connect(self.choose_folder)
        w.folder_clear.clicked.connect(lambda: self.set_folder(""))
        w.start_button.clicked.connect(self.toggle)
        w.start_action.triggered.connect(self.toggle)
        w.mute_button.toggled.connect(self.set_muted)
        w.mute_action.toggled.connect(self.set_muted)
        w.copy_button.clicked.connect(self.copy_transcript)
        w.copy_action.triggered.connect(self.copy_transcript)
        # clicked(bool) / triggered(bool) would pass False as the folder: slots that take no argument
        w.save_button.clicked.connect(lambda: self.save_conversation())
        w.save_action.triggered.connect(lambda: self.save_conversation())
        w.quit_action.triggered.connect(w.close)
        ctl.state_changed.connect(self._on_state)
        ctl.model_loaded.connect(self._on_loaded)
        ctl.timed_text.connect(lambda text, t, speaker: w.transcript.append_text(text, speaker, t))
        ctl.turn_ended.connect(lambda t, speaker: w.transcript.end_turn(speaker, t))
        ctl.input_level.connect(w.meters.input.set_level)
        ctl.output_level.connect(w.meters.output.set_level)
        ctl.stats.connect(self._on_stats)
        ctl.skipped.connect(lambda _n, total: w.status.set_skipped(total))
        ctl.conversation_started.connect(self._on_conversation_started)
        ctl.conversation_ended.connect(self._on_conversation_ended)
        ctl.error.connect(self.dialogs.error)
        ctl.notice.connect(lambda message: w.status.showMessage(message, 20000))
        ctl.devices_changed.connect(self._on_devices)

    def _set(self, key: str, value) -> None:
        setattr(self.settings, key, value)
        if key in ("voice", "precision", "temperature", "persona_voice", "role", "transcribe_user"):
            self._model_choice_changed()

    def pick_model(self, key: str | None) -> None:
        """The model picker: one of Moshi's voices (its precision chosen beside it), or a family repository."""
        if not key:  # the separator
            return
        if key in VOICES:
            self.settings.hub_repo = ""
            self._set("voice", key)
        else:
            self.settings.hub_repo = key
        self._sync_model_widgets()  # Translate mode, the Persona box, the precision
        self._model_choice_changed()

    def _model_choice_changed(self) -> None:
        # a loaded model that no longer matches is released now (memory back at once), not at Start
        if self.ctl.state == c.READY and self._loaded_key != self._key():
            self.ctl.unload()
            self._loaded_key = None
        self._update_model_status()

    def _key(self) -> tuple:
        s = self.settings
        return (self.choice(), round(s.temperature, 4), s.persona_voice, s.role, s.transcribe_user)

    def choose_folder(self) -> None:
        folder = self.dialogs.choose_folder("Folder with Moshi weights", self.settings.local_folder)
        if folder:
            try:
                resolve_folder(folder)
            except MoshiError as e:
                self.dialogs.error("These weights cannot be used", str(e))
                return
            self.set_folder(folder)

    def set_folder(self, folder: str) -> None:
        self.settings.local_folder = folder
        self.w.folder_edit.setText(folder)
        self._sync_model_widgets()
        self._model_choice_changed()

    def _on_devices(self, devices: list) -> None:
        for combo, kind, saved in (
            (self.w.input_combo, "input", self.settings.input_device),
            (self.w.output_combo, "output", self.settings.output_device),
        ):
            usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
            default = next(
                (d.name for d in usable if (d.is_default_input if kind == "input" else d.is_default_output)), None
            )
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(f"System default ({default})" if default else "System default", "")
            for d in usable:
                combo.addItem(d.name, d.name)
            if saved and combo.findData(saved) < 0:
                combo.addItem(f"{saved} (not connected)", saved)
            combo.setCurrentIndex(max(0, combo.findData(saved)))
            combo.blockSignals(False)

    # -- start / stop ----------------------------------------------------------------------------
    def toggle(self) -> None:
        state = self.ctl.state
        if state in (c.STARTING, c.RUNNING):
            self.ctl.stop()
        elif state == c.READY and self._loaded_key == self._key():
            self.ctl.start(*self._audio_args())
        elif state in (c.IDLE, c.READY) and self.download is None:
            self.prepare_and_start()

    def set_muted(self, on: bool) -> None:
        """Mute / unmute the microphone (the button and the menu item stay in step)."""
        w = self.w
        for widget in (w.mute_button, w.mute_action):
            widget.blockSignals(True)
            widget.setChecked(on)
            widget.blockSignals(False)
        w.mute_button.setText("Unmute" if on else "Mute")
        self.ctl.set_muted(on)
        w.status.showMessage("Microphone muted: Moshi hears silence" if on else "Microphone on", 4000)

    def _audio_args(self) -> tuple:
        echo = self.w.echo_check.isChecked() and self.ctl.echo_available
        suppressor = echo and self.w.suppressor_check.isChecked()
        return self.settings.input_device, self.settings.output_device, echo, suppressor

    def prepare_and_start(self) -> None:
        """Checks the microphone and speaker, finds the weights (local folder, cache, or a download
        with a progress dialog), then loads the model on the loop thread and starts talking when it is ready."""
        if self.ctl.pick_devices(*self._audio_args()[:2]) is None:
            return  # said before gigabytes are downloaded or loaded
        choice = self.choice()
        if choice.folder:
            try:
                files = resolve_folder(choice.folder)
            except MoshiError as e:
                self.dialogs.error("Model files problem", str(e))
                return
            self._moshi_found(files)
            return
        cached = cached_files(choice) if self.resolver is hub_resolver else None
        if cached:
            self._moshi_found(from_hub(choice, cached))
            return
        self._start_download(choice)

    def _moshi_found(self, model: ResolvedModel) -> None:
        """Moshi's files are here: load them, after finding (or downloading) the STT model when it is wanted."""
        if not (self.settings.transcribe_user and model.kind == "moshi"):
            self._load(model)
            return
        try:
            user = self._local_user_files()
        except MoshiError as e:
            self.dialogs.error(USER_PROBLEM, for_window(e))
            return
        if user is not None:
            self._load(model, user)
            return
        self._moshi_waiting = model
        self._start_download(ModelChoice(hub_repo=self.user_model))

    def _local_user_files(self) -> hub.ModelFiles | None:
        """The STT model's files when they are on this computer (its folder, or the Hugging Face cache), else None."""
        if Path(self.user_model).expanduser().is_dir():
            return hub.resolve_model_files(self.user_model)
        choice = ModelChoice(hub_repo=self.user_model)
        return cached_files(choice) if self.resolver is hub_resolver else None

    def _user_model_problem(self, model: ResolvedModel, user: hub.ModelFiles) -> str | None:
        """Why Moshi cannot transcribe the user with this STT model (not one, or both do not fit in memory):
        the preflight of `run --transcribe-user`, read from the files' headers before anything loads."""
        from moshi_mlx.stt.user import check_dialog_model

        try:
            check_dialog_model(model.files, user)
        except MoshiError as e:
            return for_window(e)
        return None

    def set_transcribe_user(self, on: bool) -> None:
        """The "Show what I say" switch. Turned on where both models' files are on this computer already, it is
        refused at once (one dialog, the switch back off) when they do not fit together; else at Start."""
        problem = self._user_problem_now() if on else None
        if problem:
            check = self.w.user_check
            check.blockSignals(True)
            check.setChecked(False)
            check.blockSignals(False)
            self.dialogs.error(USER_PROBLEM, problem)
            return
        self._set("transcribe_user", bool(on))

    def _user_problem_now(self) -> str | None:
        choice = self.choice()
        try:
            if choice.folder:
                model = resolve_folder(choice.folder)
            else:
                cached = cached_files(choice) if self.resolver is hub_resolver else None
                model = from_hub(choice, cached) if cached else None
            user = self._local_user_files()
        except MoshiError:  # said at Start
            return None
        if model is None or user is None or model.kind != "moshi":
            return None
        return self._user_model_problem(model, user)

    def _start_download(self, choice: ModelChoice) -> None:
        task = DownloadTask(choice, self.resolver, self)
        dialog = DownloadDialog(task, self.w)
        task.finished.connect(self._download_finished)
        task.failed.connect(self._download_failed)
        task.cancelled.connect(self._download_cancelled)
        dialog.canceled.connect(self._download_cancelled)  # the dialog goes at once; the thread follows
        self.download, self.download_dialog = task, dialog
        self._on_state(self.ctl.state)
        self.w.status.set_state(f"Downloading {choice.repo}…")
        dialog.show()
        task.start()

    def _end_download(self) -> DownloadTask | None:
        task, dialog = self.download, self.download_dialog
        self.download = self.download_dialog = None
        if dialog is not None:
            dialog.canceled.disconnect(self._download_cancelled)
            dialog.close()
            dialog.deleteLater()
        self._on_state(self.ctl.state)
        return task

    def _download_finished(self, files: ResolvedModel) -> None:
        if self.sender() is self.download and self._end_download() is not None:
            moshi, self._moshi_waiting = self._moshi_waiting, None
            if moshi is None:
                self._moshi_found(files)
            else:  # the STT model came after Moshi
                self._load(moshi, files.files)

    def _download_failed(self, message: str) -> None:
        if self.sender() is self.download:
            self._end_download()
            if self._moshi_waiting is not None:  # the speech-to-text model, after Moshi's
                self._moshi_waiting = None
                self.dialogs.error(USER_DOWNLOAD, f"{message.rstrip('.')}. Or turn off {USER_CHECK}.")
            else:
                self.dialogs.error("Could not download Moshi", message)

    def _download_cancelled(self) -> None:
        task = self.download
        self._moshi_waiting = None
        if task is not None:
            task.cancel()
            self._end_download()
            self.w.status.showMessage("Download cancelled; it resumes where it stopped next time", 6000)

    def _load(self, files: ResolvedModel, user: hub.ModelFiles | None = None) -> None:
        if user is not None:
            problem = self._user_model_problem(files, user)
            if problem:
                self.dialogs.error(USER_PROBLEM, problem)
                return
            files = replace(files, user=user)
        if is_personaplex(files.files):  # its voice and role, read before loading
            try:
                persona = resolve_persona(files, self.settings.persona_voice, self.settings.role)
            except MoshiError as e:
                self.dialogs.error("Voice problem", for_window(e))
                return
            factory = self.model_factory(files, self.settings.temperature, persona)
        else:
            factory = self.model_factory(files, self.settings.temperature)
        self._loaded_key = self._key()
        self.ctl.load(factory, files.label, files.quantization, start_after=self._audio_args())
        self._update_model_status()

    # -- controller events -----------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        text, enabled, running = _BUTTON[state]
        w = self.w
        w.start_button.setText(text)
        w.start_button.setEnabled(enabled and self.download is None)
        w.set_start_style(running)
        busy = state in (c.LOADING, c.STARTING, c.RUNNING, c.STOPPING) or self.download is not None
        for widget in (
            w.voice_combo,
            w.precision_combo,
            w.folder_button,
            w.folder_clear,
            w.temperature_spin,
            w.input_combo,
            w.output_combo,
            w.echo_check,
            w.suppressor_check,
            w.user_check,
        ):
            widget.setEnabled(not busy)
        if not busy:
            self._sync_model_widgets()
            w.echo_check.setEnabled(self.ctl.echo_available)
            self._sync_suppressor()
        if state == c.IDLE:
            self._loaded_key = None
        w.save_action.setEnabled(not running and bool(self.conversations))
        w.save_button.setEnabled(w.save_action.isEnabled())
        w.status.set_state(_STATE_TEXT[state])
        self._update_model_status()

    def _on_loaded(self, _seconds: float) -> None:
        self.w.status.set_notes(" ".join(self.ctl.model_notes))
        for alert in self.ctl.model_alerts:  # the user's transcript cannot keep up here (stt/speed.py)
            self.dialogs.error(
                USER_PROBLEM, f"{alert.rstrip('.')}. “{USER_CHECK}” stays on: it is timed again at the next load."
            )

    def _on_stats(self, st) -> None:
        self.w.status.set_stats(st.rtf, st.lag_ms + st.step_ms + st.output_queued_ms, st.frames_skipped)
        slow = None if self._said_too_slow else too_slow(st)
        if slow:
            self._said_too_slow = True
            self.w.status.showMessage(f"{slow}. Its answers come in pieces: a live talk needs a GPU (a Mac's).", 30000)

    def _on_conversation_started(self, n: int) -> None:
        self._said_too_slow = False
        index = self.w.transcript.begin_conversation(f"Conversation {n} · {time.strftime('%H:%M')}")
        if self.ctl.last_recording is not None:
            self.conversations.append(Conversation(n, self.ctl.last_recording, time.time(), index))
        self.w.status.set_skipped(0)

    def _on_conversation_ended(self, reason: str) -> None:
        error = reason == "error"
        self.w.transcript.end_conversation("stopped by an error" if error else "")
        self.w.meters.input.reset()
        self.w.meters.output.reset()
        self.w.status.clear_stats()
        self.w.status.set_state(ENDED_BY_ERROR if error else ENDED)

    # -- transcript and recordings ---------------------------------------------------------------
    def copy_transcript(self) -> str:
        text = self.w.transcript.transcript_text()
        QGuiApplication.clipboard().setText(text)
        self.w.status.showMessage("Transcript copied" if text else "Nothing to copy yet", 3000)
        return text

    def save_conversation(self, folder: str | None = None) -> Path | None:
        """Copies the last conversation (user.wav, moshi.wav, transcript.jsonl, transcript.txt) into a
        new folder under `folder` (asked when None); returns the new folder."""
        if not self.conversations or self.ctl.state in (c.STARTING, c.RUNNING, c.STOPPING):
            self.dialogs.error("Nothing to save yet", "Save works once a conversation has ended.")
            return None
        saved = self._save([self.conversations[-1]], folder, "Save the conversation in…")
        return saved[0] if saved else None

    def _save(self, conversations: list[Conversation], folder: str | None, question: str) -> list[Path] | None:
        """Saves each conversation under `folder` (asked when None); None if cancelled or failed (said)."""
        if folder is None:
            folder = self.dialogs.choose_folder(question, self.settings.save_folder or str(Path.home()))
            if not folder:
                return None
        saved = []
        for conv in conversations:
            try:
                saved.append(save_copy(conv, folder, self.w.transcript.conversation_text(conv.text_index)))
            except OSError as e:
                self.dialogs.error("Could not save the conversation", _save_failure(e, conv, folder))
                return None
        self.settings.save_folder = str(folder)
        self.w.status.showMessage(f"Saved to {saved[0] if len(saved) == 1 else folder}", 8000)
        return saved

    # -- shutdown --------------------------------------------------------------------------------
    def may_quit(self) -> bool:
        """Asks to save the conversations not saved yet (their recordings go when the app quits);
        False when the person cancels, or saving did not succeed."""
        unsaved = [conv for conv in self.conversations if not conv.saved]
        if not unsaved:
            return True
        answer = self.dialogs.ask_save_before_quit(len(unsaved))
        if answer != "save":
            return answer == "discard"
        if self.ctl.state in (c.STARTING, c.RUNNING, c.STOPPING):  # its recording is complete once it ended
            self.ctl.stop()
            deadline = time.monotonic() + 15.0
            while self.ctl.state in (c.STARTING, c.STOPPING) and time.monotonic() < deadline:
                QCoreApplication.processEvents()
                time.sleep(0.01)
        unsaved = [conv for conv in self.conversations if not conv.saved]  # one starting then is in now
        return self._save(unsaved, None, "Save the conversations in…") is not None

    def quit_without_asking(self) -> Path | None:
        """Closes the app where nobody can answer a question (SIGTERM at logout, Ctrl+C in the terminal):
        the conversations not saved keep their recordings on disk. Returns their folder, or None."""
        unsaved = any(not conv.saved for conv in self.conversations)
        self.shutdown(keep_unsaved=unsaved)
        self.w.close()
        return self.ctl.recordings if unsaved else None

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt)
        kind = event.type()
        if obj is self.w and kind == QEvent.Type.Close and not self._closing:
            if not self.may_quit():
                event.ignore()  # the window stays open
                return True
            self.shutdown()
        elif (obj is self.w and kind == QEvent.Type.WindowActivate) or (
            obj in (self.w.input_combo, self.w.output_combo) and kind == QEvent.Type.MouseButtonPress
        ):
            self._rescan_devices(min_interval_s=1.0)  # plugged in while away, or about to pick one
        return False

    def _poll_devices(self) -> None:
        # Re-initialising PortAudio blocks this thread; where it is slow (some ALSA setups) keep to
        # the rescans on window activation and on opening a device list.
        if self.w.isActiveWindow() and self.ctl.rescan_ms < 150:
            self._rescan_devices(min_interval_s=0.0)

    def _rescan_devices(self, min_interval_s: float) -> None:
        now = time.monotonic()
        if now - self._last_rescan >= min_interval_s and not self._closing:
            self._last_rescan = now
            self.ctl.refresh_devices()

    def shutdown(self, keep_unsaved: bool = False) -> bool:
        """Ends downloads, conversations and the model; the recordings go unless `keep_unsaved`."""
        if self._closing:
            return True
        self._closing = True
        self._device_timer.stop()
        if self.download is not None:
            task = self.download
            self._download_cancelled()
            task.join(5)
        self.settings.geometry = self.w.saveGeometry()
        self.settings.sync()
        return self.ctl.shutdown(keep_recordings=keep_unsaved)


def _save_failure(e: OSError, conv: Conversation, folder: str) -> str:
    """Why saving `conv` under `folder` failed, in words that blame the right side: its recording (removed while the
    app ran, by a temporary-folder cleaner say: no folder picked would help) or the folder picked (named as picked,
    not the hidden copy being written under it)."""
    if not conv.recording.is_dir() or str(e.filename or "").startswith(str(conv.recording)):
        return (
            f"Conversation {conv.number}'s recording is gone: {conv.recording} was removed or damaged while Moshi "
            f"ran ({e.strerror or e}). Its words are still here: File → Copy transcript."
        )
    return f"{folder}: {e.strerror or e}. Pick another folder."
