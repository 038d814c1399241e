"""ModelLoop with fake audio devices and fake models: no sound card, no MLX."""

from __future__ import annotations

import json
import queue
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from moshi_mlx.audio.devices import AudioIO
from moshi_mlx.audio.fake import FakeClock, FakeStreamFactory
from moshi_mlx.dialog.events import (
    TOO_SLOW_RTF,
    Closed,
    Error,
    FrameResult,
    Loaded,
    RecordingStopped,
    SessionEnded,
    SessionStarted,
    Skipped,
    Stats,
    Text,
    Word,
    too_slow,
)
from moshi_mlx.dialog.loop import FRAME, ModelLoop
from moshi_mlx.dialog.recorder import Recorder, recording_paths
from support.fake_models import EchoModel


def _drain(q: queue.SimpleQueue) -> list:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def _wait_for(q: queue.SimpleQueue, kind: type, timeout: float = 20.0) -> tuple[object, list]:
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ev = q.get(timeout=0.05)
        except queue.Empty:
            continue
        seen.append(ev)
        if isinstance(ev, kind):
            return ev, seen
    raise AssertionError(f"no {kind.__name__} within {timeout} s; saw {[type(e).__name__ for e in seen]}")


def _signal(n: int, seed: int = 0) -> np.ndarray:
    """Never zero (so inserted silence is visible) and exact in 16-bit wav."""
    rng = np.random.default_rng(seed)
    return (rng.integers(1000, 20000, n) * rng.choice([-1, 1], n) / 32768).astype(np.float32)


def _session(rate_in=24000, rate_out=24000, speed=4.0, prebuffer_ms=0.0):
    b = FakeStreamFactory(input_rate=rate_in, output_rate=rate_out)
    io = AudioIO(backend=b, prebuffer_ms=prebuffer_ms)
    return b, io


def _started(loop: ModelLoop, mic_frames: int, **session) -> FakeStreamFactory:
    """Opens a session on fake 24 kHz devices and queues `mic_frames` frames of signal at the microphone."""
    b, io = _session()
    loop.begin_session(io, **session)
    _wait_for(loop.events, SessionStarted)
    b.input.push_input(_signal(FRAME * mic_frames))
    return b


def _run_until_consumed(
    loop: ModelLoop, b: FakeStreamFactory, mic: np.ndarray, speed: float, extra_s: float = 0.4
) -> list:
    """Waits for the session to open (the streams exist from then), feeds `mic`, ticks until it is used up."""
    ev, seen = _wait_for(loop.events, SessionStarted)
    b.input.push_input(mic)
    with FakeClock([b.input, b.output], speed=speed):
        while b.input.pending_input() > 0:
            time.sleep(0.01)
        time.sleep(extra_s / speed)
        assert loop.end_session(10)
    return seen + _drain(loop.events)


def test_factory_and_steps_run_on_the_loop_thread_and_nothing_leaks(tmp_path: Path) -> None:
    before = threading.active_count()
    models: list[EchoModel] = []

    def factory() -> EchoModel:
        models.append(EchoModel())
        return models[-1]

    loop = ModelLoop(factory).start()
    assert loop.loaded.wait(5) and loop.load_error is None
    for i in range(12):  # start/stop many times: one thread, model built once, reset each time
        b, io = _session()
        loop.begin_session(io)
        _wait_for(loop.events, SessionStarted)
        b.input.push_input(_signal(FRAME * 3, i))
        with FakeClock([b.input, b.output], speed=8.0):
            time.sleep(0.05)
        assert loop.end_session(5)
        assert not loop.in_session
        assert b.input.closed and b.output.closed
    events = _drain(loop.events)
    loop.close()
    assert isinstance(_drain(loop.events)[-1], Closed) or any(isinstance(e, Closed) for e in events)
    assert len(models) == 1 and models[0].resets == 12
    assert len(models[0].threads) == 1 and threading.get_ident() not in models[0].threads  # one loop thread
    time.sleep(0.05)
    assert threading.active_count() == before


