"""How the command-line front ends word a library error's hint (`moshi_mlx.errors.Setting`): by their flags."""

from __future__ import annotations

from ..errors import MoshiError, NoAudioDeviceError, Setting
from ..release import DEFAULT_BITS, DEFAULT_REPO, MOSHI_FILES

LIST_DEVICES = "python -m moshi_mlx.run --list-devices"
LOCAL_FLAGS = "--moshi-weight PATH --mimi-weight PATH --tokenizer PATH [--config PATH]"
CONFIG_ADVICE = "Name the config that belongs to the weights with --config."

RUN_ADVICE = {
    Setting.MICROPHONE: f"Choose the microphone with --input-device (`{LIST_DEVICES}` lists them).",
    Setting.SPEAKER: f"Choose the speaker with --output-device (`{LIST_DEVICES}` lists them).",
    Setting.MODEL_FILES: f"Or name the files: {LOCAL_FLAGS}.",
    Setting.PRECISION: f"The {DEFAULT_BITS}-bit weights: -q {DEFAULT_BITS} ({DEFAULT_REPO}, file "
    f"{MOSHI_FILES[DEFAULT_BITS]}).",
    Setting.CONFIG: CONFIG_ADVICE,
    Setting.PERSONA: "A PersonaPlex model's voice is --voice (a preset name or a recording), its role --role.",
}
QUANTIZE_ADVICE = {Setting.CONFIG: CONFIG_ADVICE}


def worded(message: str, hint: Setting | None, advice: dict[Setting, str] = RUN_ADVICE) -> str:
    """`message` followed by what the hinted setting is called on this command line (if it has one)."""
    said = advice.get(hint) if hint is not None else None
    return f"{message.rstrip('.')}. {said}" if said else message


def for_cli(error: MoshiError, advice: dict[Setting, str] = RUN_ADVICE) -> str:
    """A library error as one command line says it: its message and its hint in flags."""
    return worded(str(error), error.hint, advice)


def refused(error: MoshiError, without_device: str) -> int:
    """Says, in one `error:` line, the MoshiError that stopped a run before its work (a missing sound card
    followed by `without_device`, what works instead); returns the exit status, 2."""
    from .args import print_error

    msg = for_cli(error)
    if isinstance(error, NoAudioDeviceError):
        msg = f"{msg.rstrip('.')}. Or {without_device}."
    print_error(msg)
    return 2
