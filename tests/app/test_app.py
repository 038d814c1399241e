"""The desktop app driven offscreen: fake sound card, fake FrameModel, the real ModelLoop."""

from __future__ import annotations

import gc
import json
import re
import threading
import time
import weakref
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

from PySide6.QtCore import QSettings, Qt  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402

from app import controller as c  # noqa: E402
from app.dialogs import Dialogs  # noqa: E402
from app.presenter import Presenter  # noqa: E402
from app.settings import AppSettings  # noqa: E402
from app.window import MainWindow  # noqa: E402
from moshi_mlx.errors import MemoryBudgetError, MoshiError, OfflineError, Setting  # noqa: E402
from support.app_fakes import SCRIPT, LiveFakeBackend, ScriptModel, write_fake_weights  # noqa: E402
from support.app_window import WAIT_MS, App  # noqa: E402


@pytest.fixture
def make_app(qtbot, tmp_path):
    apps: list[App] = []

    def make(**kw) -> App:
        apps.append(App(qtbot, tmp_path, **kw))
        return apps[-1]

    yield make
    for a in apps:
        a.close()


def _thread_names() -> list[str]:
    return sorted(t.name for t in threading.enumerate())


def test_conversation_transcript_meters_status_save_and_copy(make_app, tmp_path: Path) -> None:
    a = make_app()
    w = a.window
    assert w.start_button.text() == "Start" and w.status.model_label.text() == "weights"
    a.qtbot.mouseClick(w.start_button, __import__("PySide6.QtCore", fromlist=["Qt"]).Qt.MouseButton.LeftButton)
    a.wait_state(c.RUNNING)
    assert w.start_button.text() == "Stop" and not w.voice_combo.isEnabled()
    want = " ".join(SCRIPT[:6])
    a.qtbot.waitUntil(lambda: want in w.transcript.toPlainText(), timeout=WAIT_MS)
    assert "CONVERSATION 1" in w.transcript.toPlainText()
    # meters: quiet noise in (-26 dBFS), a 0.2 sine out (-17 dBFS)
    assert -32 < w.meters.input.level_db < -20
    assert -20 < w.meters.output.level_db < -14
    assert w.meters.output.fraction() > 0.5
    # status bar: model and precision from the folder's header, live figures
    assert (w.status.model_label.text(), w.status.quant_label.text()) == ("weights", "4-bit")
    assert w.status.rtf_label.text().startswith("RTF 0.") and "ms" in w.status.latency_label.text()
    assert w.status.skipped_label.text() == f"skipped {w.status.skipped}"  # a busy machine may skip a frame
    a.qtbot.waitUntil(lambda: w.transcript.transcript_text().endswith(" ".join(SCRIPT[-3:])), timeout=WAIT_MS)
    w.start_button.click()
    a.wait_state(c.READY)
    assert w.start_button.text() == "Start" and w.voice_combo.isEnabled() is False  # a folder is in use
    assert w.status.state_label.text() == "Conversation ended"  # not "Model loaded"
    assert w.meters.input.level_db == -60 and w.status.rtf_label.text() == "RTF —"
    # copy and save
    assert a.presenter.copy_transcript() == " ".join(SCRIPT)
    assert QGuiApplication.clipboard().text() == " ".join(SCRIPT)
    dest = a.presenter.save_conversation(str(tmp_path / "saved"))
    assert dest is not None
    assert {p.name for p in dest.iterdir()} == {"user.wav", "moshi.wav", "transcript.jsonl", "transcript.txt"}
    assert (dest / "transcript.txt").read_text().strip() == " ".join(SCRIPT)
    lines = [json.loads(x) for x in (dest / "transcript.jsonl").read_text().splitlines()]
    words = [x for x in lines if "word" in x]
    assert [x["word"].strip() for x in words] == SCRIPT
    assert words[1]["t"] == pytest.approx(2 * 0.08)  # one word every 2 frames, on the model's timeline
    assert lines[0]["model"] == "weights" and lines[0]["quantization"] == "4-bit"
    import soundfile as sf

    user, sr = sf.read(dest / "user.wav")
    moshi, _ = sf.read(dest / "moshi.wav")
    assert sr == 24000 and user.size == moshi.size >= len(SCRIPT) * 2 * 1920
    assert 0.12 < abs(moshi).max() < 0.25
    assert a.settings.save_folder == str(tmp_path / "saved")


def test_words_wait_for_the_voice(make_app) -> None:
    """A word shows when its audio leaves the speaker queue, not when the model produced it."""
    a = make_app()
    got: list[tuple[float, str]] = []
    a.ctl.text.connect(lambda t: got.append((time.monotonic(), t)))
    a.ctl._speaker_ms = 300.0
    t0 = time.monotonic()
    from moshi_mlx.dialog.events import Text

    a.ctl._on_loop_event(a.ctl._gen, Text("hi", 0.0, 0))
    assert got == []
    a.qtbot.waitUntil(lambda: bool(got), timeout=2000)
    assert got[0][1] == "hi" and 0.28 < got[0][0] - t0 < 0.6


def test_the_models_notes_show_in_the_status_bar(make_app) -> None:
    note = "Memory is tight: the attention cache is stored at 8 bits."

    def factory(files, temperature):
        def build() -> ScriptModel:
            model = ScriptModel()
            model.notes = [note]
            return model

        return build

    a = make_app(factory=factory)
    a.window.start_button.click()
    a.wait_state(c.RUNNING)
    assert a.ctl.model_notes == (note,)
    assert a.window.status.currentMessage() == note and note in a.window.status.quant_label.toolTip()
    a.window.start_button.click()
    a.wait_state(c.READY)