def test_model_is_built_on_the_loop_thread() -> None:
    where = []
    loop = ModelLoop(lambda: where.append(threading.current_thread().name) or EchoModel()).start()
    assert loop.loaded.wait(5)
    loop.close()
    assert where == ["moshi-model-loop"]
    assert _drain(loop.events)[0] == Loaded(pytest.approx(0.0, abs=5), ())


def test_the_models_notes_come_with_loaded() -> None:
    model = EchoModel()
    model.notes = ["Memory is tight: the attention cache is stored at 8 bits."]
    loop = ModelLoop(lambda: model).start()
    assert loop.loaded.wait(5)
    loop.close()
    assert _drain(loop.events)[0].notes == ("Memory is tight: the attention cache is stored at 8 bits.",)


def test_no_audio_lost_or_duplicated_when_the_model_keeps_up(tmp_path: Path) -> None:
    model = EchoModel(delay=1, text_every=5)
    loop = ModelLoop(lambda: model, max_lag_frames=50).start()  # a busy CI machine must not cause skips here
    b, io = _session()
    n_frames = 40
    mic = _signal(FRAME * n_frames)
    rec = Recorder(tmp_path / "rec")
    loop.begin_session(io, recorder=rec)
    events = _run_until_consumed(loop, b, mic, speed=4.0)
    loop.close()
    assert not [e for e in events if isinstance(e, (Skipped, Error))]
    # the model saw every input sample once, in order (then the silence the idle mic captured)
    seen = np.concatenate(model.inputs)
    np.testing.assert_array_equal(seen[: mic.size], mic)
    assert not seen[mic.size :].any()
    # the speaker played every answer sample once, in order (silence only where nothing was due)
    played = b.output.played()[:, 0]
    assert np.isfinite(played).all()
    voiced = played[played != 0]
    np.testing.assert_array_equal(voiced, mic[: voiced.size])
    assert voiced.size == n_frames * FRAME
    texts = [e for e in events if isinstance(e, Text)]
    assert [t.text for t in texts] == [f"w{k}" for k in range(0, len(model.inputs), 5)]
    assert texts[1].t == pytest.approx(5 * FRAME / 24000)
    ended = [e for e in events if isinstance(e, SessionEnded)]
    assert len(ended) == 1 and ended[0].reason == "stopped" and ended[0].frames_skipped == 0
    assert ended[0].frames == len(model.inputs) > n_frames
    stats = [e for e in events if isinstance(e, Stats)]
    assert len(stats) == ended[0].frames and stats[-1].rtf < 1
    # recording: both tracks on one timeline
    paths = recording_paths(tmp_path / "rec")
    user, _ = sf.read(paths.user_wav, dtype="float32")
    moshi, _ = sf.read(paths.moshi_wav, dtype="float32")
    np.testing.assert_array_equal(user[: mic.size], mic)
    assert user.size == moshi.size == ended[0].frames * FRAME
    np.testing.assert_array_equal(moshi[FRAME : mic.size + FRAME], mic)
    assert "w35" in paths.transcript.read_text()


