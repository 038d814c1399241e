"""Controller: owns one ModelLoop at a time and turns its events into Qt signals.

Threads: the GUI thread calls the methods here and receives the signals; the ModelLoop thread
builds the model and runs conversations (all MLX work); PortAudio's thread only moves samples.
Loop events cross to the GUI thread through a queued signal, tagged with the loop's generation
so that late events of a replaced model are dropped. Nothing here blocks the GUI thread on the
model: ending a conversation or a model only sends a command, and a short-lived closer thread
waits for the old loop to finish.

Words are shown when Moshi says them: a word arrives with the frame whose audio has just been
queued for the speaker, so it is held back by the audio already waiting there.
"""

from __future__ import annotations

import contextlib
import gc
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from moshi_mlx.audio.devices import AudioIO, DeviceInfo, list_devices
from moshi_mlx.cli.tempdir import check_temp_folder
from moshi_mlx.dialog.events import (
    Error,
    FrameModel,
    Loaded,
    Notice,
    RecordingStopped,
    SessionEnded,
    SessionStarted,
    Skipped,
    Stats,
    Text,
    TurnEnded,
)
from moshi_mlx.dialog.loop import ModelLoop
from moshi_mlx.dialog.recorder import Recorder
from moshi_mlx.errors import MoshiError

from .wording import DeviceProblem, for_window, pick_device, worded

IDLE, LOADING, READY, STARTING, RUNNING, STOPPING = "idle", "loading", "ready", "starting", "running", "stopping"


def default_echo_factory():
    """The echo canceller, or None when this installation has none."""
    try:
        from moshi_mlx.dialog.echo import EchoCanceller
    except ImportError:
        return None
    return EchoCanceller