def test_a_machine_far_slower_than_real_time_is_told_once_per_conversation(make_app) -> None:
    from moshi_mlx.dialog.events import Stats

    a = make_app()
    st = Stats(
        frame=5,
        step_ms=7600.0,
        step_ms_avg=7600.0,
        rtf=95.0,
        lag_ms=0.0,
        output_queued_ms=0.0,
        frames_skipped=0,
        output_dropped=0,
        output_trimmed_ms=0.0,
        input_db=-60.0,
        output_db=-60.0,
        loop_ms=1.0,
        rtf_sustained=95.0,
    )
    a.presenter._on_conversation_started(1)
    a.presenter._on_stats(st)
    assert "95x slower than real time" in a.window.status.currentMessage()
    a.window.status.clearMessage()
    a.presenter._on_stats(st._replace(frame=6))
    assert a.window.status.currentMessage() == ""  # once
    a.presenter._on_conversation_started(2)
    a.presenter._on_stats(st._replace(frame=2, rtf_sustained=None))  # warm-up
    assert a.window.status.currentMessage() == ""
    a.presenter._on_stats(st._replace(frame=7, rtf_sustained=0.8))  # one slow step on a machine that keeps up
    assert a.window.status.currentMessage() == ""


def test_mute_button_and_menu_mute_the_microphone(make_app) -> None:
    a = make_app()
    w = a.window
    w.mute_action.trigger()  # before a model exists: remembered
    assert w.mute_button.isChecked() and w.mute_button.text() == "Unmute" and a.ctl.muted
    w.start_button.click()
    a.wait_state(c.RUNNING)
    assert a.ctl._loop.muted
    a.qtbot.waitUntil(lambda: w.meters.input.level_db <= -59, timeout=WAIT_MS)  # the model hears silence
    w.mute_button.click()
    assert not w.mute_action.isChecked() and not a.ctl._loop.muted and w.mute_button.text() == "Mute"
    assert w.status.currentMessage() == "Microphone on"
    a.qtbot.waitUntil(lambda: w.meters.input.level_db > -40, timeout=WAIT_MS)  # the fake mic's noise again
    w.start_button.click()
    a.wait_state(c.READY)


def test_a_new_model_is_built_only_once_the_old_one_is_released(make_app, monkeypatch) -> None:
    """Else switching bf16 -> 4-bit would hold both in memory, and the new model's memory check would
    count the old one as taken."""
    released, built = [], []
    close = c._close_loop

    def slow_close(loop) -> None:
        time.sleep(0.3)
        close(loop)
        released.append(time.monotonic())

    monkeypatch.setattr(c, "_close_loop", slow_close)
    a = make_app()

    def factory():
        built.append(time.monotonic())
        return ScriptModel()

    a.ctl.load(factory, "one", "4-bit")
    a.wait_state(c.READY)
    a.ctl.load(factory, "two", "8-bit")
    a.wait_state(c.READY)
    assert len(built) == 2 and len(released) == 1 and built[1] >= released[0]


def test_start_stop_ten_times_and_switch_model_leak_no_thread(make_app, tmp_path: Path) -> None:
    before = _thread_names()
    a = make_app()
    for i in range(10):
        a.window.start_button.click()
        a.wait_state(c.RUNNING)
        n = len(a.window.transcript.transcript_text())
        a.qtbot.waitUntil(lambda n=n: len(a.window.transcript.transcript_text()) > n, timeout=WAIT_MS)
        a.window.start_button.click()
        a.wait_state(c.READY)
        assert _thread_names() == sorted([*before, "moshi-model-loop"]), i  # no recorder, clock or stream left
    assert len(a.models) == 1 and a.models[0].resets == 10 and a.models[0].threads == {"moshi-model-loop"}
    assert a.window.transcript.toPlainText().count("CONVERSATION") == 10
    # switching the model releases the old one (its thread ends, the model is freed)
    old = weakref.ref(a.models[0])
    a.window.temperature_spin.setValue(0.5)
    assert a.ctl.state == c.IDLE
    a.window.start_button.click()
    a.wait_state(c.RUNNING)
    a.window.start_button.click()
    a.wait_state(c.READY)
    for t, _ in a.ctl._closers:
        t.join(10)
    a.models.pop(0)
    gc.collect()
    assert old() is None and len(a.models) == 1
    assert _thread_names() == sorted([*before, "moshi-model-loop"])
    a.close()
    assert _thread_names() == before


def test_missing_device_gives_a_dialog_and_the_app_keeps_working(make_app) -> None:
    a = make_app()
    a.settings.input_device = "USB Headset"
    a.window.start_button.click()
    box = a.wait_error()
    assert box.text() == "The microphone is not connected"
    assert box.informativeText() == (
        "“USB Headset”, chosen under Audio → Microphone, is not connected. "
        "Connect it, or choose another microphone there."
    )
    assert a.ctl.state == c.IDLE and a.models == [] and a.window.start_button.isEnabled()  # said before loading
    box.accept()
    a.qtbot.waitUntil(lambda: not a.dialogs.open_boxes, timeout=2000)
    a.settings.input_device = ""
    a.window.start_button.click()
    a.wait_state(c.RUNNING)
    a.window.start_button.click()
    a.wait_state(c.READY)


def test_device_that_fails_to_open_or_vanishes(make_app) -> None:
    a = make_app(backend=LiveFakeBackend(fail_open="output"))
    a.window.start_button.click()
    box = a.wait_error()
    assert box.text() == "Could not start the conversation"
    assert "cannot open output device 1 (Fake Speakers)" in box.informativeText()
    a.wait_state(c.READY)
    box.accept()
    a.backend.fail_open = None
    a.window.start_button.click()
    a.wait_state(c.RUNNING)
    a.qtbot.waitUntil(lambda: bool(a.window.transcript.transcript_text()), timeout=WAIT_MS)
    a.backend.input.fail("unplugged")
    box = a.wait_error()
    assert box.text() == "The conversation stopped" and "input device" in box.informativeText()
    a.wait_state(c.READY)
    assert "stopped by an error" in a.window.transcript.toPlainText()


