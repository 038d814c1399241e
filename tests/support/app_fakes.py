"""Fakes for the app tests: a sound card that ticks by itself, and a model that says a script."""

from __future__ import annotations

import json
import struct
import threading
from pathlib import Path

import numpy as np

from moshi_mlx.audio import FRAME
from moshi_mlx.audio import MODEL_RATE as RATE
from moshi_mlx.audio.fake import FakeClock, FakeStreamError, FakeStreamFactory
from moshi_mlx.dialog.events import FrameResult

SCRIPT = "Hello, I am Moshi. How are you doing today? Tell me about your day".split()


class LiveFakeBackend(FakeStreamFactory):
    """Fake devices whose callbacks run on a FakeClock from the moment the session opens them.

    The microphone hears quiet noise (-26 dBFS); `fail_open` makes opening a device fail as
    PortAudio does for a device that is gone or busy.
    """

    def __init__(self, speed: float = 2.0, fail_open: str | None = None, **kw) -> None:
        super().__init__(input_rate=kw.pop("input_rate", 48_000), output_rate=kw.pop("output_rate", 48_000), **kw)
        self.speed, self.fail_open = speed, fail_open
        self.clocks: list[FakeClock] = []
        self._rng = np.random.default_rng(0)
        self.sessions = 0

    def open(self, kind: str, **kw):
        if self.fail_open == kind:
            raise FakeStreamError(f"{kind} device unavailable")
        stream = super().open(kind, **kw)
        if kind == "output":  # the input is opened first; both exist now
            mic, spk = self.input, stream
            self.sessions += 1

            def feed(_k: int, mic=mic) -> None:
                mic.push_input((0.05 * self._rng.standard_normal(int(mic.samplerate * 0.01))).astype(np.float32))

            clock = FakeClock([mic, spk], block_s=0.01, speed=self.speed, on_tick=feed)
            close = spk.close

            def close_and_stop(*a, **k):
                close(*a, **k)
                clock._stop.set()  # the clock thread ends on its own; joined below when not on it
                if threading.current_thread() is not clock._thread:
                    clock.stop()

            spk.close = close_and_stop
            self.clocks.append(clock.start())
        return stream


class ScriptModel:
    """A FrameModel that speaks a 220 Hz tone and says one word of SCRIPT every `every` frames."""

    def __init__(self, every: int = 2, words: list[str] | None = None, fail_at: int | None = None) -> None:
        self.every, self.words, self.fail_at = every, words or SCRIPT, fail_at
        self.steps = 0
        self.resets = 0
        self.threads: set[str] = set()
        self._k = 0
        self._pending: str | None = None

    def reset(self) -> None:
        self.resets += 1
        self._k = 0
        self._pending = None

    def step(self, pcm: np.ndarray) -> FrameResult:
        self.threads.add(threading.current_thread().name)
        if self.fail_at is not None and self.steps == self.fail_at:
            raise RuntimeError("model blew up")
        t = (self.steps * FRAME + np.arange(FRAME)) / RATE
        self.steps += 1
        out = (0.2 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        text, done = None, None
        if self._k < len(self.words) * self.every and self._k % self.every == 0:
            w = self.words[self._k // self.every]
            text = w if self._k == 0 else " " + w
            done, self._pending = self._pending, w  # a word is complete once the next one starts
        self._k += 1
        return FrameResult(out, text, None, done, text is not None)

    def flush_word(self) -> str | None:
        word, self._pending = self._pending, None
        return word


def write_fake_weights(folder: Path, bits: int = 4) -> Path:
    """A folder with the three files a model needs; only the LM header is meaningful (precision)."""
    folder.mkdir(parents=True, exist_ok=True)
    d, group = 64, 32 if bits == 4 else 64
    shapes = {  # as MLX affine quantization stores them: packed weight, then per-group scales and biases
        "out_norm.weight": ("BF16", [d], 2),
        "transformer.layers.0.self_attn.in_proj.weight": ("U32", [3 * d, d * bits // 32], 4),
        "transformer.layers.0.self_attn.in_proj.scales": ("BF16", [3 * d, d // group], 2),
        "transformer.layers.0.self_attn.in_proj.biases": ("BF16", [3 * d, d // group], 2),
    }
    header, size = {}, 0
    for name, (dtype, shape, itemsize) in shapes.items():
        n = itemsize * shape[0] * (shape[1] if len(shape) > 1 else 1)
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [size, size + n]}
        size += n
    raw = json.dumps(header).encode()
    (folder / f"model.q{bits}.safetensors").write_bytes(struct.pack("<Q", len(raw)) + raw + bytes(size))
    (folder / "tokenizer-e351c8d8-checkpoint125.safetensors").write_bytes(struct.pack("<Q", 2) + b"{}")
    (folder / "tokenizer_spm_32k_3.model").write_bytes(b"fake")
    return folder


class ConversationModel(ScriptModel):
    """ScriptModel that says the next script at each new conversation (reset)."""

    def __init__(self, scripts: list[str], every: int = 2) -> None:
        super().__init__(every=every, words=scripts[0].split())
        self.scripts = [s.split() for s in scripts]

    def reset(self) -> None:
        super().reset()
        self.words = self.scripts[min(self.resets - 1, len(self.scripts) - 1)]