@pytest.mark.parametrize("rate_in,rate_out", [(48000, 44100), (44100, 16000)])
def test_resampled_devices_keep_the_input_intact(rate_in: int, rate_out: int) -> None:
    model = EchoModel(delay=0, text_every=0)
    loop = ModelLoop(lambda: model, max_lag_frames=50).start()  # 25 frames of tone: a busy machine cannot skip
    b, io = _session(rate_in, rate_out)
    t = np.arange(rate_in * 2) / rate_in
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 2500 * t)).astype(np.float32)
    loop.begin_session(io)
    _wait_for(loop.events, SessionStarted)
    b.input.push_input(tone)
    deadline = time.monotonic() + 30
    with FakeClock([b.input, b.output], speed=4.0):
        while model.steps < 27 and time.monotonic() < deadline:  # the whole tone, however slow the loop
            time.sleep(0.01)
        assert loop.end_session(10)
    events = _drain(loop.events)
    loop.close()
    assert not [e for e in events if isinstance(e, (Skipped, Error))]
    got = np.concatenate(model.inputs)[:48000]
    assert got.size == 48000
    want = (
        0.3 * np.sin(2 * np.pi * 440 * np.arange(48000) / 24000)
        + 0.2 * np.sin(2 * np.pi * 2500 * np.arange(48000) / 24000)
    ).astype(np.float32)
    lag = int(np.argmax([np.dot(got[4000:20000], want[4000 + k : 20000 + k]) for k in range(-200, 200)])) - 200
    seg = slice(4000, got.size - 4000)
    err = got[seg] - want[seg.start + lag : seg.stop + lag]
    snr = 10 * np.log10(np.sum(want[seg] ** 2) / np.sum(err**2))
    assert snr > 60, snr  # a lost or repeated sample anywhere would wreck the alignment
    played = b.output.played()[:, 0]
    played = played[played != 0]  # a busy machine may leave gaps: judge the sound, not the timing
    spec = np.abs(np.fft.rfft(played * np.hanning(played.size)))
    freqs = np.fft.rfftfreq(played.size, 1 / rate_out)
    top = sorted(freqs[np.argsort(spec)[-40:]])  # both tones are in the answer
    assert any(abs(f - 440) < 5 for f in top) and any(abs(f - 2500) < 5 for f in top)


def test_slow_model_lag_stays_bounded_and_skips_are_reported(tmp_path: Path) -> None:
    speed = 4.0  # a 20 ms wall-clock frame; the model takes 45 ms per step: 2.25x too slow
    model = EchoModel(delay=0, text_every=0, step_s=0.045)
    loop = ModelLoop(lambda: model, max_lag_frames=2).start()
    b, io = _session()
    n_frames = 60
    mic = _signal(FRAME * n_frames, 3)
    rec = Recorder(tmp_path / "rec")
    loop.begin_session(io, recorder=rec)
    events = _run_until_consumed(loop, b, mic, speed=speed, extra_s=0.2)
    loop.close()
    skips = [e for e in events if isinstance(e, Skipped)]
    stats = [e for e in events if isinstance(e, Stats)]
    assert skips and skips[-1].total == sum(s.frames for s in skips)
    assert all(s.lag_s >= 3 * FRAME / 24000 for s in skips)  # skipped only past the bound
    assert max(s.lag_ms for s in stats) < 3 * 80  # never more than 2 whole frames behind
    assert stats[-1].rtf == pytest.approx(45 / 80, rel=0.3)  # wall-clock step time over a real-time frame
    ended = next(e for e in events if isinstance(e, SessionEnded))
    # frames still waiting when the session was stopped are neither used nor skipped
    assert ended.frames >= n_frames - 3 and ended.frames_skipped == skips[-1].total
    assert model.steps + ended.frames_skipped == ended.frames  # every frame used or reported
    # the recording keeps the skipped microphone audio, so it stays on the wall-clock timeline
    user, _ = sf.read(recording_paths(tmp_path / "rec").user_wav, dtype="float32")
    n = min(user.size, mic.size)
    np.testing.assert_array_equal(user[:n], mic[:n])
    assert user.size == ended.frames * FRAME and not user[mic.size :].any()
    assert '"type": "skipped"' in recording_paths(tmp_path / "rec").transcript.read_text()


def test_device_error_ends_cleanly_and_keeps_the_recording(tmp_path: Path) -> None:
    model = EchoModel(delay=0)
    loop = ModelLoop(lambda: model).start()
    b = _started(loop, 200, recorder=Recorder(tmp_path / "rec"))
    with FakeClock([b.input, b.output], speed=4.0):
        while model.steps < 10:
            time.sleep(0.01)
        b.input.fail("unplugged")
        err, seen = _wait_for(loop.events, Error, 5)
    ended, _ = _wait_for(loop.events, SessionEnded, 5)
    assert "input device" in err.message and "recording so far is kept" in err.message
    assert ended.reason == "error" and ended.frames >= 10
    assert not loop.in_session and b.output.closed
    user, _ = sf.read(recording_paths(tmp_path / "rec").user_wav, dtype="float32")
    assert user.size == ended.frames * FRAME
    assert "unplugged" in str(b.input.failed)
    assert '"type": "error"' in recording_paths(tmp_path / "rec").transcript.read_text()
    # the loop is still usable: a new session on a new device works
    b2, io2 = _session()
    loop.begin_session(io2)
    _run_until_consumed(loop, b2, _signal(FRAME * 4), speed=4.0)
    loop.close()
    assert model.steps >= ended.frames + 4


