"""What the app tells a person, in the window's words: the places it names are the window's own labels.

The library's errors name no front end's settings; where one carries a hint (`moshi_mlx.errors.Setting`),
the app adds where that setting is in the window.
"""

from __future__ import annotations

from moshi_mlx.audio.devices import DeviceInfo
from moshi_mlx.errors import MoshiError, Setting

from .window import (
    AUDIO_BOX,
    INPUT_ROW,
    MODEL_BOX,
    OUTPUT_ROW,
    PERSONA_BOX,
    PERSONA_VOICE_ROW,
    PRECISION_ROW,
    ROLE_ROW,
    WEIGHTS_ROW,
)

WEIGHTS_FOLDER = f"{MODEL_BOX} → {WEIGHTS_ROW}"
PRECISION = f"{MODEL_BOX} → {PRECISION_ROW}"
PLACE = {"input": f"{AUDIO_BOX} → {INPUT_ROW}", "output": f"{AUDIO_BOX} → {OUTPUT_ROW}"}
_THING = {"input": "microphone", "output": "speaker"}

ADVICE = {
    Setting.MICROPHONE: f"Choose the microphone under {PLACE['input']}.",
    Setting.SPEAKER: f"Choose the speaker under {PLACE['output']}.",
    Setting.MODEL_FILES: f"Or choose a folder of weights you already have under {WEIGHTS_FOLDER}.",
    Setting.PRECISION: f"Choose 4-bit under {PRECISION}.",
    Setting.CONFIG: f"The config is the config.json in the folder chosen under {WEIGHTS_FOLDER}.",
    Setting.PERSONA: f"Choose the voice under {PERSONA_BOX} → {PERSONA_VOICE_ROW}, the role under "
    f"{PERSONA_BOX} → {ROLE_ROW}.",
}


def worded(message: str, hint: Setting | None) -> str:
    """`message` followed by where the window has the hinted setting."""
    return f"{message.rstrip('.')}. {ADVICE[hint]}" if hint is not None else message


def for_window(error: MoshiError | str) -> str:
    """A library error (or a message) as the window says it: with its hint as the window's setting."""
    return worded(str(error), error.hint) if isinstance(error, MoshiError) else error


def other_folder(error: MoshiError | str) -> str:
    """A weights-folder problem, with the advice to pick another folder where the window has it."""
    return f"{str(error).rstrip('.')}. Or choose another folder under {WEIGHTS_FOLDER}."


class DeviceProblem(Exception):
    """The chosen microphone or speaker is missing: a dialog title and a message in the window's words."""

    def __init__(self, title: str, message: str) -> None:
        super().__init__(message)
        self.title, self.message = title, message


def pick_device(devices: list[DeviceInfo], kind: str, chosen: str) -> DeviceInfo:
    """The device the window's setting names ('' = the system default) among `devices`.

    Raises:
        DeviceProblem: there is none of that kind, the chosen one is not connected, or no default.
    """
    usable = [d for d in devices if (d.inputs if kind == "input" else d.outputs) > 0]
    thing, place = _THING[kind], PLACE[kind]
    if not usable:
        use = "listens through" if kind == "input" else "answers through"
        raise DeviceProblem(
            f"No {thing} found",
            f"Moshi {use} a {thing}, and this computer has none connected. "
            f"Connect one (a headset will do), choose it under {place}, "
            "and press Start again.",
        )
    if chosen:
        match = [d for d in usable if d.name == chosen]
        if not match:
            raise DeviceProblem(
                f"The {thing} is not connected",
                f"“{chosen}”, chosen under {place}, is not connected. Connect it, or choose another {thing} there.",
            )
        return match[0]
    default = [d for d in usable if (d.is_default_input if kind == "input" else d.is_default_output)]
    if not default:
        raise DeviceProblem(f"No default {thing}", f"This computer has no default {thing}: choose one under {place}.")
    return default[0]
