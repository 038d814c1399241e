"""ModelLoop: the one thread that owns the model (and so every MLX call) during a live dialog.

The thread builds the model with the caller's factory, then waits for sessions. A session opens
the audio port, cuts the 24 kHz microphone stream into 1920-sample frames, runs `model.step` on
each, queues the answer for the speaker and reports what happens as plain events (a queue, or a
callback that the Qt app turns into signals). It never prints.

Lag control: before each step the loop measures how much microphone audio waits behind the frame
it is about to use; past `max_lag_frames` it drops all but the newest frame, so the delay between
the user speaking and Moshi hearing stays bounded when the model is slower than real time
(reported as `Skipped`). Microphone audio lost in a stall longer than the device ring holds is put
back as silence (an "input_lost" line in the recording), then skipped as any lag: the timeline stays
whole. A device error or a failing step ends the session with an `Error` event; the recorder keeps
what it has.
"""

from __future__ import annotations

import contextlib
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np

from ..audio import FRAME
from ..audio import MODEL_RATE as RATE
from ..audio.files import silence_non_finite
from ..errors import MoshiError
from ..mlx_thread import start_owner_thread
from .events import (
    AudioPort,
    Closed,
    Error,
    Event,
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
    Word,
)
from .pacing import OutputPacer, level_db

_WARM_UP_STEPS = 3  # the first steps compile kernels and fill caches: not judged
_SUSTAINED_STEPS = 25  # rtf_sustained: the median over the last 25 steps (2 s of audio at real time)...
_FEWEST_JUDGED = 5  # ...once there are 5: a median needs 3 slow ones, so a single spike never counts

NON_FINITE_NOTE = (
    "The input holds NaN or infinite samples (a broken file or sound card); they are replaced with "
    "silence, or they would blank what Moshi hears for about 20 s"
)


