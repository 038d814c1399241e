"""The Moshi LM's configuration (temporal transformer, depformer, streams), read from Kyutai's JSON schema."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from . import family
from .common import (
    MAX_CARD,
    MAX_CONTEXT,
    MAX_DELAY,
    MAX_FEEDFORWARD,
    MAX_HIDDEN_SCALE,
    MAX_LAYER_SCALE,
    MAX_LAYERS,
    MAX_PERIOD,
    MAX_STREAMS,
    MAX_WIDTH,
    PRESETS,
    Fields,
    read_json_object,
    show_value,
)
from .conditioner import LutConditionerConfig, read_conditioners
from .transformer import GATINGS, NORMS, POSITIONAL, TransformerConfig

_LM_GATINGS = tuple(g for g in GATINGS if g != "none")  # the LM's MLPs are gated
DEFAULT_PRESET = "moshi_7b_202409"  # Kyutai's released Moshi 7B, the config when a model has none
MAX_SECONDS = 60.0  # bound of an STT model's audio delay and silence prefix (the releases: 0.5 / 2.5 s, 0 / 1 s)
# model_type -> the preset a config naming only its type (and hub metadata) stands for: NVIDIA's reference
# builds PersonaPlex from constants and its config.json carries little more than the type.
MODEL_PRESETS = {"moshi": DEFAULT_PRESET, "personaplex": "personaplex_7b_v1"}
# PersonaPlex's depformer holds dep_q = 16 slices: 0-7 generate Moshi's voice, 8-15 predict the user's stream,
# which generation always provides (the reference's AUDIO_TOKENS_PER_STREAM = 8), so they never change an output.
PERSONAPLEX_AGENT_CODEBOOKS = 8


def preset_path(name: str = DEFAULT_PRESET) -> Path:
    """The JSON file of an LM preset (Kyutai's own, under presets/); ConfigError naming the known ones."""
    path = PRESETS / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS.glob("*.json"))
        raise ConfigError(f"unknown preset {name!r}; known presets: {known}")
    return path


def _stack(source: str, which: str, fields: dict) -> TransformerConfig:
    """A transformer of the LM; a broken invariant (heads that do not divide the width) names the stack."""
    try:
        return TransformerConfig(**fields)
    except ConfigError as e:
        raise ConfigError(f"{source}: {which}transformer: {e}") from None


@dataclass(frozen=True)
class DepformerConfig:
    """The depth transformer: one small transformer per generated codebook ("slice") sharing one cache.

    Each slice has its own projection from the temporal transformer (`linear_in`), its own embedding of
    the previous token of the frame (`emb`), its own transformer weights and output head (`linear_out`).
    """

    transformer: TransformerConfig  # one slice's stack; context = num_slices (one frame)
    num_slices: int  # dep_q of the JSON: slices the checkpoint holds (PersonaPlex: 16, of which 8 generate)
    multi_linear: bool = True  # False: the reference shares one depformer_in across slices


# Keys of Kyutai's JSON schema this port reads, and those it deliberately ignores (with why).
_LM_IGNORED_KEYS = {
    "depformer_causal": "deprecated; the reference drops it (the depformer is always causal)",
    "depformer_context": "the reference overrides it: the depformer attends over one frame (dep_q steps)",
    "existing_text_end_padding_id": "only used in training",
    "lm_gen_config": "sampling defaults of Kyutai's server; ours are pipeline.Sampling's (the reference's)",
    "mimi_name": "hub metadata",
    "moshi_name": "hub metadata",
    "tokenizer_name": "hub metadata",
    "mimi_config_name": "hub metadata",
    "model_id": "hub metadata",
    "quantization": "read by load_lm (weights.quant_config) and checked against the weight file",
    "model_files": "read by load_lm (weights.quant_config): the quantization of each file of the folder",
    "version": "hub metadata (NVIDIA's PersonaPlex config.json)",
    "lora_rank": "only meaningful with lora, which must be false",
    "lora_scaling": "only meaningful with lora, which must be false",
}
# Features of the reference this port does not implement: accepted only at their inactive value.
_LM_UNSUPPORTED = {
    "demux_second_stream": False,
    "demux_second_text_stream": False,
    "depformer_weights_per_step_schedule": None,
    "depformer_low_rank_embeddings": None,
    "depformer_norm": None,
    "norm_emb": False,
    "bias_proj": False,
    "kv_repeat": 1,
    "cross_attention": False,
    "lora_name": None,  # LoRA adapters to merge: the model is not the file alone
    "lora": False,  # the same, adapters inside the file (moshi-finetune)
    "tts_config": None,  # Kyutai's text-to-speech models
}
_LM_USED_KEYS = {
    "dim",
    "num_heads",
    "num_layers",
    "hidden_scale",
    "causal",
    "layer_scale",
    "context",
    "max_period",
    "gating",
    "norm",
    "positional_embedding",
    "text_card",
    "text_card_out",
    "existing_text_padding_id",
    "n_q",
    "dep_q",
    "card",
    "delays",
    "depformer_dim",
    "depformer_dim_feedforward",
    "depformer_num_heads",
    "depformer_num_layers",
    "depformer_layer_scale",
    "depformer_multi_linear",
    "depformer_max_period",
    "depformer_gating",
    "depformer_pos_emb",
    "depformer_weights_per_step",
    "model_type",
    "stt_config",
    "extra_heads_num_heads",
    "extra_heads_dim",
    "conditioners",
    "fuser",
}


