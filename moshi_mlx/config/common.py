"""What every config module shares: where presets live and how a JSON config file is read."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ConfigError, require_file

PRESETS = Path(__file__).resolve().parent.parent / "presets"

def read_json_object(path: str | os.PathLike) -> dict:
    """A JSON file holding an object (a config); ConfigError saying what is wrong otherwise."""
    path = require_file(Path(path), "config", ConfigError, "config.json")
    try:
        raw = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return raw