class Controller(QObject):
    """Start/stop conversations and switch models without freezing the GUI.

    Args:
        audio_backend: None for the sound card (sounddevice), or a fake backend in tests.
        echo_factory: builds an echo canceller (None: echo cancellation unavailable).
        recordings: folder for the per-conversation recordings (default: a temporary folder removed
            at shutdown); `Save conversation` copies from there.
    """

    state_changed = Signal(str)
    model_loaded = Signal(float)  # seconds it took
    text = Signal(str)  # transcript text to append, when Moshi says it
    user_text = Signal(str)  # the user's words, when the model transcribes them (they come already late)
    # either side's text with its time (seconds on the conversation's timeline; the user's: when it was said)
    # and speaker ("moshi" | "user"), for a view that places each side's words by time
    timed_text = Signal(str, float, str)
    turn_ended = Signal(float, str)  # the user finished a turn (when it was said), "user"; an STT model's head
    stats = Signal(object)  # loop.Stats
    input_level = Signal(float)  # dBFS of the frame just heard
    output_level = Signal(float)  # dBFS of Moshi's frame now playing
    skipped = Signal(int, int)  # frames now, total
    conversation_started = Signal(int)
    conversation_ended = Signal(str)  # reason
    error = Signal(str, str)  # title, message
    notice = Signal(str)  # something to know about the conversation (loop.Notice), not an error
    devices_changed = Signal(list)  # [DeviceInfo]

    _loop_event = Signal(int, object)  # (generation, event), from the loop thread

    def __init__(
        self,
        audio_backend=None,
        echo_factory: Callable[[], Callable | None] = default_echo_factory,
        recordings: str | Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.audio_backend = audio_backend
        self._echo_cls = echo_factory() if echo_factory is not None else None
        self._own_recordings = recordings is None
        self.recordings = Path(recordings) if recordings else Path(tempfile.mkdtemp(prefix="moshi-app-"))
        self.state = IDLE
        self.model_label = ""
        self.quantization = ""
        self.model_notes: tuple[str, ...] = ()  # the loaded model's notes on its set-up (loop.Loaded)
        self.model_alerts: tuple[str, ...] = ()  # what was asked for and is off (loop.Loaded)
        self.muted = False  # the microphone, for this model and the next
        self._loop: ModelLoop | None = None
        self._gen = 0
        self._closers: list[tuple[threading.Thread, ModelLoop]] = []  # closer threads and the loops they end
        self._start_when_loaded: tuple | None = None
        self.conversations = 0
        self.last_recording: Path | None = None
        self._speaker_ms = 0.0
        # (due, text, its time, output dB)
        self._held: deque[tuple[float, str | None, float, float | None]] = deque()
        self._release = QTimer(self)
        self._release.setInterval(15)
        self._release.timeout.connect(self._release_due)
        self._devices: list[DeviceInfo] = []
        self._warned_devices = False
        self._device_error = ""  # why the device list could not be read, if it could not
        self._said_session_error = False  # a conversation's first error is shown, not the ones it causes
        self.rescan_ms = 0.0  # how long the last PortAudio re-initialisation took (it blocks the GUI)
        self._loop_event.connect(self._on_loop_event)

    # -- model -----------------------------------------------------------------------------------
    @property
    def echo_available(self) -> bool:
        return self._echo_cls is not None

    def load(
        self, factory: Callable[[], FrameModel], label: str, quantization: str, start_after: tuple | None = None
    ) -> None:
        """Replaces the current model (if any) with one built by `factory` on a new loop thread.

        `start_after`: (input, output, echo, suppressor) to start a conversation as soon as it is loaded.
        """
        self.unload()
        self._gen += 1
        gen = self._gen
        self.model_label, self.quantization, self.model_notes, self.model_alerts = label, quantization, (), ()
        self._start_when_loaded = start_after
        releasing = [t for t, _ in self._closers if t.is_alive()]

        def build():  # on the new loop thread: the old model's memory is back before the new one is measured
            for t in releasing:
                t.join()
            check_temp_folder()  # MLX compiles there at the first step: a failure said now, in words, not then
            return factory()

        def tell(ev) -> None:  # on the loop thread
            # RuntimeError: the app's objects are gone (it quit while the model loaded): no one to tell
            with contextlib.suppress(RuntimeError):
                self._loop_event.emit(gen, ev)

        self._loop = ModelLoop(build, on_event=tell).start()
        self._loop.set_muted(self.muted)
        self._set_state(LOADING)

    def unload(self) -> None:
        """Ends the current conversation and model without waiting (a closer thread joins the loop)."""
        loop, self._loop = self._loop, None
        self._gen += 1  # anything the old loop still says is dropped
        self._start_when_loaded = None
        self._flush_held()
        if loop is not None:
            t = threading.Thread(target=_close_loop, args=(loop,), name="moshi-app-closer", daemon=True)
            t.start()
            self._closers.append((t, loop))
        self._closers = [(t, old) for t, old in self._closers if t.is_alive()]
        self._set_state(IDLE)

    def set_muted(self, on: bool) -> None:
        """Mute the microphone: the model hears silence until unmuted (kept across conversations)."""
        self.muted = bool(on)
        if self._loop is not None:
            self._loop.set_muted(self.muted)

    @property
    def loaded(self) -> bool:
        return self._loop is not None and self.state in (READY, STARTING, RUNNING, STOPPING)

    # -- conversations ---------------------------------------------------------------------------
    def start(
        self,
        input_device: str | None = None,
        output_device: str | None = None,
        echo: bool = False,
        suppressor: bool = False,
    ) -> bool:
        """Starts a conversation on the loaded model; False (and an `error`) if the devices are unusable.
        `echo`: with echo cancellation; `suppressor`: and its residual echo suppressor (as --echo-suppressor)."""
        if self._loop is None or self.state != READY:
            return False
        picked = self.pick_devices(input_device, output_device, rescan=False)  # PortAudio's list as it is now
        if picked is None:
            return False
        try:
            audio = AudioIO(*picked, backend=self.audio_backend)
        except MoshiError as e:  # the devices changed since they were picked
            self.error.emit("Audio device problem", for_window(e))
            return False
        self._said_session_error = False
        self.conversations += 1
        folder = self.recordings / f"conversation-{self.conversations:03d}"
        shutil.rmtree(folder, ignore_errors=True)
        try:
            recorder = Recorder(folder, meta={"model": self.model_label, "quantization": self.quantization})
        except MoshiError as e:
            self.error.emit("Cannot record", f"{for_window(e)} The conversation runs without a recording.")
            recorder, folder = None, None
        echo_obj = None
        if echo and self._echo_cls is not None:
            echo_obj = self._echo_cls(suppress=1.0 if suppressor else 0.0)
        self.last_recording = folder
        self._speaker_ms = 0.0
        self._loop.begin_session(audio, recorder=recorder, echo=echo_obj)
        self._set_state(STARTING)
        return True

    def stop(self) -> None:
        """Asks the loop to end the conversation; `conversation_ended` follows."""
        if self._loop is not None and self.state in (STARTING, RUNNING):
            self._loop.end_session(timeout=0)  # sends the command, does not wait
            self._set_state(STOPPING)

    def shutdown(self, timeout: float = 30.0, keep_recordings: bool = False) -> bool:
        """Ends everything and joins every thread this controller started that holds a model; True if all ended.
        A loop still building its model is not waited for (a 7B load takes tens of seconds, and the window would
        freeze): it ends on its own once built, and process exit does not wait for it (mlx_thread).
        The recordings folder goes with the app unless `keep_recordings` (conversations nobody could save)."""
        self._release.stop()
        self.unload()
        deadline = time.monotonic() + timeout
        for t, loop in self._closers:
            while t.is_alive() and loop.loaded.is_set() and (left := deadline - time.monotonic()) > 0:
                t.join(min(0.05, left))
        ok = not any(t.is_alive() and loop.loaded.is_set() for t, loop in self._closers)
        self._closers = [(t, loop) for t, loop in self._closers if t.is_alive()]
        if self._own_recordings and not keep_recordings:
            shutil.rmtree(self.recordings, ignore_errors=True)
        return ok

    # -- devices ---------------------------------------------------------------------------------
    def pick_devices(
        self, input_device: str | None, output_device: str | None, rescan: bool = True
    ) -> tuple[int, int] | None:
        """The indices of the chosen microphone and speaker (names as the window lists them, '' or None
        for the system default), or None after an `error` that says what is missing in the window's words.
        `rescan`: re-initialise PortAudio first to see devices plugged in since (see `refresh_devices`)."""
        devices = self.refresh_devices(rescan)
        try:
            if self._device_error:
                raise DeviceProblem("Audio device problem", self._device_error)
            return (
                pick_device(devices, "input", input_device or "").index,
                pick_device(devices, "output", output_device or "").index,
            )
        except DeviceProblem as e:
            self.error.emit(e.title, e.message)
            return None

    def refresh_devices(self, rescan: bool = True) -> list[DeviceInfo]:
        """Re-reads the device list (PortAudio only sees new devices after a re-initialisation,
        which is only safe while no stream is open); emits `devices_changed` when it changed."""
        if self.state in (STARTING, RUNNING, STOPPING) or any(t.is_alive() for t, _ in self._closers):
            return self._devices  # a stream may be open (also on a loop that is still closing)
        try:
            if rescan and self.audio_backend is None:
                t0 = time.perf_counter()
                _reinit_portaudio()
                self.rescan_ms = 1000 * (time.perf_counter() - t0)
            devices = list_devices(self.audio_backend)
            self._device_error = ""
        except MoshiError as e:
            self._device_error = for_window(e)
            if not self._warned_devices:
                self._warned_devices = True
                self.error.emit("Audio device problem", self._device_error)
            devices = []
        if _device_key(devices) != _device_key(self._devices):
            self._devices = devices
            self.devices_changed.emit(devices)
        return devices

    # -- loop events (GUI thread) ----------------------------------------------------------------
    @Slot(int, object)
    def _on_loop_event(self, gen: int, ev: object) -> None:
        if gen != self._gen:
            return
        if isinstance(ev, Stats):
            self._speaker_ms = ev.output_queued_ms
            self.stats.emit(ev)
            self._hold(None, 0.0, ev.output_db)
            self.input_level.emit(ev.input_db)
        elif isinstance(ev, Text) and ev.speaker == "user":
            self.user_text.emit(ev.text)
            self.timed_text.emit(ev.text, ev.t, "user")
        elif isinstance(ev, Text):
            self._hold(ev.text, ev.t, None)
        elif isinstance(ev, TurnEnded) and ev.speaker is not None:
            self.turn_ended.emit(ev.t, ev.speaker)
        elif isinstance(ev, Skipped):
            self.skipped.emit(ev.frames, ev.total)
        elif isinstance(ev, Notice):
            self.notice.emit(ev.message)
        elif isinstance(ev, Loaded):
            self.model_notes, self.model_alerts = ev.notes, ev.alerts
            self._set_state(READY)
            self.model_loaded.emit(ev.seconds)
            start, self._start_when_loaded = self._start_when_loaded, None
            if start is not None:
                self.start(*start)
        elif isinstance(ev, SessionStarted):
            self._set_state(RUNNING)
            self.conversation_started.emit(self.conversations)
        elif isinstance(ev, SessionEnded):
            self._flush_held()
            self._release.stop()
            self._set_state(READY)
            self.conversation_ended.emit(ev.reason)
        elif isinstance(ev, RecordingStopped):
            kept = self.last_recording is not None and self.last_recording.is_dir()  # not if it was deleted
            self.error.emit(
                "Recording stopped",
                f"{for_window(ev.message).rstrip('.')}. The conversation goes on unrecorded"
                + ("; Save keeps what was recorded." if kept else "."),
            )
        elif isinstance(ev, Error):
            message = worded(ev.message, ev.hint)
            if self.state == LOADING:
                self.error.emit("Could not load the model", message)
                self.unload()
            elif not self._said_session_error:  # one dialog per conversation, its first cause
                self._said_session_error = True
                title = "Could not start the conversation" if self.state == STARTING else "The conversation stopped"
                self.error.emit(title, message)

    def _hold(self, text: str | None, t: float, out_db: float | None) -> None:
        self._held.append((time.monotonic() + self._speaker_ms / 1000.0, text, t, out_db))
        if not self._release.isActive():
            self._release.start()

    def _release_due(self) -> None:
        now = time.monotonic()
        while self._held and self._held[0][0] <= now:
            self._emit_held(self._held.popleft())
        if not self._held:
            self._release.stop()

    def _flush_held(self) -> None:
        while self._held:
            self._emit_held(self._held.popleft())

    def _emit_held(self, item: tuple) -> None:
        _, text, t, out_db = item
        if text:
            self.text.emit(text)
            self.timed_text.emit(text, t, "moshi")
        if out_db is not None:
            self.output_level.emit(out_db)

    def _set_state(self, state: str) -> None:
        if state != self.state:
            self.state = state
            self.state_changed.emit(state)


def _close_loop(loop: ModelLoop) -> None:
    loop.close(timeout=120.0)
    gc.collect()
    mx = sys.modules.get("mlx.core")  # only if a real model was loaded; the loop thread has ended
    if mx is not None and hasattr(mx, "clear_cache"):
        mx.clear_cache()


def _reinit_portaudio() -> None:
    try:
        import sounddevice as sd
    except OSError:
        return
    sd._terminate()  # noqa: SLF001 (PortAudio's device list is fixed until it is re-initialised)
    sd._initialize()  # noqa: SLF001


def _device_key(devices: list[DeviceInfo] | None) -> list:
    return [(d.index, d.name, d.inputs, d.outputs, d.is_default_input, d.is_default_output) for d in devices or []]