def test_missing_model_folder_and_failed_build(make_app, tmp_path: Path) -> None:
    a = make_app(folder=False)
    a.presenter.set_folder(str(tmp_path / "nowhere"))
    a.window.start_button.click()
    box = a.wait_error()
    assert box.text() == "Model files problem" and "does not exist" in box.informativeText()
    assert a.ctl.state == c.IDLE
    box.accept()
    empty = tmp_path / "empty"
    empty.mkdir()
    a.presenter.set_folder(str(empty))
    a.window.start_button.click()
    box = a.wait_error()
    assert "holds no Moshi weights" in box.informativeText() and "--moshi-weight" not in box.informativeText()
    box.accept()
    (empty / "model.q4.safetensors").write_bytes(b"")
    a.window.start_button.click()
    box = a.wait_error()
    assert box.informativeText() == (
        f"{empty} has no tokenizer-e351c8d8-checkpoint125.safetensors: add it there. "
        "Or choose another folder under Model → Weights folder."
    )
    box.accept()

    def too_big(files, temperature):
        def build():
            raise MemoryBudgetError(
                "the 7B model in bf16 needs about 15.9 GiB but only 8.0 GiB is available. Pick 4-bit."
            )

        return build

    b = make_app(factory=too_big)
    b.window.start_button.click()
    box = b.wait_error()
    assert box.text() == "Could not load the model" and "needs about 15.9 GiB" in box.informativeText()
    b.wait_state(c.IDLE)
    assert b.window.start_button.isEnabled() and b.window.start_button.text() == "Start"


def test_download_with_progress_then_talk(make_app, tmp_path: Path) -> None:
    progress_seen = []

    from moshi_mlx.loading import hub

    def resolver(choice, progress, cancelled):
        got = []
        for name in choice.files:
            for k in range(1, 4):
                progress(k * 100, 300, name)
                time.sleep(0.02)
            p = tmp_path / "hub" / choice.repo / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
            got.append(p)
        return hub.ModelFiles(*got, None, choice.quant, choice.repo)

    a = make_app(folder=False, resolver=resolver)
    a.settings.voice = "moshika"
    a.settings.precision = "q8"
    a.window.start_button.click()
    dialog = a.presenter.download_dialog
    assert dialog is not None and dialog.isVisible() and not a.window.start_button.isEnabled()
    dialog.task.progress.connect(lambda d, t, n: progress_seen.append((d, t, n)))
    a.wait_state(c.RUNNING)
    assert a.presenter.download_dialog is None and not a.window.findChildren(type(dialog))
    assert (300, 300, "model.q8.safetensors") in progress_seen
    assert (a.window.status.model_label.text(), a.window.status.quant_label.text()) == ("Moshika", "8-bit")
    a.window.start_button.click()
    a.wait_state(c.READY)


def test_offline_download_explains_and_cancel_stops(make_app, tmp_path: Path) -> None:
    def offline(choice, progress, cancelled):
        raise OfflineError(
            f"Moshi's weights ({choice.repo}) are not on this computer yet, and huggingface.co cannot be reached"
        )

    a = make_app(folder=False, resolver=offline)
    a.window.start_button.click()
    box = a.wait_error()
    assert box.text() == "Could not download Moshi" and "cannot be reached" in box.informativeText()
    assert a.presenter.download is None and a.window.start_button.isEnabled() and a.ctl.state == c.IDLE
    box.accept()

    started = threading.Event()

    def slow(choice, progress, cancelled):
        started.set()
        while not cancelled.is_set():
            progress(1, 10, choice.files[0])
            time.sleep(0.01)
        from app.download import DownloadCancelled

        raise DownloadCancelled()

    b = make_app(folder=False, resolver=slow)
    b.window.start_button.click()
    assert started.wait(5)
    task = b.presenter.download
    from PySide6.QtWidgets import QPushButton

    cancel = [x for x in b.presenter.download_dialog.findChildren(QPushButton) if x.text() == "Cancel"]
    cancel[0].click()  # what a person does
    assert b.presenter.download is None and b.window.start_button.isEnabled()
    assert task.join(5) and not b.dialogs.open_boxes and b.ctl.state == c.IDLE


def test_real_hub_client_offline_is_quick_and_clear(monkeypatch, tmp_path: Path) -> None:
    from app.download import fetch_files, hub_resolver
    from app.models import ModelChoice

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    t0 = time.monotonic()
    with pytest.raises(OfflineError, match="HF_HUB_OFFLINE"):
        fetch_files(ModelChoice(), lambda *a: None, threading.Event(), hub_resolver)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://moshi-test.invalid")
    with pytest.raises(OfflineError, match="cannot be reached"):
        fetch_files(ModelChoice(), lambda *a: None, threading.Event(), hub_resolver)
    assert time.monotonic() - t0 < 10


def test_settings_are_remembered_and_typed(qtbot, tmp_path: Path) -> None:
    path = str(tmp_path / "s.ini")
    s = AppSettings(QSettings(path, QSettings.Format.IniFormat))
    assert (s.voice, s.precision, s.local_folder, s.temperature, s.echo_cancellation) == (
        "moshiko",
        "q4",
        "",
        0.8,
        True,
    )
    s.voice, s.precision, s.temperature, s.echo_cancellation = "moshika", "bf16", 0.6, False
    s.input_device, s.output_device, s.local_folder = "USB Mic", "Speakers", "/w"
    s.sync()
    r = AppSettings(QSettings(path, QSettings.Format.IniFormat))  # an INI file stores strings: types come back
    assert (r.voice, r.precision, r.temperature, r.echo_cancellation) == ("moshika", "bf16", 0.6, False)
    assert (r.input_device, r.output_device, r.local_folder) == ("USB Mic", "Speakers", "/w")
    raw = QSettings(path, QSettings.Format.IniFormat)
    raw.setValue("model/voice", "nobody")
    raw.setValue("sampling/temperature", "warm")
    raw.sync()
    r = AppSettings(QSettings(path, QSettings.Format.IniFormat))
    assert r.voice == "moshiko" and r.temperature == 0.8
    # the echo option was first saved as "echo suppression": a choice saved then is kept
    assert raw.value("audio/echo_suppression") in ("false", False) and not r.echo_cancellation
    with pytest.raises(ValueError):
        r.precision = "q3"