class ModelLoop:
    """Owns the model thread.

    Args:
        model_factory: builds the FrameModel; called once, on the loop thread.
        on_event: called with each event on the loop thread (keep it quick); events also go to
            `self.events` unless `on_event` is given.
        max_lag_frames: frames of microphone audio allowed to wait before the loop skips ahead.
        max_output_queue_s, target_output_queue_s: the speaker queue's bound and the queue to come
            back to after a late step (see pacing.py's OutputPacer).
        stats_every: frames between two Stats events.
    """

    def __init__(
        self,
        model_factory: Callable[[], FrameModel],
        on_event: Callable[[Event], None] | None = None,
        max_lag_frames: int = 2,
        max_output_queue_s: float = 0.5,
        target_output_queue_s: float = 0.03,
        stats_every: int = 1,
    ) -> None:
        if max_lag_frames < 0:
            raise ValueError("max_lag_frames must be >= 0")
        self._factory = model_factory
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self._emit = on_event or self.events.put
        self.max_lag_frames = max_lag_frames
        self.max_output_queue_s = max_output_queue_s
        self.target_output_queue_s = target_output_queue_s
        self.stats_every = max(1, stats_every)
        self._commands: queue.SimpleQueue = queue.SimpleQueue()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded = threading.Event()  # set once the model is built (or failed to build)
        self.load_error: str | None = None
        self._in_session = threading.Event()
        self._session_done = threading.Event()
        self._session_done.set()
        self._muted = False  # read by the session at every frame

    # -- control (any thread) ------------------------------------------------------------------
    def start(self) -> ModelLoop:
        """Starts the thread, which builds the model. Returns at once; see `loaded`."""
        if self._thread is None:
            self._thread = start_owner_thread(self._main, "moshi-model-loop", stop=self._ask_close)
        return self

    def begin_session(self, audio: AudioPort, recorder=None, echo=None) -> None:
        """Starts a conversation on `audio` (opened on the loop thread); optional Recorder and echo canceller."""
        self.start()
        self._session_done.clear()
        self._commands.put(("session", audio, recorder, echo))
        self._wake.set()

    def reset(self) -> None:
        """New conversation without reloading: model.reset() between two frames."""
        self._commands.put(("reset",))
        self._wake.set()

    @property
    def muted(self) -> bool:
        return self._muted

    def set_muted(self, on: bool) -> None:
        """Mute the microphone (any thread, also between sessions): the model hears silence, the recording
        keeps what it heard (and a mute / unmute event), Moshi goes on talking."""
        self._muted = bool(on)

    def end_session(self, timeout: float = 10.0) -> bool:
        """Stops the current conversation (the Ctrl-C path); True once it has ended."""
        self._commands.put(("end",))
        self._wake.set()
        return self._session_done.wait(timeout)

    def close(self, timeout: float = 10.0, wait_loading: bool = True) -> None:
        """Ends any session and the thread (waits up to `timeout`; process exit waits for the rest, see
        `mlx_thread`). The model is released and the thread's MLX state with it. `wait_loading=False`: a model
        still being built is not waited for (a stop while it loads): the thread ends once it is built."""
        if self._thread is None:
            return
        self._ask_close()
        self._thread.join(timeout if wait_loading or self.loaded.is_set() else 0.0)
        self._thread = None

    def _ask_close(self) -> bool:
        """Sends "close"; False while the model is still being built (the thread sees it only afterwards)."""
        self._commands.put(("close",))
        self._wake.set()
        return self.loaded.is_set()

    @property
    def in_session(self) -> bool:
        return self._in_session.is_set()

    def __enter__(self) -> ModelLoop:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- the thread ----------------------------------------------------------------------------
    def _main(self) -> None:
        t0 = time.perf_counter()
        model: FrameModel | None = None
        try:
            model = self._factory()
        except Exception as e:  # noqa: BLE001 (reported as an event; the caller decides)
            self.load_error = str(e) if isinstance(e, MoshiError) else f"could not build the model: {e!r}"
            self._emit(Error(self.load_error, e.hint if isinstance(e, MoshiError) else None))
        else:
            notes, alerts = tuple(getattr(model, "notes", ())), tuple(getattr(model, "alerts", ()))
            self._emit(Loaded(time.perf_counter() - t0, notes, alerts))
        finally:
            self.loaded.set()
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                try:
                    cmd = self._commands.get_nowait()
                except queue.Empty:
                    break
                if cmd[0] == "close":
                    self._emit(Closed())
                    return
                if cmd[0] == "session":
                    if model is None:
                        self._emit(SessionEnded("error", 0, 0))
                        self._session_done.set()
                        continue
                    if self._run_session(model, *cmd[1:]) == "close":
                        self._emit(Closed())
                        return
                # "end" / "reset" outside a session: nothing to do

    def _run_session(self, model: FrameModel, audio: AudioPort, recorder, echo) -> str:
        s = _Session(self, model, audio, recorder, echo)
        self._in_session.set()
        try:
            return s.run()
        finally:
            self._in_session.clear()
            self._session_done.set()