def test_model_failure_and_build_failure_are_events() -> None:
    model = EchoModel(fail_at=3)
    loop = ModelLoop(lambda: model).start()
    b = _started(loop, 10)
    with FakeClock([b.input, b.output], speed=4.0):
        err, _ = _wait_for(loop.events, Error, 5)
    assert "model blew up" in err.message
    loop.close()

    def broken():
        raise ValueError("weights missing")

    loop = ModelLoop(broken).start()
    assert loop.loaded.wait(5) and "weights missing" in (loop.load_error or "")
    loop.begin_session(_session()[1])
    ended, _ = _wait_for(loop.events, SessionEnded, 5)
    assert ended.reason == "error"
    loop.close()


def test_reset_starts_a_new_conversation_without_reloading() -> None:
    built = []
    model = EchoModel(delay=3)
    loop = ModelLoop(lambda: built.append(1) or model).start()
    b = _started(loop, 30)
    with FakeClock([b.input, b.output], speed=4.0):
        while model.steps < 5:
            time.sleep(0.005)
        loop.reset()
        while model.steps < 12:
            time.sleep(0.005)
    loop.end_session()
    loop.close()
    assert built == [1] and model.resets == 2  # session start + reset


def test_mute_feeds_the_model_silence_and_the_dialog_goes_on(tmp_path: Path) -> None:
    model = EchoModel(delay=1, text_every=0)
    loop = ModelLoop(lambda: model, max_lag_frames=50).start()
    b = _started(loop, 40, recorder=Recorder(tmp_path / "rec"))
    with FakeClock([b.input, b.output], speed=4.0):
        while model.steps < 10:
            time.sleep(0.002)
        loop.set_muted(True)
        assert loop.muted
        while model.steps < 22:
            time.sleep(0.002)
        loop.set_muted(False)
        while model.steps < 32:
            time.sleep(0.002)
    assert loop.end_session(10)
    loop.close()
    heard = [bool(x.any()) for x in model.inputs[:32]]
    first_muted, first_back = heard.index(False), len(heard) - heard[::-1].index(False)
    assert 10 <= first_muted <= 12 and all(heard[:first_muted]) and not any(heard[first_muted:first_back])
    assert all(heard[first_back:]) and first_back >= 22
    paths = recording_paths(tmp_path / "rec")
    user, _ = sf.read(paths.user_wav, dtype="float32")
    assert not user[first_muted * FRAME : first_back * FRAME].any()  # the recording has what the model heard
    events = paths.transcript.read_text()
    assert '"mute"' in events and '"unmute"' in events


def test_output_queue_is_bounded_when_the_speaker_lags() -> None:
    model = EchoModel(delay=0, text_every=0)
    loop = ModelLoop(lambda: model, max_output_queue_s=0.2).start()
    b = _started(loop, 30)
    with FakeClock([b.input], speed=4.0):  # the speaker never pulls: its queue only grows
        while b.input.pending_input() > 0:
            time.sleep(0.01)
        time.sleep(0.1)
    loop.end_session()
    events = _drain(loop.events)
    loop.close()
    stats = [e for e in events if isinstance(e, Stats)]
    assert stats[-1].output_dropped > 20
    assert max(s.output_queued_ms for s in stats) < 200 + 80 + 1


def test_latency_measurement_hears_every_click_without_an_extra_frame() -> None:
    from moshi_mlx.bench.loop import measure_latency

    r = measure_latency(compute_s=0.01, rate_in=48_000, rate_out=44_100, seconds=1.5)
    assert r.clicks_heard == r.clicks_sent >= 4
    # bench figures (this machine): 10 ms added at 24 kHz devices (their 10 ms blocks), 21 ms with
    # resampling; an extra buffered frame would add 80 ms
    assert 0 < float(np.median(r.added_ms)) < 60 and min(r.added_ms) >= 0