def _preset_of_sparse(raw: dict) -> dict:
    """A config holding only a known model_type and hub metadata (NVIDIA's PersonaPlex ships such a config.json;
    its reference builds the model from constants) stands for that type's preset, its own keys on top."""
    kind = raw.get("model_type", "moshi")
    if kind not in MODEL_PRESETS or set(raw) - {"model_type"} - set(_LM_IGNORED_KEYS) or "model_type" not in raw:
        return raw
    return read_json_object(preset_path(MODEL_PRESETS[kind])) | raw


def model_kind(raw: dict, source: str) -> str:
    """The model_type of a config this port runs; ConfigError naming another member of the family, or
    keys this reader does not know (they may change the architecture: refused, never ignored)."""
    kind = family.member(raw, source)
    family.refuse_unknown_keys(
        sorted(set(raw) - _LM_USED_KEYS - set(_LM_IGNORED_KEYS) - set(_LM_UNSUPPORTED)), kind, source
    )
    return kind


@dataclass(frozen=True)
class SttConfig:
    """How Kyutai's speech-to-text models (`model_type: stt`) are fed (their JSON's `stt_config`).

    The text stream lags the audio by `audio_delay_seconds` (learnt, not a stream delay): the reference
    appends that much silence to flush the last words and subtracts it (with the prefix) from word times.
    """

    audio_delay_seconds: float = 5.0  # defaults: those of Kyutai's scripts/stt_from_file_pytorch.py
    audio_silence_prefix_seconds: float = 1.0  # silence fed before the audio

    @classmethod
    def from_kyutai(cls, raw: object, source: str) -> SttConfig:
        f = Fields(raw, f"{source}: stt_config")
        f.check_keys({"audio_delay_seconds", "audio_silence_prefix_seconds"}, ())
        return cls(
            f.float("audio_delay_seconds", 0.0, MAX_SECONDS, cls.audio_delay_seconds),
            f.float("audio_silence_prefix_seconds", 0.0, MAX_SECONDS, cls.audio_silence_prefix_seconds),
        )