def test_window_shows_remembered_choices_and_device_changes(make_app) -> None:
    a = make_app(folder=False)
    a.close()
    a.settings.voice, a.settings.precision, a.settings.temperature = "moshika", "q8", 0.65
    a.settings.output_device = "Fake Speakers"
    b = make_app(folder=False)
    b.settings = a.settings
    w = b.window
    b.presenter.settings = a.settings
    b.presenter._load_settings()
    b.ctl.refresh_devices()
    assert w.voice_combo.currentData() == "moshika" and w.precision_combo.currentData() == "q8"
    assert w.temperature_spin.value() == pytest.approx(0.65)
    items = [w.output_combo.itemText(i) for i in range(w.output_combo.count())]
    assert items == ["System default (Fake Speakers)", "Fake Speakers"]
    assert w.output_combo.currentData() == "Fake Speakers"
    # a device appears: the list follows
    b.backend.devices.append(
        {
            "name": "USB Headset",
            "index": 2,
            "hostapi": 0,
            "max_input_channels": 1,
            "max_output_channels": 2,
            "default_samplerate": 16000,
        }
    )
    b.ctl.refresh_devices()
    assert w.input_combo.findData("USB Headset") > 0 and w.output_combo.findData("USB Headset") > 0
    w.input_combo.setCurrentIndex(w.input_combo.findData("USB Headset"))
    w.input_combo.activated.emit(w.input_combo.currentIndex())
    assert b.settings.input_device == "USB Headset"
    b.backend.devices.pop()
    b.ctl.refresh_devices()
    assert w.input_combo.currentText() == "USB Headset (not connected)"


def test_folder_resolution_and_precision(tmp_path: Path) -> None:
    from app.models import describe_precision, resolve_folder

    f = resolve_folder(write_fake_weights(tmp_path / "q8", bits=8))
    assert f.quantization == "8-bit" and f.files.moshi.name == "model.q8.safetensors" and f.files.config is None
    assert f.files.mimi.name.startswith("tokenizer-") and f.files.tokenizer.suffix == ".model" and f.label == "q8"
    assert describe_precision(tmp_path / "missing.safetensors") == "unknown"
    with pytest.raises(Exception, match="does not exist"):
        resolve_folder(tmp_path / "nowhere")


def test_qt_binding_keeps_references_to_none(qtbot) -> None:
    """PySide6 6.12.0 under Python < 3.12 loses a reference to None per void call: a live app then
    aborts within a minute (`none_dealloc`). pyproject excludes that release; this catches another."""
    import sys

    from PySide6.QtWidgets import QCheckBox

    box = QCheckBox()
    qtbot.addWidget(box)
    before = sys.getrefcount(None)
    for _ in range(500):
        box.setEnabled(True)
        box.setChecked(False)
        box.setText("x")
    assert sys.getrefcount(None) >= before - 5


def test_main_opens_the_window_and_exits_cleanly(qtbot, tmp_path: Path, monkeypatch) -> None:
    """`python -m app` as a person starts it (real sound card backend, real settings store)."""
    import sys

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.__main__ import main

    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path))
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    seen = {}

    def look_and_close() -> None:
        win = next(w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible())
        seen["title"], seen["button"] = win.windowTitle(), win.start_button.text()
        win.close()

    QTimer.singleShot(300, look_and_close)
    before = _thread_names()
    try:
        assert main([]) == 0
    finally:
        QSettings.setDefaultFormat(QSettings.Format.NativeFormat)
    assert seen == {"title": "Moshi", "button": "Start"}
    assert _thread_names() == before
    assert list(tmp_path.rglob("Moshi.ini")), "settings were saved"


class _CountingEcho:
    """Stands in for moshi_mlx.dialog.echo.EchoCanceller: the loop's calls, counted."""

    made: list[_CountingEcho] = []

    def __init__(self, suppress: float = 0.0) -> None:
        self.suppress = suppress
        self.processed = self.resets = self.reference = 0
        _CountingEcho.made.append(self)

    def reset(self) -> None:
        self.resets += 1

    def push_reference(self, far) -> None:
        self.reference += len(far)

    def process(self, mic):
        self.processed += 1
        return mic

    def skip(self, n: int) -> None:
        pass


def _counting_echo_app(qtbot, tmp_path: Path) -> tuple[AppSettings, MainWindow, c.Controller, Presenter]:
    """A window on the scripted model and fake devices whose echo cancellers are _CountingEcho."""
    settings = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    settings.local_folder = str(write_fake_weights(tmp_path / "weights"))
    window = MainWindow()
    qtbot.addWidget(window, before_close_func=lambda _w: p.shutdown())
    ctl = c.Controller(
        audio_backend=LiveFakeBackend(), echo_factory=lambda: _CountingEcho, recordings=tmp_path / "rec", parent=window
    )
    p = Presenter(window, ctl, settings, Dialogs(window), model_factory=lambda f, t: ScriptModel, device_poll_ms=0)
    return settings, window, ctl, p


def _converse(qtbot, window: MainWindow, ctl: c.Controller) -> None:
    """Start, until Moshi has said something, then Stop."""
    window.start_button.click()
    qtbot.waitUntil(lambda: ctl.state == c.RUNNING, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: bool(window.transcript.last_conversation_text()), timeout=WAIT_MS)
    window.start_button.click()
    qtbot.waitUntil(lambda: ctl.state == c.READY, timeout=WAIT_MS)


def test_echo_cancellation_setting_reaches_the_loop(qtbot, tmp_path: Path) -> None:
    settings, window, ctl, p = _counting_echo_app(qtbot, tmp_path)
    assert window.echo_check.isEnabled() and window.echo_check.isChecked()  # on by default
    # named for what it does (cancels Moshi's echo; the user's voice is not suppressed), explained on hover
    assert window.echo_check.text() == "Echo cancellation"
    assert "Moshi's own voice" in window.echo_check.toolTip() and "interrupt" in window.echo_check.toolTip()
    _CountingEcho.made.clear()
    for on in (True, False):
        window.echo_check.setChecked(on)
        assert settings.echo_cancellation is on
        _converse(qtbot, window, ctl)
    assert len(_CountingEcho.made) == 1  # only the first conversation had one
    echo = _CountingEcho.made[0]
    assert echo.processed >= 1 and echo.resets == 1 and echo.reference > 0
    assert p.shutdown()
    # without an echo canceller in the installation the option is greyed out
    w2 = MainWindow()
    qtbot.addWidget(w2, before_close_func=lambda _w: p2.shutdown())
    ctl2 = c.Controller(audio_backend=LiveFakeBackend(), echo_factory=None, recordings=tmp_path / "rec2", parent=w2)
    p2 = Presenter(w2, ctl2, settings, Dialogs(w2), device_poll_ms=0)
    assert not w2.echo_check.isEnabled() and not w2.echo_check.isChecked()
    assert w2.echo_check.toolTip() == "Echo cancellation is not available in this installation"
    assert p2.shutdown()