def test_echo_canceller_in_the_loop_removes_the_played_voice() -> None:
    """Moshi's voice, played at 48 kHz into a room whose echo reaches the 48 kHz microphone, is heard by the
    model >= 10 dB quieter than the microphone holds it. The devices are ticked in step with the loop (80 ms
    blocks; after each, the test waits for the loop to take the microphone's block and step every whole frame
    it completes, then to read what the speaker played), so the loop sees the same audio in the same order
    on any machine: 24.6 dB every time, loaded or not. A free-running clock at 3x real time (before) let the
    machine's load decide what the canceller saw, through stalls and bursts of catch-up ticks: 22 to 32 dB
    from run to run, and a failure now and then. Stepping in 80 ms blocks also found the canceller's refit
    dividing by zero on a reference of digital silence: NaN from then on, which the model heard."""
    from moshi_mlx.audio.devices import StreamResampler
    from moshi_mlx.dialog.echo import EchoCanceller
    from support.signals import room_ir, speechlike

    voice = speechlike(14, 7, (150, 250))

    class Talker(EchoModel):  # says `voice`, frame after frame, whatever it hears; a text piece each frame
        def step(self, pcm: np.ndarray):
            r = super().step(pcm)
            k = self.steps - 1
            return r._replace(pcm=voice[k * FRAME : (k + 1) * FRAME].copy() if (k + 1) * FRAME <= voice.size else None)

    model = Talker(delay=0, text_every=1)
    loop = ModelLoop(lambda: model, max_lag_frames=50).start()
    b, io = _session(48000, 48000)
    h48 = np.repeat(room_ir(5, delay_ms=30), 2) / 2  # the room's response, at 48 kHz
    block = 2 * FRAME  # 80 ms at 48 kHz
    loop.begin_session(io, echo=EchoCanceller())
    _wait_for(loop.events, SessionStarted)

    def until(done, what: str) -> None:
        deadline = time.monotonic() + 20
        while not done():
            assert time.monotonic() < deadline, f"the loop did not {what}"
            time.sleep(0.0005)

    to_model = StreamResampler(48000, 24000)  # how much of the microphone's audio the loop has at 24 kHz
    heard_samples, texts, played, mic = 0, 0, np.zeros(0, np.float32), []
    while model.steps * FRAME < voice.size:
        new = b.output.played()[played.size :, 0]  # the speaker's sound reaches the mic through the room
        played = np.concatenate([played, new])
        seg = played[-(new.size + h48.size) :]
        n = 1 << int(np.ceil(np.log2(seg.size + h48.size)))
        echo = np.fft.irfft(np.fft.rfft(seg, n) * np.fft.rfft(h48, n), n)[seg.size - new.size : seg.size]
        echo = np.concatenate([np.zeros(block - echo.size), echo]).astype(np.float32)  # the first block: silence
        mic.append(echo)
        b.input.push_input(echo)
        b.input.process(block)
        heard_samples += to_model(echo).size
        until(lambda: io.mic.available() == 0, "take the microphone's block")
        while texts < heard_samples // FRAME:  # each whole frame stepped, its answer gone to the speaker
            texts += isinstance(_wait_for(loop.events, Text)[0], Text)
        b.output.process(block)
        until(lambda: io.played.available() == 0, "read what the speaker played")
    loop.end_session()
    loop.close()
    heard = np.concatenate(model.inputs)
    mic48 = np.concatenate(mic)[::2]  # what reached the mic, at 24 kHz (roughly aligned)
    tail = slice(heard.size - 4 * 24000, heard.size)
    erle = 10 * np.log10(np.sum(mic48[tail] ** 2) / np.sum(heard[tail] ** 2))
    print(f"echo reduction through the loop: {erle:.1f} dB")
    assert erle > 10, erle  # the model hears its own voice >= 10 dB quieter than the mic does