@dataclass(frozen=True)
class LmConfig:
    """Moshi's language model: temporal transformer over text + audio streams, depformer per frame.

    Streams: index 0 is text; 1..dep_q are Moshi's audio codebooks (generated); dep_q+1..n_q the user's.
    A speech-to-text model (`model_type` "stt") has no depformer (dep_q 0): all n_q streams are the input
    audio, and the text stream is its transcript.
    """

    transformer: TransformerConfig  # the temporal (main) transformer
    depformer: DepformerConfig | None  # None: dep_q 0 (speech-to-text)
    text_card: int  # text vocabulary; text_card itself is the initial text token
    card: int  # audio codebook size; card itself is the initial audio token
    n_q: int  # audio streams fed to the model (Moshi's + the user's)
    delays: tuple[int, ...]  # per stream, text first: steps a stream lags behind the text
    existing_text_padding_id: int = 3
    # "hibiki": translation; "stt": speech-to-text; "personaplex": 16 depformer slices, prompts (see family.RUNS)
    model_type: str = "moshi"
    conditioners: tuple[LutConditionerConfig, ...] = ()  # summed into the input at every step (Hibiki's)
    stt: SttConfig | None = None  # speech-to-text models only
    extra_heads_num_heads: int = 0  # small heads on the temporal output (the STT 1B's voice activity)
    extra_heads_dim: int = 6

    def __post_init__(self) -> None:
        if self.is_personaplex and not (
            self.depformer is not None and PERSONAPLEX_AGENT_CODEBOOKS < self.depformer.num_slices == self.n_q
        ):
            raise ConfigError(
                f"PersonaPlex's depformer predicts both voices: dep_q must equal n_q and exceed "
                f"{PERSONAPLEX_AGENT_CODEBOOKS} (got dep_q {self.dep_q}, n_q {self.n_q})"
            )
        if len(self.delays) != self.n_q + 1:
            raise ConfigError(f"delays has {len(self.delays)} entries; expected n_q + 1 = {self.n_q + 1}")
        if any(d < 0 for d in self.delays):
            raise ConfigError(f"delays must be non-negative, got {list(self.delays)}")
        if self.model_type not in family.RUNS:
            raise ConfigError(f"model_type {self.model_type!r} is not one of {tuple(family.RUNS)}")
        if self.is_stt:
            if self.dep_q != 0:
                raise ConfigError(f"a speech-to-text model generates no audio: dep_q must be 0, got {self.dep_q}")
        elif not 0 < self.dep_q <= self.n_q:
            raise ConfigError(f"dep_q {self.dep_q} must be in 1..n_q ({self.n_q})")
        elif self.user_codebooks < 1 and not self.is_personaplex:  # a dialog or translation model hears the user
            raise ConfigError(
                f"a {self.model_type} model hears the user's codebooks, n_q - dep_q of them, but n_q and dep_q are "
                f"both {self.n_q}; a depformer predicting both voices is PersonaPlex's: its config.json says "
                '"model_type": "personaplex"'
            )
        if (self.stt is not None) != self.is_stt:
            raise ConfigError("stt_config belongs to speech-to-text models (model_type 'stt') only")
        if self.transformer.context is None:
            raise ConfigError("the temporal transformer needs a finite `context` to stream")

    @property
    def dim(self) -> int:
        return self.transformer.d_model

    @property
    def is_personaplex(self) -> bool:
        return self.model_type == "personaplex"

    @property
    def dep_q(self) -> int:
        """Moshi's audio codebooks generated per frame: the depformer slices generation runs (none for STT)."""
        if self.depformer is None:
            return 0
        return PERSONAPLEX_AGENT_CODEBOOKS if self.is_personaplex else self.depformer.num_slices

    @property
    def is_stt(self) -> bool:
        return self.model_type == "stt"

    @property
    def num_codebooks(self) -> int:
        """Streams including text."""
        return self.n_q + 1

    @property
    def user_codebooks(self) -> int:
        """Audio streams the user supplies each step (8 for Moshi)."""
        return self.n_q - self.dep_q

    @property
    def max_delay(self) -> int:
        return max(self.delays)

    @property
    def initial_token_id(self) -> int:
        return self.card

    @property
    def text_initial_token_id(self) -> int:
        return self.text_card

    @property
    def text_padding_token_id(self) -> int:
        return self.existing_text_padding_id

    @classmethod
    def from_kyutai(cls, raw: dict, source: str = "LM config") -> LmConfig:
        """Read Kyutai's JSON schema (`configs/moshi_7b_202409.json`); a key it does not know is refused
        (it may describe another model of the family, see `family`).

        Every value is checked for type and range here, before anything is built (ConfigError naming it).
        """
        raw = _preset_of_sparse(raw)
        f = Fields(raw, source)
        kind = model_kind(raw, source)
        for key, inactive in _LM_UNSUPPORTED.items():
            if raw.get(key, inactive) not in (inactive, {}, []):
                raise ConfigError(
                    f"{source}: {key}={show_value(raw[key])} is not supported by this port (only Moshi-style models "
                    f"without it are); remove the key or use Kyutai's PyTorch package for this model."
                )

        if not f.flag("causal", True):
            raise ConfigError(f"{source}: causal=false cannot stream; Moshi's LM is causal")
        if not f.flag("depformer_weights_per_step", True):
            raise ConfigError(
                f"{source}: depformer_weights_per_step=false is not supported (the reference cannot "
                "stream such a depformer either)"
            )
        dim = f.int("dim", 1, MAX_WIDTH)
        text_card = f.int("text_card", 1, MAX_CARD)
        if raw.get("text_card_out", text_card) not in (None, text_card):
            raise ConfigError(f"{source}: text_card_out different from text_card is not supported")
        hidden_scale = f.float("hidden_scale", 0.0, MAX_HIDDEN_SCALE, lo_open=True)
        n_q = f.int("n_q", 1, MAX_STREAMS)
        dep_q = f.int("dep_q", 0 if kind == "stt" else 1, n_q)  # checked against model_type by __post_init__
        layer_scale = f.float("layer_scale", 0.0, MAX_LAYER_SCALE, None, lo_open=True, nullable=True)
        temporal = _stack(
            source,
            "",
            dict(
                d_model=dim,
                num_heads=f.int("num_heads", 1, dim),
                num_layers=f.int("num_layers", 1, MAX_LAYERS),
                dim_feedforward=int(hidden_scale * dim),
                causal=True,
                context=f.int("context", 1, MAX_CONTEXT),
                max_period=f.float("max_period", 0.0, MAX_PERIOD, 10_000.0, lo_open=True),
                norm=f.choice("norm", NORMS, "layer_norm"),
                gating=f.choice("gating", _LM_GATINGS, "none"),
                positional_embedding=f.choice("positional_embedding", POSITIONAL, "sin"),
                layer_scale=layer_scale,
            ),
        )
        fields: dict[str, Any] = dict(
            transformer=temporal,
            depformer=None if dep_q == 0 else _depformer(f, source, temporal, dep_q, hidden_scale, layer_scale),
            text_card=text_card,
            card=f.int("card", 1, MAX_CARD),
            n_q=n_q,
            delays=f.ints("delays", 0, MAX_DELAY),
            existing_text_padding_id=f.int("existing_text_padding_id", 0, text_card - 1, 3),
            model_type=kind,
            conditioners=read_conditioners(raw, source),
            stt=SttConfig.from_kyutai(raw.get("stt_config") or {}, source) if kind == "stt" else None,
            extra_heads_num_heads=f.int("extra_heads_num_heads", 0, MAX_STREAMS, 0),
            extra_heads_dim=f.int("extra_heads_dim", 1, MAX_WIDTH, 6),
        )
        try:
            return cls(**fields)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> LmConfig:
        return cls.from_kyutai(read_json_object(path), source=str(path))

    @classmethod
    def preset(cls, name: str = DEFAULT_PRESET) -> LmConfig:
        return cls.from_json(preset_path(name))


