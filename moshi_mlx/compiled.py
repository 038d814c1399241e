"""Whether streaming steps are compiled (the one switch for LmGen's, Stt's and Mimi's steps), and what
they are traced for.

Steps are compiled with `mx.compile` by default; MOSHI_MLX_COMPILE=0 runs the same functions op by op,
for debugging and for the benchmarks' comparison.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import mlx.core as mx

from .errors import ConfigError

if TYPE_CHECKING:
    from .lm import Lm

COMPILE_ENV = "MOSHI_MLX_COMPILE"


_OFF, _ON = ("0", "false", "no", "off"), ("1", "true", "yes", "on", "")


def compile_by_default() -> bool:
    """Steps are compiled unless MOSHI_MLX_COMPILE is 0 (or false / no / off); any other word is refused
    (ConfigError), not read as "on"."""
    value = os.environ.get(COMPILE_ENV, "1").strip().lower()
    if value not in _OFF + _ON:
        raise ConfigError(f"{COMPILE_ENV} must be 1 or 0 (on or off), got {os.environ[COMPILE_ENV]!r}")
    return value not in _OFF


def lm_setting(lm: Lm) -> tuple:
    """What a compiled step over `lm` was traced for: a step is traced again when this changes (a cast, a new
    compute dtype or KV width, quantization, replaced output layers); swapped modules need an explicit
    re-trace."""
    return (
        lm.compute_dtype,
        lm.cache_dtype,
        lm.kv_bits,
        lm.is_quantized,
        id(lm.text_linear),
        id(lm.out_norm.weight),
    )


def window_offsets(capacity: int, bucket: int | None) -> list[int]:
    """An offset at which a step meets each attention window a stream will use (see `LmState.window`), to
    trace them all before a conversation: at w - 1 a step attends over w slots; at capacity - 1, over the
    whole ring."""
    bucket = bucket or capacity
    return [*range(bucket - 1, capacity - 1, bucket), capacity - 1]


class WindowedSteps:
    """A temporal step `fn(..., window=w)` compiled once per attention window `w` (LmGen's and Stt's: see
    `LmState.window`), or run op by op; all traced again when the setting they were made for changes."""

    def __init__(self, fn: Callable):
        self._fn = fn
        self._by_window: dict[int | None, Callable] = {}
        self._setting: tuple | None = None

    def get(self, window: int | None, compiled: bool, setting: tuple) -> Callable:
        """The step for `window`; `setting`: what it is traced for (`lm_setting`, sampling, ...)."""
        setting = (compiled, *setting)
        if setting != self._setting:
            self.clear()
            self._setting = setting
        if window not in self._by_window:
            step = functools.partial(self._fn, window=window)
            self._by_window[window] = mx.compile(step) if compiled else step
        return self._by_window[window]

    def clear(self) -> None:
        """Trace again at the next call (after the model's modules or weights were replaced)."""
        self._by_window.clear()

    def __iter__(self) -> Iterator[int | None]:
        """The windows made so far."""
        return iter(self._by_window)