def test_late_step_delay_is_won_back_in_quiet_frames() -> None:
    class Hiccup(EchoModel):
        def step(self, pcm: np.ndarray):
            if self.steps == 15:
                time.sleep(0.12)  # one late step: 480 ms of audio at 4x speed
            return super().step(pcm)

    model = Hiccup(delay=0, text_every=0)
    loop = ModelLoop(lambda: model, max_lag_frames=50).start()
    b, io = _session()
    quiet = _signal(FRAME * 60, 9) * 0.003  # about -55 dBFS: silence from Moshi, trimming allowed
    loop.begin_session(io)
    events = _run_until_consumed(loop, b, quiet, speed=4.0, extra_s=0.3)
    loop.close()
    stats = [e for e in events if isinstance(e, Stats)]
    assert max(s.output_queued_ms for s in stats) > 200  # the backlog after the late step
    assert stats[-1].output_trimmed_ms > 100
    assert stats[-1].output_queued_ms < 30 + 80 + 20  # back near the target (+ the frame just written)


class _Speller:
    """Says "hello world" in pieces (as sentencepiece does), one piece per frame from frame 1."""

    PIECES = [None, ("hel", None, True), ("lo", None, False), None, (" wor", "hello", True), ("ld", None, False)]

    def reset(self) -> None:
        self.k, self.pending = 0, None

    def step(self, pcm: np.ndarray) -> FrameResult:
        piece = self.PIECES[self.k] if self.k < len(self.PIECES) else None
        self.k += 1
        self.pending = "world" if self.k >= 5 else self.pending
        return FrameResult(pcm, *(piece[0], None, *piece[1:]) if piece else ())

    def flush_word(self) -> str | None:
        word, self.pending = self.pending, None
        return word


def _file_session(model, frames: int, recorder=None) -> list:
    from moshi_mlx.audio.file_port import FileAudioPort

    loop = ModelLoop(lambda: model).start()
    port = FileAudioPort(np.full(frames * FRAME, 0.25, np.float32), type("Sink", (), {"write": lambda self, x: None})())
    loop.begin_session(port, recorder=recorder)
    assert port.exhausted.wait(20)
    assert loop.end_session(10)
    loop.close()
    return _drain(loop.events)


def test_words_are_whole_and_timed_at_their_first_piece_for_every_consumer(tmp_path: Path) -> None:
    rec = Recorder(tmp_path / "rec")
    events = _file_session(_Speller(), 8, rec)
    assert "".join(e.text for e in events if isinstance(e, Text)) == "hello world"  # what the console shows
    assert [e for e in events if isinstance(e, Word)] == [Word("hello", 0.08), Word("world", 0.32)]
    lines = [json.loads(x) for x in recording_paths(tmp_path / "rec").transcript.read_text().splitlines()]
    assert [(x["t"], x["word"]) for x in lines if "word" in x] == [(0.08, "hello"), (0.32, "world")]


def test_a_recording_that_fails_is_reported_once_and_the_conversation_goes_on(tmp_path: Path, monkeypatch) -> None:
    import errno
    import os

    rec = Recorder(tmp_path / "rec", sync_every_s=0.05)
    ours, real_write = {rec._user._file.fd}, os.write

    def write(fd, data):  # the disk is full
        if fd in ours:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    model = EchoModel(delay=0)
    events = _file_session(model, 40, rec)
    stopped = [e for e in events if isinstance(e, RecordingStopped)]
    assert len(stopped) == 1 and "No space left on device" in stopped[0].message
    assert not [e for e in events if isinstance(e, Error)] and model.steps == 40  # the dialog went on
    assert [e for e in events if isinstance(e, SessionEnded)][0].reason == "stopped"


def test_one_slow_step_is_not_judged_too_slow() -> None:
    class Spike(EchoModel):  # a machine that keeps up, with one step of 0.35 s (a page-in, another program)
        def step(self, pcm: np.ndarray):
            if self.steps == 10:
                time.sleep(0.35)
            return super().step(pcm)

    model = Spike(delay=0, text_every=0)
    loop = ModelLoop(lambda: model, max_lag_frames=50).start()
    b, io = _session()
    loop.begin_session(io)
    events = _run_until_consumed(loop, b, _signal(FRAME * 30, 5), speed=4.0, extra_s=0.1)
    loop.close()
    stats = [e for e in events if isinstance(e, Stats)]
    assert max(s.rtf for s in stats) > TOO_SLOW_RTF  # the spike, as the status line shows it
    assert not [too_slow(s) for s in stats if too_slow(s)]
    assert stats[-1].rtf_sustained < 1