class _Session:
    """State of one conversation; lives and dies on the loop thread."""

    def __init__(self, loop: ModelLoop, model: FrameModel, audio: AudioPort, recorder, echo) -> None:
        self.loop, self.model, self.audio, self.recorder, self.echo = loop, model, audio, recorder, echo
        self.emit = loop._emit
        self.pending = np.zeros(0, np.float32)  # 24 kHz mic audio not yet cut into frames
        self.frame = 0  # frames on the timeline (processed + skipped)
        self.skipped = 0
        self.pacer = OutputPacer(loop.max_output_queue_s, loop.target_output_queue_s)
        self.step_sum = 0.0
        self.step_n = 0
        self.recent_steps: deque[float] = deque(maxlen=_SUSTAINED_STEPS)  # seconds, warm-up steps left out
        self.muted = False
        self.word_t: float | None = None  # when the word being spelled began
        self.user_word_t: float | None = None  # the same for the user's transcript, when there is one
        self.non_finite = 0  # input samples that were NaN or infinite (replaced with 0)

    @property
    def t(self) -> float:
        """Seconds since the session started, on the model's timeline (the current frame's start)."""
        return self.frame * FRAME / RATE

    def run(self) -> str:
        reason, outcome = "stopped", "ended"
        try:
            self.model.reset()
            if self.echo is not None:
                self.echo.reset()
            self.audio.start()
            rates = (getattr(self.audio, "input_rate", None) or None, getattr(self.audio, "output_rate", None) or None)
            self.emit(SessionStarted(*rates))  # the rates the devices opened at
            outcome = self._frames()
        except Exception as e:  # noqa: BLE001 (device or model failure: end cleanly, keep the recording)
            reason = "error"
            msg = str(e) if isinstance(e, MoshiError) else f"the dialog stopped: {e!r}"
            self.emit(Error(msg, e.hint if isinstance(e, MoshiError) else None))
            if self.recorder is not None:
                self.recorder.add_event("error", self.t, message=msg)
        finally:
            self.audio.stop()
            with contextlib.suppress(Exception):  # after a model failure: the last word is lost, not the session end
                self._flush_word()
            if self.recorder is not None:
                self.recorder.close()
                self._check_recorder()
        self.emit(SessionEnded(reason, self.frame, self.skipped))
        return "close" if outcome == "close" else "ended"

    def _commands(self) -> str | None:
        while True:
            try:
                cmd = self.loop._commands.get_nowait()
            except queue.Empty:
                return None
            if cmd[0] in ("end", "close"):
                return cmd[0]
            if cmd[0] == "reset":
                self._flush_word()
                self.model.reset()
                if self.echo is not None:
                    self.echo.reset()
                if self.recorder is not None:
                    self.recorder.add_event("reset", self.t)
            # a second "session" while one runs is ignored

    def _frames(self) -> str:
        loop = self.loop
        while True:
            cmd = self._commands()
            if cmd == "end":
                return "ended"
            if cmd == "close":
                return "close"
            self.audio.check()
            if self.echo is not None:
                self.echo.push_reference(self.audio.read_reference())
            new = self._finite(self.audio.read_input())
            lost = self.audio.input_lost()  # after the read: the audio lost came after what was read
            if lost:
                if self.recorder is not None:  # where the gap begins on the timeline
                    at = (self.frame * FRAME + self.pending.size + new.size) / RATE
                    self.recorder.add_event("input_lost", at, seconds=round(lost / RATE, 3))
                new = np.concatenate([new, np.zeros(lost, np.float32)])
            if new.size:
                self.pending = np.concatenate([self.pending, new]) if self.pending.size else new
            if self.pending.size < FRAME:
                missing_s = (FRAME - self.pending.size) / RATE
                loop._wake.wait(min(0.004, max(0.0005, missing_s)))
                loop._wake.clear()
                continue
            waiting = self.pending.size // FRAME - 1  # whole frames behind the one we will use
            if waiting > loop.max_lag_frames:
                self._skip(waiting)
            self._step()

    def _finite(self, pcm: np.ndarray) -> np.ndarray:
        """The one entry of every input (file, microphone, app): NaN or infinite samples become 0, said once."""
        pcm, bad = silence_non_finite(pcm)
        if bad and not self.non_finite:
            self.emit(Notice(NON_FINITE_NOTE))
            if self.recorder is not None:
                self.recorder.add_event("non_finite_input", self.t)
        self.non_finite += bad
        return pcm

    def _skip(self, frames: int) -> None:
        lag_s = (self.pending.size - FRAME) / RATE
        dropped, self.pending = self.pending[: frames * FRAME], self.pending[frames * FRAME :]
        if self.echo is not None:
            self.echo.skip(dropped.size)
        if self.recorder is not None:
            self.recorder.add_audio(dropped, None)
            self.recorder.add_event("skipped", self.t, frames=frames)
        self.frame += frames
        self.skipped += frames
        self.emit(Skipped(frames, self.skipped, lag_s))

    def _step(self) -> None:
        t_start = time.perf_counter()
        pcm_in, self.pending = self.pending[:FRAME], self.pending[FRAME:]
        lag_ms = 1000.0 * self.pending.size / RATE
        if self.echo is not None:
            pcm_in = self.echo.process(pcm_in)  # also while muted: its estimate of the room stays current
        if self.loop._muted != self.muted:
            self.muted = self.loop._muted
            if self.recorder is not None:
                self.recorder.add_event("mute" if self.muted else "unmute", self.t)
        if self.muted:
            pcm_in = np.zeros_like(pcm_in)
        t_model = time.perf_counter()
        result = self.model.step(pcm_in)
        step_s = time.perf_counter() - t_model
        pcm_out = result.pcm
        if pcm_out is not None:
            pcm_out = np.asarray(pcm_out, np.float32).reshape(-1)
            play = self.pacer.play(pcm_out, self.audio.output_queued_s())
            if play is not None:
                self.audio.write_output(play)
        t = self.t
        if result.word:
            self._word(result.word, t)
        if result.word_start:
            self.word_t = t
        if result.turn_end:  # before this step's text, which begins the next turn
            self.emit(TurnEnded(t))
        if result.text:
            self.emit(Text(result.text, t, self.frame))
        if result.user_word:
            self._word(result.user_word, t, "user")
        if result.user_turn_end:  # before this step's user text, which begins the user's next turn
            self._user_turn_end(t)
        if result.user_word_start:
            self.user_word_t = t
        if result.user_text:
            self.emit(Text(result.user_text, self._said(t), self.frame, "user"))
        if self.recorder is not None:
            self.recorder.add_audio(pcm_in, pcm_out)
            self._check_recorder()
        self.frame += 1
        self.step_sum += step_s
        self.step_n += 1
        if self.frame - self.skipped > _WARM_UP_STEPS:  # model steps taken so far
            self.recent_steps.append(step_s)
        if self.step_n >= self.loop.stats_every:
            avg = self.step_sum / self.step_n
            sustained = None
            if len(self.recent_steps) >= _FEWEST_JUDGED:
                sustained = statistics.median(self.recent_steps) * RATE / FRAME
            self.step_sum, self.step_n = 0.0, 0
            total_s = time.perf_counter() - t_start
            self.emit(
                Stats(
                    frame=self.frame,
                    step_ms=1000 * step_s,
                    step_ms_avg=1000 * avg,
                    rtf=avg * RATE / FRAME,
                    lag_ms=lag_ms,
                    output_queued_ms=1000 * self.audio.output_queued_s(),
                    frames_skipped=self.skipped,
                    output_dropped=self.pacer.dropped,
                    output_trimmed_ms=1000 * self.pacer.trimmed / RATE,
                    input_db=level_db(pcm_in),
                    output_db=level_db(pcm_out),
                    loop_ms=1000 * (total_s - step_s),
                    rtf_sustained=sustained,
                )
            )

    def _word(self, word: str, now: float, speaker: str = "moshi") -> None:
        if speaker == "user":
            t, self.user_word_t = self._said(now if self.user_word_t is None else self.user_word_t), None
        else:
            t, self.word_t = now if self.word_t is None else self.word_t, None
        self.emit(Word(word, t, speaker))
        if self.recorder is not None:
            self.recorder.add_word(word, t, speaker)

    def _user_turn_end(self, now: float) -> None:
        """The user finished a turn (its last word came with it): said, and recorded with when it was said."""
        t = self._said(now)
        self.emit(TurnEnded(t, "user"))
        if self.recorder is not None:
            self.recorder.add_event("end_of_turn", t, speaker="user")

    def _said(self, t: float) -> float:
        """When the user said what the transcript gives at `t` (the STT model lags the audio)."""
        return max(0.0, t - getattr(self.model, "user_lag_s", 0.0))

    def _flush_word(self) -> None:
        for name, speaker in (("flush_word", "moshi"), ("flush_user_word", "user")):
            flush = getattr(self.model, name, None)
            word = flush() if flush is not None else None
            if word:
                self._word(word, self.t, speaker)

    def _check_recorder(self) -> None:
        """A recorder whose disk failed is closed (keeping what it wrote) and reported once."""
        if self.recorder is not None and self.recorder.error is not None:
            self.recorder.close()
            self.emit(RecordingStopped(self.recorder.error))
            self.recorder = None
