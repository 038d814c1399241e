"""Which member of the Moshi family a config describes; those this port does not run are refused by name.

Kyutai's repositories share one `config.json` schema (moshi.models.loaders): `model_type` says the kind
("moshi" when absent), and a few keys mark models built on the same transformers with something more (a
TTS or STT configuration, cross-attention to an image, grouped-query attention). Running such a model
as plain Moshi would load, or nearly, and then produce nonsense: each is refused with one sentence that
names it.
"""

from __future__ import annotations

from ..errors import ConfigError
from .common import show_value

# model_type -> what it is, for the kinds this port runs
RUNS = {
    "moshi": "Moshi (speech dialogue)",
    "hibiki": "Hibiki (French to English speech translation)",
    "stt": "Kyutai's STT (speech-to-text)",
    "personaplex": "PersonaPlex (speech dialogue with a voice and a role)",
}

# model_type -> the member's name, for the kinds of Kyutai's loaders this port does not run
NOT_RUN = {
    "tts": "Kyutai's TTS (text-to-speech)",
    "moshivis": "MoshiVis (Moshi talking about an image)",
}

_ADVICE = "use Kyutai's own `moshi` package for it"


def _refuse(source: str, name: str, why: str) -> ConfigError:
    return ConfigError(
        f"{source}: {why} makes it {name}, a model of the Moshi family this port does not run; {_ADVICE}."
    )


def member(raw: dict, source: str) -> str:
    """The model_type of a config this port runs (one of RUNS); ConfigError naming any other member.

    Checked before any other key, so that a TTS config is called a TTS model, not a bad Moshi config.
    """
    kind = raw.get("model_type", "moshi")
    if raw.get("tts_config") or kind == "tts":
        raise _refuse(source, NOT_RUN["tts"], "its tts_config" if raw.get("tts_config") else "model_type 'tts'")
    if raw.get("stt_config") and kind != "stt" and kind in RUNS:  # an unknown model_type is said as such below
        raise ConfigError(
            f"{source}: stt_config belongs to speech-to-text models only: set model_type to 'stt' "
            f"(not {show_value(kind)}) or remove stt_config"
        )
    if raw.get("cross_attention") or kind == "moshivis":
        raise _refuse(
            source,
            NOT_RUN["moshivis"],
            "cross-attention (to image tokens)" if raw.get("cross_attention") else "model_type 'moshivis'",
        )
    kv_repeat = raw.get("kv_repeat", 1)
    if kv_repeat not in (1, None):
        name = "Hibiki-Zero" if kind == "hibiki" else f"a {kind} model"
        raise _refuse(source, name, f"grouped-query attention (kv_repeat {show_value(kv_repeat)})")
    if not isinstance(kind, str) or kind not in RUNS:
        known = ", ".join(repr(k) for k in RUNS)
        raise ConfigError(
            f"{source}: model_type {show_value(kind)} is not a model this port knows (it runs {known}); {_ADVICE}."
        )
    return kind


def refuse_unknown_keys(unknown: list[str], kind: str, source: str) -> None:
    """A key the reader does not know may change the architecture: refused, never ignored."""
    if {"seanet", "quantizer"} <= set(unknown):  # mimi_config.json, given for the model's config.json
        raise ConfigError(
            f"{source} is the config of Mimi (the audio codec), not a language model's: name the model's own "
            "config (config.json)"
        )
    if unknown:
        raise ConfigError(
            f"{source}: unknown keys {unknown}: not a {kind} config this port knows (they may change the model, "
            f"such as another member of the Moshi family), so it is not run; {_ADVICE}."
        )