def test_residual_echo_suppressor_checkbox_reaches_the_loop(qtbot, tmp_path: Path) -> None:
    settings, window, ctl, p = _counting_echo_app(qtbot, tmp_path)
    window.show()
    qtbot.waitExposed(window)
    box = window.suppressor_check
    # off by default, under echo cancellation, and says what it costs
    assert box.isEnabled() and not box.isChecked()
    assert "leftover echo" in box.text() and "dull your voice" in box.toolTip()
    _CountingEcho.made.clear()
    _converse(qtbot, window, ctl)
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton)  # the real checkbox, clicked
    assert box.isChecked() and settings.echo_suppressor
    _converse(qtbot, window, ctl)
    # the loop's echo canceller was built without, then with its suppressor (as --echo-suppressor does)
    assert [e.suppress for e in _CountingEcho.made] == [0.0, 1.0]
    assert all(e.processed >= 1 for e in _CountingEcho.made)
    # it works on echo cancellation's output: without that it is greyed out
    window.echo_check.setChecked(False)
    assert not box.isEnabled()
    window.echo_check.setChecked(True)
    assert box.isEnabled() and box.isChecked()
    assert p.shutdown()
    # remembered for the next run
    w2 = MainWindow()
    qtbot.addWidget(w2, before_close_func=lambda _w: p2.shutdown())
    ctl2 = c.Controller(audio_backend=LiveFakeBackend(), echo_factory=lambda: _CountingEcho, parent=w2)
    s2 = AppSettings(QSettings(str(tmp_path / "s.ini"), QSettings.Format.IniFormat))
    p2 = Presenter(w2, ctl2, s2, Dialogs(w2), device_poll_ms=0)
    assert w2.suppressor_check.isChecked()
    assert p2.shutdown()


def test_downloads_are_checked_against_memory_first(monkeypatch) -> None:
    from app import download
    from app.models import ModelChoice
    from moshi_mlx.loading.memory import check_download_fits

    seen = {}

    def resolve(repo, quant, **kw):
        seen.update(kw)
        raise MemoryBudgetError("The bf16 Moshi model needs about 15.1 GiB. Nothing was downloaded.")

    monkeypatch.setattr(download.hub, "resolve_model_files", resolve)
    with pytest.raises(MemoryBudgetError, match="Nothing was downloaded"):
        download.fetch_files(ModelChoice(), lambda *a: None, threading.Event())
    assert seen["before_download"] is check_download_fits


# -- what a person does: the real buttons, menu items and keys ---------------------------------------
def _talk(a: App, words: int = len(SCRIPT)) -> None:
    """One conversation through the Start and Stop buttons, until Moshi said `words` words."""
    from PySide6.QtCore import Qt

    a.qtbot.mouseClick(a.window.start_button, Qt.MouseButton.LeftButton)
    a.wait_state(c.RUNNING)
    want = " ".join(SCRIPT[:words])
    a.qtbot.waitUntil(lambda: a.window.transcript.last_conversation_text().startswith(want), timeout=WAIT_MS)
    a.qtbot.mouseClick(a.window.start_button, Qt.MouseButton.LeftButton)
    a.wait_state(c.READY)


def _answer_folder(monkeypatch, folder: Path | None) -> list:
    """The system's folder picker answers `folder` (None: the person cancels it); returns the questions."""
    from PySide6.QtWidgets import QFileDialog

    asked = []

    def pick(*args, **kw) -> str:
        asked.append(args)
        return "" if folder is None else str(folder)

    monkeypatch.setattr(QFileDialog, "getExistingDirectory", staticmethod(pick))
    return asked


def _check_saved(dest: Path, text: str) -> None:
    """A saved conversation: both voices, and the words the window showed (`text` or more)."""
    import soundfile as sf

    assert {p.name for p in dest.iterdir()} == {"user.wav", "moshi.wav", "transcript.jsonl", "transcript.txt"}
    assert (dest / "transcript.txt").read_text().strip().startswith(text)
    user, sr = sf.read(dest / "user.wav")
    assert sr == 24000 and user.size >= 2 * 1920