def test_a_machine_that_is_always_too_slow_is_told_after_a_few_steps() -> None:
    model = EchoModel(delay=0, text_every=0, step_s=0.25)  # 3.1x slower than real time, every step
    loop = ModelLoop(lambda: model).start()
    b = _started(loop, 30)
    with FakeClock([b.input, b.output], speed=1.0):
        first, seen = _wait_for(loop.events, Stats, 10)
        while too_slow(first) is None:
            first, more = _wait_for(loop.events, Stats, 10)
            seen += more
    loop.end_session()
    loop.close()
    judged = [e for e in seen if isinstance(e, Stats)]
    assert len(judged) == 8  # 3 warm-up steps, then the median of 5
    assert "3x slower than real time (0.3 s per 80 ms frame)" in too_slow(first)


def test_microphone_audio_the_ring_dropped_in_a_long_stall_is_a_reported_gap_on_the_timeline(tmp_path: Path) -> None:
    """The loop stalls longer than the microphone's ring holds (a step compiling, a swapping machine): the audio
    the device delivered meanwhile and the ring could not keep is lost, but said (Skipped, a "skipped" line) and kept
    as silence in user.wav, so the recording stays on the wall-clock timeline. It was lost silently: user.wav came
    out shorter than the conversation, every word after the stall timed early. The devices tick in step with the
    model: one frame of callbacks per step, and at step 3 a 0.96 s stall (the ring holds 0.25 s)."""

    class Stalling(EchoModel):
        def step(self, pcm: np.ndarray) -> FrameResult:
            blocks = 12 if self.steps == 3 else 1  # frames of 10 ms callbacks: a 0.96 s stall
            if self.steps < 20:
                for _ in range(blocks * FRAME // 240):
                    b.input.process(240)
                    b.output.process(240)
            return super().step(pcm)

    model = Stalling(delay=0, text_every=0)
    loop = ModelLoop(lambda: model, max_lag_frames=2).start()
    b = FakeStreamFactory(input_rate=24000, output_rate=24000)
    io = AudioIO(backend=b, prebuffer_ms=0.0, ring_s=0.25)
    mic = _signal(FRAME * 80, 5)
    loop.begin_session(io, recorder=Recorder(tmp_path / "rec"))
    _wait_for(loop.events, SessionStarted)
    b.input.push_input(mic)
    for _ in range(2 * FRAME // 240):  # the first two frames; each step then brings the next
        b.input.process(240)
    events: list = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # until every whole frame delivered is on the timeline
        events += _drain(loop.events)
        timeline = max([e.frame for e in events if isinstance(e, Stats)], default=0)
        if model.steps >= 20 and timeline == b.input.frames_processed // FRAME:
            break
        time.sleep(0.005)
    assert loop.end_session(10)
    events += _drain(loop.events)
    loop.close()
    lost = io.mic.overrun_samples
    assert lost >= 0.2 * 24000, "the stall overfilled the ring"
    delivered = mic[: b.input.frames_processed]
    ended = next(e for e in events if isinstance(e, SessionEnded))
    skips = [e for e in events if isinstance(e, Skipped)]
    assert skips and ended.frames_skipped == skips[-1].total >= lost // FRAME
    user, _ = sf.read(recording_paths(tmp_path / "rec").user_wav, dtype="float32")
    assert user.size == ended.frames * FRAME
    assert delivered.size - FRAME < user.size <= delivered.size  # the whole conversation (less a part frame)
    heard = user != 0
    assert np.count_nonzero(~heard) == lost  # the gap, as silence, where it was
    np.testing.assert_array_equal(user[heard], delivered[: user.size][heard])
    assert '"type": "skipped"' in recording_paths(tmp_path / "rec").transcript.read_text()
