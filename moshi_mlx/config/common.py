"""What every config module shares: where presets live, how JSON is read, and how each value is checked.

Every value of a config is checked for type and range as it is read, before anything is built: an
absurd value (a delay of a billion steps, zero heads) would otherwise crash the process or surface
as internal exception text. The bounds are generous (about 100x the largest released model) and only
there to refuse what no model can be.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Literal, overload

from ..errors import ConfigError, require_file

PRESETS = Path(__file__).resolve().parent.parent / "presets"

# Bounds of what a config may say (inclusive).
MAX_WIDTH = 65_536  # d_model, dim, depformer_dim, codebook dimension (Moshi: 4096)
MAX_FEEDFORWARD = 1 << 20  # MLP width (Moshi: 11264 derived from hidden_scale 4.125)
MAX_HIDDEN_SCALE = 64.0
MAX_LAYERS = 1024  # (Moshi: 32)
MAX_CONTEXT = 1 << 20  # attention context in steps (Moshi: 3000 = 4 min; this is a day at 12.5 Hz)
MAX_CARD = 1 << 20  # vocabulary or codebook size (Moshi: 32000 text tokens, 2048 codes)
MAX_STREAMS = 64  # audio codebooks (Moshi: 16 streams, Mimi stores 32 codebooks)
MAX_DELAY = 1000  # steps a stream lags the text (80 s; Moshi: 1)
MAX_PERIOD = 1e12  # RoPE max_period (Moshi: 10000)
MAX_LAYER_SCALE = 1e6
MAX_KERNEL = 64  # SEANet convolution kernels (Mimi: 7 and 3)
MAX_RATIO = 64  # one SEANet up/down-sampling ratio (Mimi: 8, 6, 5, 4)
MAX_RESIDUAL = 4  # SEANet residual layers per block and their dilation base (Mimi: 1 and 2);
# the dilations grow as base ** layer, and with them each conv's history
MAX_RATE = 384_000  # audio sample rate in Hz (Mimi: 24000)


def parse_json(data: str | bytes) -> object:
    """`json.loads`, refusing what no config or header holds: NaN/Infinity literals and deep nesting.

    Raises ValueError saying what is wrong (callers word it as a ConfigError or CheckpointError).
    """

    def refuse(name: str) -> float:
        raise ValueError(f"{name} is not a JSON number")

    try:
        return json.loads(data, parse_constant=refuse)  # bytes: UTF-8 (UnicodeDecodeError is a ValueError)
    except json.JSONDecodeError as e:
        raise ValueError(str(e)) from None
    except RecursionError:  # the json module recurses once per level: a hostile file nests thousands
        raise ValueError("nested too deeply") from None


def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file holding an object (a config); ConfigError saying what is wrong otherwise."""
    path = require_file(Path(path), "config", ConfigError, "config.json")
    try:
        raw = parse_json(path.read_bytes())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror or e})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return raw


def show_value(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


REQUIRED = object()  # default of a key that must be present


class Fields:
    """Reads the values of one JSON object, each checked; a ConfigError names the key, value and range.

    `where` starts every message (e.g. "config.json" or "mimi config 'seanet'").
    """

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        self.raw, self.where = raw, where

    def error(self, message: str) -> ConfigError:
        return ConfigError(f"{self.where}: {message}")

    def check_keys(self, used: Collection[str], ignored: Collection[str]) -> None:
        """Every key is used or explicitly ignored; unknown keys are reported, not silently dropped."""
        unknown = sorted(set(self.raw) - set(used) - set(ignored))
        if unknown:
            warnings.warn(f"{self.where}: ignoring unknown keys {unknown}", stacklevel=3)

    def require(self, key: str, allowed: tuple) -> None:
        """A feature this port implements only at the given values."""
        if key in self.raw and self.raw[key] not in allowed:
            raise self.error(f"{key}={show_value(self.raw[key])} is not supported by this port (supported: {allowed})")

    def _value(self, key: str, default: object) -> tuple[object, bool]:
        if key in self.raw:
            return self.raw[key], True
        if default is REQUIRED:
            raise self.error(f"missing required key {key!r}")
        return default, False

    def _range(self, key: str, value: float, lo: float, hi: float, lo_open: bool = False) -> None:
        if (value <= lo if lo_open else value < lo) or value > hi:
            high = f"{hi:g}" if isinstance(hi, float) else f"{hi}"
            allowed = f"above {lo:g} and at most {high}" if lo_open else f"from {lo:g} to {high}"
            raise self.error(f"{key} = {show_value(value)} is out of range: use a value {allowed}")

    def int(self, key: str, lo: int, hi: int, default: object = REQUIRED, *, nullable: bool = False) -> int:
        """An integer in range; `nullable`: JSON null reads as None."""
        value, given = self._value(key, default)
        if given and not (nullable and value is None):
            value = self.as_int(key, value)
            self._range(key, value, lo, hi)
        return value  # type: ignore[return-value]

    def as_int(self, key: str, value: object) -> int:
        """JSON integers (and floats with an integer value, such as 3000.0)."""
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.error(f"{key} must be an integer, got {show_value(value)}")
        return value

    @overload
    def float(
        self,
        key: str,
        lo: float,
        hi: float,
        default: object = REQUIRED,
        *,
        lo_open: bool = False,
        nullable: Literal[False] = False,
    ) -> float: ...

    @overload
    def float(
        self, key: str, lo: float, hi: float, default: object = REQUIRED, *, lo_open: bool = False, nullable: bool
    ) -> float | None: ...

    def float(
        self,
        key: str,
        lo: float,
        hi: float,
        default: object = REQUIRED,
        *,
        lo_open: bool = False,
        nullable: bool = False,
    ) -> float | None:
        """A finite number in range; `nullable`: JSON null reads as None."""
        value, given = self._value(key, default)
        if not given or (nullable and value is None):
            return value  # type: ignore[return-value]
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise self.error(f"{key} must be a number, got {show_value(value)}")
        self._range(key, value, lo, hi, lo_open)
        return float(value)

    def flag(self, key: str, default: bool) -> bool:
        value, _ = self._value(key, default)
        if not isinstance(value, bool):
            raise self.error(f"{key} must be true or false, got {show_value(value)}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: object = REQUIRED) -> str:
        value, given = self._value(key, default)
        if value not in choices or not isinstance(value, str):
            what = "" if given else " (its value when left out)"
            raise self.error(f"{key} = {show_value(value)}{what} is not supported: use one of {', '.join(choices)}")
        return value

    def ints(
        self,
        key: str,
        lo: int,
        hi: int,
        default: object = REQUIRED,
        *,
        min_len: int = 1,
        max_len: int = MAX_STREAMS + 1,
    ) -> tuple[int, ...]:
        value, given = self._value(key, default)
        if not given:
            return tuple(value)  # type: ignore[arg-type]
        if not isinstance(value, list) or not min_len <= len(value) <= max_len:
            raise self.error(f"{key} must be a list of {min_len} to {max_len} integers, got {show_value(value)}")
        out = tuple(self.as_int(key, v) for v in value)
        for v in out:
            self._range(f"{key} entry", v, lo, hi)
        return out