def test_save_by_button_menu_and_ctrl_s(make_app, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtCore import Qt

    picked = tmp_path / "picked"
    picked.mkdir()
    asked = _answer_folder(monkeypatch, picked)
    a = make_app()
    w = a.window
    _talk(a)
    a.qtbot.mouseClick(w.save_button, Qt.MouseButton.LeftButton)
    w.save_action.trigger()
    w.activateWindow()
    a.qtbot.waitUntil(w.isActiveWindow, timeout=2000)
    a.qtbot.keyClick(w, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert not a.dialogs.open_boxes, [b.informativeText() for b in a.dialogs.open_boxes]
    assert len(asked) == 3
    saved = sorted(picked.iterdir())
    assert len(saved) == 3 and all(p.name.startswith("moshi-conversation-") for p in saved)  # none replaced
    for dest in saved:
        _check_saved(dest, " ".join(SCRIPT))
    assert w.status.currentMessage().startswith("Saved to ")
    # a cancelled folder picker saves nothing and says nothing
    _answer_folder(monkeypatch, None)
    a.qtbot.mouseClick(w.save_button, Qt.MouseButton.LeftButton)
    assert len(list(picked.iterdir())) == 3 and not a.dialogs.open_boxes


def _answer_quit_question(window, button) -> list:
    """Presses `button` (a QMessageBox.StandardButton) in the question that quitting `window` asks, if it
    asks within 3 s while the window is open; returns the question's texts."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QMessageBox

    seen: list[str] = []
    deadline = time.monotonic() + 3.0

    def press() -> None:
        box = QApplication.activeModalWidget()
        if not (isinstance(box, QMessageBox) and box.objectName() == "quitDialog"):
            if window.isVisible() and time.monotonic() < deadline:  # not yet (or never: `seen` stays empty)
                QTimer.singleShot(20, press)
            return
        seen.append(box.text() + "\n" + box.informativeText())
        box.button(button).click()

    QTimer.singleShot(0, press)
    return seen


def test_quitting_with_an_unsaved_conversation_asks_first(make_app, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    picked = tmp_path / "picked"
    picked.mkdir()
    _answer_folder(monkeypatch, picked)
    a = make_app()
    w = a.window
    _talk(a, words=3)
    _talk(a, words=3)
    # Cancel: the window stays open, the model and the recordings too
    seen = _answer_quit_question(a.window, QMessageBox.StandardButton.Cancel)
    w.quit_action.trigger()
    assert seen and "2 conversations" in seen[0]
    assert w.isVisible() and a.ctl.state == c.READY
    seen = _answer_quit_question(a.window, QMessageBox.StandardButton.Cancel)
    w.close()  # the window's close button
    assert seen and w.isVisible() and a.ctl.state == c.READY
    # Save while a third conversation runs: it ends, all three are saved, then the app quits
    w.start_button.click()
    a.qtbot.waitUntil(lambda: "CONVERSATION 3" in w.transcript.toPlainText(), timeout=WAIT_MS)
    a.qtbot.waitUntil(lambda: w.transcript.last_conversation_text().startswith(" ".join(SCRIPT[:3])), timeout=WAIT_MS)
    assert a.ctl.state == c.RUNNING
    seen = _answer_quit_question(a.window, QMessageBox.StandardButton.Save)
    w.quit_action.trigger()
    assert seen and "3 conversations" in seen[0] and not w.isVisible() and a.ctl.state == c.IDLE
    saved = sorted(picked.iterdir())
    assert len(saved) == 3
    for dest in saved:
        _check_saved(dest, " ".join(SCRIPT[:3]))


def test_quitting_can_discard_and_asks_nothing_once_saved(make_app, tmp_path: Path, monkeypatch) -> None:
    from PySide6.QtWidgets import QMessageBox

    a = make_app()
    _talk(a, words=3)
    seen = _answer_quit_question(a.window, QMessageBox.StandardButton.Discard)
    a.window.close()
    assert seen and "1 conversation " in seen[0] and not a.window.isVisible() and a.ctl.state == c.IDLE
    # saved already: quitting asks nothing
    picked = tmp_path / "picked"
    picked.mkdir()
    _answer_folder(monkeypatch, picked)
    b = make_app()
    _talk(b, words=3)
    b.window.save_action.trigger()
    assert len(list(picked.iterdir())) == 1
    seen = _answer_quit_question(b.window, QMessageBox.StandardButton.Cancel)
    b.window.quit_action.trigger()
    assert not seen and not b.window.isVisible()
    # the folder picker cancelled after Save: nothing is lost, the app stays open
    _answer_folder(monkeypatch, None)
    d = make_app()
    _talk(d, words=3)
    seen = _answer_quit_question(d.window, QMessageBox.StandardButton.Save)
    d.window.quit_action.trigger()
    assert seen and d.window.isVisible() and d.ctl.state == c.READY


def test_no_microphone_is_said_before_any_download_or_load(make_app, tmp_path: Path) -> None:
    speakers_only = [
        {
            "name": "Fake Speakers",
            "index": 0,
            "hostapi": 0,
            "max_input_channels": 0,
            "max_output_channels": 2,
            "default_samplerate": 48000,
        }
    ]
    downloads = []

    def resolver(choice, progress, cancelled):
        downloads.append(choice)
        raise AssertionError("no download without a microphone")

    backend = LiveFakeBackend(devices=speakers_only)
    backend.default = (-1, 0)
    a = make_app(folder=False, resolver=resolver, backend=backend)
    a.window.start_button.click()
    box = a.wait_error()
    text = box.text() + " " + box.informativeText()
    assert "microphone" in box.text().lower() and "Audio → Microphone" in text and "--" not in text
    assert downloads == [] and a.models == [] and a.ctl.state == c.IDLE and a.presenter.download is None
    box.accept()
    # with a folder of weights: nothing is loaded either
    a.presenter.set_folder(str(write_fake_weights(tmp_path / "weights")))
    a.window.start_button.click()
    box = a.wait_error()
    assert "Audio → Microphone" in box.informativeText() and a.models == [] and a.ctl.state == c.IDLE


def test_an_error_during_a_conversation_is_one_dialog_and_the_recording_stays(
    make_app, tmp_path: Path, monkeypatch
) -> None:
    from PySide6.QtCore import Qt

    def failing(files, temperature):
        return lambda: ScriptModel(fail_at=12)

    picked = tmp_path / "picked"
    picked.mkdir()
    _answer_folder(monkeypatch, picked)
    a = make_app(factory=failing)
    w = a.window
    a.qtbot.mouseClick(w.start_button, Qt.MouseButton.LeftButton)
    box = a.wait_error()
    a.wait_state(c.READY)
    a.qtbot.wait(300)
    assert len(a.dialogs.open_boxes) == 1 and box.text() == "The conversation stopped"
    assert "model blew up" in box.informativeText() and "Traceback" not in box.informativeText()
    assert "stopped by an error" in w.transcript.toPlainText() and w.start_button.text() == "Start"
    box.accept()
    a.qtbot.mouseClick(w.save_button, Qt.MouseButton.LeftButton)
    (dest,) = picked.iterdir()
    _check_saved(dest, " ".join(SCRIPT[:6]))
    events = [json.loads(x) for x in (dest / "transcript.jsonl").read_text().splitlines()]
    errors = [e["message"] for e in events if e.get("type") == "error"]
    assert errors == ["the dialog stopped: RuntimeError('model blew up')"]


def test_the_library_names_no_command_line_flag() -> None:
    """No message text in the library names a command-line flag: errors carry a `Setting` hint that each
    front end words (modules only the command line uses are left out; install commands stay)."""
    import ast
    import re

    root = Path(__file__).resolve().parents[2] / "moshi_mlx"
    flag = re.compile(r"(?<![\w-])--[a-z][a-z-]+")
    install = re.compile(r"`(?:pip|sudo|apt-get|brew) [^`]*`")
    cli_only = ("run.py", "transcribe.py", "dialog/console.py", "__main__.py")
    left = []
    for path in sorted(root.rglob("*.py")):
        if path.relative_to(root).as_posix() in cli_only or path.relative_to(root).parts[0] in ("bench", "cli"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docs = {
            id(n.body[0].value)
            for n in ast.walk(tree)
            if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef)) and n.body and isinstance(n.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            literal = isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs
            if literal and flag.search(install.sub("", node.value)):
                left.append(f"{path.relative_to(root)}: {node.value!r}")
    assert not left, "\n".join(left)


@pytest.mark.parametrize("setting", list(Setting))
def test_each_hint_is_worded_by_the_window_and_the_command_line(setting) -> None:
    from app.wording import for_window
    from moshi_mlx.cli.wording import for_cli

    error = MoshiError("something failed.", hint=setting)
    shown, said = for_window(error), for_cli(error)
    assert shown.startswith("something failed. ") and "→" in shown and "--" not in shown, shown
    assert said.startswith("something failed. ") and re.search(r"(?<![\w-])--?[a-z]", said), said
    assert for_window(MoshiError("no hint.")) == for_cli(MoshiError("no hint.")) == "no hint."


def _leaf_widgets(window) -> list:
    """The visible widgets a person reads or clicks (not the parts of a combo box or spin box)."""
    from PySide6.QtWidgets import QAbstractButton, QAbstractSpinBox, QComboBox, QLabel, QLineEdit, QWidget

    from app.widgets.meters import LevelMeter
    from app.widgets.transcript import TranscriptView

    kinds = (QLabel, QAbstractButton, QComboBox, QLineEdit, QAbstractSpinBox, LevelMeter, TranscriptView)
    found = [x for x in window.findChildren(QWidget) if isinstance(x, kinds) and x.isVisibleTo(window)]
    inside = set()
    for x in found:
        p = x.parentWidget()
        while p is not None and p is not window:
            if p in found:
                inside.add(x)
            p = p.parentWidget()
    return [x for x in found if x not in inside]


def _text_fits(x) -> bool:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QAbstractButton, QLabel

    if isinstance(x, QLabel) and x.text():
        r, fm = x.contentsRect(), x.fontMetrics()
        if x.wordWrap():
            return fm.boundingRect(r, Qt.TextFlag.TextWordWrap, x.text()).height() <= r.height()
        return fm.horizontalAdvance(x.text()) <= r.width() and fm.height() <= r.height()
    if isinstance(x, QAbstractButton):
        hint = x.sizeHint()  # what its text (and padding) needs
        return hint.width() <= x.width() and hint.height() <= x.height()
    return True


def test_the_window_at_its_minimum_size_fits_every_text_and_nothing_overlaps(make_app) -> None:
    from PySide6.QtCore import QRect, Qt
    from PySide6.QtWidgets import QApplication

    from app.presenter import _BUTTON, _STATE_TEXT, ENDED, ENDED_BY_ERROR

    a = make_app()
    w = a.window
    a.presenter.set_folder("/models/" + "a-long-fine-tuned-moshi-folder-name-" * 3)  # the status bar shortens it
    w.resize(1, 1)
    a.qtbot.waitUntil(lambda: w.size() == w.minimumSize(), timeout=2000)
    QApplication.processEvents()
    small = w.size()
    assert small.width() <= 900 and small.height() <= 500, small  # room for it on a small laptop screen

    def check(what: str) -> None:
        QApplication.processEvents()
        assert w.size() == small, f"{what}: the window grew to {w.size()}"
        leaves = _leaf_widgets(w)
        rects = {x: QRect(x.mapTo(w, x.rect().topLeft()), x.size()) for x in leaves}
        for x, r in rects.items():
            name = f"{type(x).__name__} {getattr(x, 'text', lambda: '')()!r}"
            assert w.rect().contains(r), f"{what}: {name} at {r} leaves the window"
            assert _text_fits(x), f"{what}: the text of {name} ({r.width()}x{r.height()}) does not fit"
        for i, x in enumerate(leaves):
            for y in leaves[i + 1 :]:
                assert not rects[x].intersects(rects[y]), f"{what}: {x} {rects[x]} overlaps {y} {rects[y]}"
        hint = w.transcript.hint_rect()
        fm = w.transcript.fontMetrics()
        assert fm.boundingRect(hint, Qt.TextFlag.TextWordWrap, w.transcript.hint).height() <= hint.height()

    check("idle")
    for state, (button, _enabled, _running) in _BUTTON.items():
        w.start_button.setText(button)
        w.status.set_state(_STATE_TEXT[state])
        check(state)
    for text in (ENDED, ENDED_BY_ERROR):
        w.status.set_state(text)
        check(text)
    w.mute_action.trigger()
    check("muted")
    w.status.set_stats(12.34, 12345, 99999)
    check("slow machine")


def test_a_full_disk_stops_the_recording_with_one_dialog_and_keeps_what_was_written(
    make_app, tmp_path: Path, monkeypatch
) -> None:
    """The recorder's disk fills up mid-conversation (an injected ENOSPC): one dialog, the talk goes on,
    and Save keeps what was written before."""
    import errno

    from PySide6.QtCore import Qt

    from moshi_mlx.dialog.recorder import Recorder

    class FullDisk(Recorder):
        writes = 0

        def _write(self, item) -> None:
            FullDisk.writes += 1
            if FullDisk.writes > 12:
                raise OSError(errno.ENOSPC, "No space left on device")
            super()._write(item)

    monkeypatch.setattr(c, "Recorder", FullDisk)
    picked = tmp_path / "picked"
    picked.mkdir()
    _answer_folder(monkeypatch, picked)
    a = make_app()
    w = a.window
    a.qtbot.mouseClick(w.start_button, Qt.MouseButton.LeftButton)
    box = a.wait_error()
    assert box.text() == "Recording stopped" and "No space left on device" in box.informativeText()
    assert a.ctl.state == c.RUNNING  # the conversation goes on
    a.qtbot.waitUntil(lambda: w.transcript.last_conversation_text().endswith(SCRIPT[-1]), timeout=WAIT_MS)
    assert len(a.dialogs.open_boxes) == 1
    box.accept()
    a.qtbot.mouseClick(w.start_button, Qt.MouseButton.LeftButton)
    a.wait_state(c.READY)
    a.qtbot.mouseClick(w.save_button, Qt.MouseButton.LeftButton)
    (dest,) = picked.iterdir()
    import soundfile as sf

    user, sr = sf.read(dest / "user.wav")
    assert sr == 24000 and user.size > 0 and not a.dialogs.open_boxes


def test_memory_advice_names_the_precision_setting(monkeypatch) -> None:
    from app.wording import for_window
    from moshi_mlx.loading import memory

    monkeypatch.setattr(memory, "available_bytes", lambda: 2**30)
    with pytest.raises(MemoryBudgetError) as e:
        memory.check_download_fits(None)
    assert for_window(e.value).endswith("Nothing was downloaded. Choose 4-bit under Model → Precision.")


def test_an_argument_neither_the_app_nor_qt_knows_is_refused() -> None:
    """`python -m app --rest-settings` (a typo) opened the window, the settings kept: anything argparse did not
    take went to Qt, which takes its own options (-style, -platform...) and ignores what it does not know."""
    from support.cli import assert_one_line_error, run_module

    r = run_module("app", "--rest-settings", "-style", "fusion", "extra", timeout=60)
    assert_one_line_error(r, 2, "unrecognized arguments: --rest-settings extra")


def test_quitting_while_the_model_loads_closes_at_once(make_app, monkeypatch) -> None:
    """Quit while the model loads (the 7B reads for tens of seconds): the window goes at once, and the loading
    thread ends on its own once built (process exit does not wait for it, see mlx_thread). The window froze until
    the load was done (up to 30 s). The model built after the window is gone says so to no one, without a traceback."""
    import shiboken6

    gate, built = threading.Event(), []

    def slow(files, temperature):
        def build() -> ScriptModel:
            gate.wait(10)
            built.append(ScriptModel())
            return built[-1]

        return build

    a = make_app(factory=slow)
    a.window.start_button.click()
    assert a.ctl.state == c.LOADING
    a.window.quit_action.trigger()
    assert not a.window.isVisible() and a.ctl.state == c.IDLE
    assert not built, "the window waited for the model to load"
    # the app's objects go as main() returns, before the model is built: the loop then has no one to tell
    crashed = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)
    shiboken6.delete(a.ctl)
    gate.set()
    a.qtbot.waitUntil(lambda: "moshi-model-loop" not in _thread_names(), timeout=WAIT_MS)
    assert len(built) == 1 and built[0].steps == 0
    assert not crashed, [str(x.exc_value) for x in crashed]


def test_saving_says_whether_the_recording_or_the_chosen_folder_is_at_fault(
    make_app, tmp_path: Path, monkeypatch
) -> None:
    """A file picked as the folder is named as picked (not the hidden `.part` copy under it); a recording whose
    folder was removed while the app ran (a temporary-folder cleaner) is said to be gone, with what is left to do:
    it was "<the recording>: No such file or directory. Pick another folder", and no folder could help."""
    import shutil

    from PySide6.QtCore import Qt

    a = make_app()
    _talk(a, words=3)
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    _answer_folder(monkeypatch, a_file)
    a.qtbot.mouseClick(a.window.save_button, Qt.MouseButton.LeftButton)
    box = a.wait_error()
    assert box.text() == "Could not save the conversation"
    assert box.informativeText() == f"{a_file}: Not a directory. Pick another folder."
    box.accept()
    a.qtbot.waitUntil(lambda: not a.dialogs.open_boxes, timeout=2000)
    picked = tmp_path / "picked"
    picked.mkdir()
    _answer_folder(monkeypatch, picked)
    shutil.rmtree(a.ctl.recordings)
    a.window.save_action.trigger()
    box = a.wait_error()
    assert box.text() == "Could not save the conversation"
    message = box.informativeText()
    assert "recording is gone" in message and "Pick another folder" not in message, message
    assert "File → Copy transcript" in message, message
    assert list(picked.iterdir()) == []


def test_settings_that_cannot_be_kept_are_said_once_at_launch(qtbot, tmp_path: Path) -> None:
    """The settings file is a folder (or unreadable, or its folder read-only): the window opens with the defaults
    and one dialog naming the file, so that choices made now are not silently forgotten at quit (QSettings ignores
    the failure: nothing was said)."""
    (tmp_path / "settings.ini").mkdir()
    a = App(qtbot, tmp_path)
    box = a.wait_error()
    assert box.text() == "Your choices will not be remembered"
    assert box.informativeText().startswith(f"{tmp_path / 'settings.ini'} is a folder"), box.informativeText()
    assert len(a.dialogs.open_boxes) == 1
    box.accept()
    a.window.start_button.click()  # the app works on
    a.wait_state(c.RUNNING)
    a.window.start_button.click()
    a.wait_state(c.READY)
    a.close()
    b = App(qtbot, tmp_path / "fine")  # a file that can be kept: nothing said
    assert not b.dialogs.open_boxes
    b.close()


def test_a_recording_whose_folder_is_removed_mid_conversation_is_said_at_once(make_app) -> None:
    """The recordings folder is removed while Moshi talks (a temporary-folder cleaner, a person tidying up): the
    recorder wrote on into the deleted files, everything lost, and nothing was said until Save. Now one dialog
    within a second (the recorder's next sync), which promises nothing about Save, and the conversation goes on."""
    import shutil

    a = make_app()
    w = a.window
    w.start_button.click()
    a.wait_state(c.RUNNING)
    a.qtbot.waitUntil(lambda: len(w.transcript.last_conversation_text().split()) >= 2, timeout=WAIT_MS)
    shutil.rmtree(a.ctl.recordings)
    box = a.wait_error()
    assert box.text() == "Recording stopped" and "were deleted" in box.informativeText(), box.informativeText()
    assert "Save keeps" not in box.informativeText() and "is kept" not in box.informativeText()
    assert a.ctl.state == c.RUNNING  # the conversation goes on
    a.qtbot.waitUntil(lambda: w.transcript.last_conversation_text().endswith(SCRIPT[-1]), timeout=WAIT_MS)
    assert len(a.dialogs.open_boxes) == 1
    w.start_button.click()
    a.wait_state(c.READY)
