"""What the app tells a person, in the window's words: the places it names are the window's own labels.

The library's errors are written for every front end; where one names a command-line flag (`--config`,
`--input-device`, `python -m moshi_mlx.run --list-devices`) the app names the window's setting instead,
and it adds its own advice where an error carries a structured hint (`MoshiError.local_files_help`).
"""

from __future__ import annotations

import re

from moshi_mlx.audio.devices import DeviceInfo
from moshi_mlx.errors import MoshiError

from .window import AUDIO_BOX, INPUT_ROW, MODEL_BOX, OUTPUT_ROW, PRECISION_ROW, WEIGHTS_ROW

WEIGHTS_FOLDER = f"{MODEL_BOX} → {WEIGHTS_ROW}"
PRECISION = f"{MODEL_BOX} → {PRECISION_ROW}"
PLACE = {"input": f"{AUDIO_BOX} → {INPUT_ROW}", "output": f"{AUDIO_BOX} → {OUTPUT_ROW}"}
_THING = {"input": "microphone", "output": "speaker"}

# Command-line advice -> the window's setting, most specific first; the last rules catch any flag left.
_CLI = [
    (re.compile(r"Use the 4-bit weights \(kyutai/[^)]*\)"), f"Choose 4-bit under {PRECISION}"),
    (re.compile(r"pick a smaller precision"), f"pick a smaller precision under {PRECISION}"),
    (re.compile(r"; pass the LM weights\."), f": choose a folder of Moshi's weights under {WEIGHTS_FOLDER}."),
    (re.compile(r"\s*\(`python -m moshi_mlx\.run --list-devices`\)"), f" under {AUDIO_BOX}"),
    (re.compile(r"\(--config\)"), "(the config.json in the weights folder)"),
    (re.compile(r"with --input-device"), f"under {PLACE['input']}"),
    (re.compile(r"with --output-device"), f"under {PLACE['output']}"),
    (re.compile(r"--input-device"), PLACE["input"]),
    (re.compile(r"--output-device"), PLACE["output"]),
    (re.compile(r"--list-devices"), AUDIO_BOX),
    (re.compile(r"--config\b"), "the config.json in the weights folder"),
    (re.compile(r"--(?:hf-repo|moshi-weight|mimi-weight|tokenizer|mimi-config)\b"), WEIGHTS_FOLDER),
]


def for_window(error: MoshiError | str) -> str:
    """A library error's message with the window's settings where it names command-line flags."""
    text = str(error)
    for pattern, place in _CLI:
        text = pattern.sub(place, text)
    if isinstance(error, MoshiError) and error.local_files_help:
        text = f"{text.rstrip('.')}. Or choose a folder of weights you already have under {WEIGHTS_FOLDER}."
    return text


def other_folder(error: MoshiError | str) -> str:
    """A weights-folder problem, with the advice to pick another folder where the window has it."""
    return f"{for_window(str(error)).rstrip('.')}. Or choose another folder under {WEIGHTS_FOLDER}."


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
        raise DeviceProblem(f"No {thing} found", f"Moshi {use} a {thing}, and this computer has none connected. "
                            f"Connect one (a headset will do), choose it under {place}, "
                            "and press Start again.")  # fmt: skip
    if chosen:
        match = [d for d in usable if d.name == chosen]
        if not match:
            raise DeviceProblem(f"The {thing} is not connected",
                                f"“{chosen}”, chosen under {place}, is not connected. "
                                f"Connect it, or choose another {thing} there.")  # fmt: skip
        return match[0]
    default = [d for d in usable if (d.is_default_input if kind == "input" else d.is_default_output)]
    if not default:
        raise DeviceProblem(f"No default {thing}", f"This computer has no default {thing}: choose one under {place}.")
    return default[0]