def _depformer(
    f: Fields, source: str, temporal: TransformerConfig, dep_q: int, hidden_scale: float, layer_scale: float | None
) -> DepformerConfig:
    """The depformer_* keys of Kyutai's schema (a model with dep_q 0 has no depformer: they are not read)."""
    raw = f.raw
    dep_dim = f.int("depformer_dim", 1, MAX_WIDTH)
    dep_ff = raw.get("depformer_dim_feedforward")
    if isinstance(dep_ff, list):
        sizes = f.ints("depformer_dim_feedforward", 1, MAX_FEEDFORWARD, max_len=MAX_STREAMS)
        if len(set(sizes)) != 1:
            raise ConfigError(f"{source}: per-step depformer_dim_feedforward lists are not supported")
        dep_ff = sizes[0]
    elif dep_ff is None:
        dep_ff = int(hidden_scale * dep_dim)
    else:
        dep_ff = f.int("depformer_dim_feedforward", 1, MAX_FEEDFORWARD)
    return DepformerConfig(
        transformer=_stack(
            source,
            "depformer ",
            dict(
                d_model=dep_dim,
                num_heads=f.int("depformer_num_heads", 1, dep_dim),
                num_layers=f.int("depformer_num_layers", 1, MAX_LAYERS, temporal.num_layers),
                dim_feedforward=dep_ff,
                causal=True,
                context=dep_q,
                max_period=f.float("depformer_max_period", 0.0, MAX_PERIOD, temporal.max_period, lo_open=True),
                norm=temporal.norm,
                gating=f.choice("depformer_gating", _LM_GATINGS, temporal.gating),
                positional_embedding=f.choice("depformer_pos_emb", POSITIONAL, "sin"),
                layer_scale=f.float(
                    "depformer_layer_scale", 0.0, MAX_LAYER_SCALE, layer_scale, lo_open=True, nullable=True
                ),
            ),
        ),
        num_slices=dep_q,
        multi_linear=f.flag("depformer_multi_linear", False),
    )
