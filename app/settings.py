"""Typed view of the app's QSettings: every remembered choice has one property with a default.

QSettings stores strings on some platforms (INI files, the macOS plist keeps types, Linux does not),
so each getter converts and falls back to the default on anything unreadable instead of raising.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings

from moshi_mlx import release

VOICES = {v: f"{v.capitalize()} ({words})" for v, words in release.VOICES.items()}
PRECISIONS = {p: release.precision_label(bits) for p, bits in release.PRECISIONS.items()}
# the rest of the family on the hub, each one repository of its own (one precision: bf16), as the model picker says them
FAMILY = {
    release.HIBIKI_REPO: "Hibiki (translates French to English)",
    release.MOSHIKA_RL_REPO: "Moshika RL (better turn-taking)",
    release.PERSONAPLEX_REPO: "PersonaPlex (voice and role)",
    release.PERSONAPLEX_RL_REPO: "PersonaPlex RL (voice and role)",
}
_ECHO_KEY = "audio/echo_suppression"  # the option's first name: choices saved under it are kept
_SUPPRESSOR_KEY = "audio/residual_echo_suppressor"
DEFAULT_VOICE, DEFAULT_PRECISION = release.DEFAULT_VOICE, release.precision_name(release.DEFAULT_BITS)
PERSONA_VOICE = release.DEFAULT_PERSONA_VOICE


class AppSettings:
    """Remembered choices. `QSettings()` with no arguments uses the application/organisation names;
    tests pass their own (an INI file in a temporary folder)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self._s = qsettings if qsettings is not None else QSettings()

    # -- helpers ---------------------------------------------------------------------------------
    def _str(self, key: str, default: str) -> str:
        v = self._s.value(key, default)
        return v if isinstance(v, str) else default

    def _choice(self, key: str, allowed: dict, default: str) -> str:
        v = self._str(key, default)
        return v if v in allowed else default

    def _float(self, key: str, default: float, lo: float, hi: float) -> float:
        raw = self._s.value(key, default)
        if not isinstance(raw, (str, int, float)):  # None, a list: not a number
            return default
        try:
            v = float(raw)
        except ValueError:
            return default
        return min(hi, max(lo, v)) if v == v else default  # NaN -> default

    def _bool(self, key: str, default: bool) -> bool:
        v = self._s.value(key, default)
        if isinstance(v, bool):
            return v
        if isinstance(v, str):
            return v.strip().lower() in ("1", "true", "yes", "on")
        return default

    def _set(self, key: str, value) -> None:
        self._s.setValue(key, value)

    def sync(self) -> None:
        self._s.sync()

    def problem(self) -> str | None:
        """Why the choices made now would be forgotten at quit (QSettings fails silently); None when they are kept."""
        path = Path(self._s.fileName())
        if not path.is_absolute():  # not a file (the Windows registry)
            return None
        if path.is_dir():
            what = "is a folder"
        elif path.exists() or path.is_symlink():
            if os.access(path, os.R_OK | os.W_OK) and self._s.status() != QSettings.Status.AccessError:
                return None
            what = "cannot be read or written"
        else:
            parent = next(p for p in path.parents if p.exists())
            if parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
                return None
            what = f"cannot be created ({parent} is not a writable folder)"
        return f"{path} {what}: choices made now are forgotten when Moshi quits. Remove it or make it writable."

    def clear(self) -> None:
        """Forgets every remembered choice."""
        self._s.clear()

    # -- model -----------------------------------------------------------------------------------
    @property
    def voice(self) -> str:
        """'moshiko' or 'moshika'."""
        return self._choice("model/voice", VOICES, DEFAULT_VOICE)

    @voice.setter
    def voice(self, v: str) -> None:
        if v not in VOICES:
            raise ValueError(f"voice must be one of {list(VOICES)}, got {v!r}")
        self._set("model/voice", v)

    @property
    def precision(self) -> str:
        """'q4', 'q8' or 'bf16'."""
        return self._choice("model/precision", PRECISIONS, DEFAULT_PRECISION)

    @precision.setter
    def precision(self, v: str) -> None:
        if v not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {v!r}")
        self._set("model/precision", v)

    @property
    def hub_repo(self) -> str:
        """One of the family's repositories (FAMILY) chosen instead of Moshi's voice x precision ('' for Moshi)."""
        return self._choice("model/hub_repo", {"": "", **FAMILY}, "")

    @hub_repo.setter
    def hub_repo(self, v: str) -> None:
        if v and v not in FAMILY:
            raise ValueError(f"repository must be one of {list(FAMILY)}, got {v!r}")
        self._set("model/hub_repo", v or "")

    @property
    def local_folder(self) -> str:
        """A folder of weights used instead of a download ('' for none)."""
        return self._str("model/local_folder", "")

    @local_folder.setter
    def local_folder(self, v: str) -> None:
        self._set("model/local_folder", v or "")

    @property
    def transcribe_user(self) -> bool:
        """Whether a speech-to-text model shows what the person says (off by default: it takes memory)."""
        return self._bool("model/transcribe_user", False)

    @transcribe_user.setter
    def transcribe_user(self, v: bool) -> None:
        self._set("model/transcribe_user", bool(v))

    # -- persona (PersonaPlex models) ------------------------------------------------------------
    @property
    def persona_voice(self) -> str:
        """A PersonaPlex voice: a preset name (NATF2...) or the path of a recording or .pt preset."""
        return self._str("persona/voice", PERSONA_VOICE)

    @persona_voice.setter
    def persona_voice(self, v: str) -> None:
        """'' = no voice prompt."""
        self._set("persona/voice", v or "")

    @property
    def role(self) -> str:
        """Who a PersonaPlex model is ('' = the reference's default role)."""
        return self._str("persona/role", "")

    @role.setter
    def role(self, v: str) -> None:
        self._set("persona/role", v or "")

    # -- audio -----------------------------------------------------------------------------------
    @property
    def input_device(self) -> str:
        """Device name ('' = the system default)."""
        return self._str("audio/input_device", "")

    @input_device.setter
    def input_device(self, v: str) -> None:
        self._set("audio/input_device", v or "")

    @property
    def output_device(self) -> str:
        return self._str("audio/output_device", "")

    @output_device.setter
    def output_device(self, v: str) -> None:
        self._set("audio/output_device", v or "")

    @property
    def echo_cancellation(self) -> bool:
        return self._bool(_ECHO_KEY, True)

    @echo_cancellation.setter
    def echo_cancellation(self, v: bool) -> None:
        self._set(_ECHO_KEY, bool(v))

    @property
    def echo_suppressor(self) -> bool:
        """The residual echo suppressor after echo cancellation (the CLI's --echo-suppressor), off by default."""
        return self._bool(_SUPPRESSOR_KEY, False)

    @echo_suppressor.setter
    def echo_suppressor(self, v: bool) -> None:
        self._set(_SUPPRESSOR_KEY, bool(v))

    # -- sampling --------------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        """Audio sampling temperature (the text temperature follows at 7/8 of it: Kyutai uses 0.8 and 0.7)."""
        return self._float("sampling/temperature", 0.8, 0.0, 2.0)

    @temperature.setter
    def temperature(self, v: float) -> None:
        self._set("sampling/temperature", float(min(2.0, max(0.0, v))))

    # -- window / files --------------------------------------------------------------------------
    @property
    def geometry(self) -> QByteArray | None:
        v = self._s.value("window/geometry")
        return v if isinstance(v, QByteArray) else None

    @geometry.setter
    def geometry(self, v: QByteArray) -> None:
        self._set("window/geometry", v)

    @property
    def save_folder(self) -> str:
        """Where 'Save conversation' last saved ('' = home)."""
        return self._str("files/save_folder", "")

    @save_folder.setter
    def save_folder(self, v: str) -> None:
        self._set("files/save_folder", v or "")
