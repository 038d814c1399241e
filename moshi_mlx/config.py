"""Model configurations as frozen dataclasses, read from Kyutai's JSON schema.

Presets are Kyutai's own JSON files under `presets/`, read by the same `from_kyutai` functions.
Derived numbers are properties, not literals.
"""

from __future__ import annotations

import json
import json
import math
import os
import warnings
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from .errors import ConfigError

PRESETS = Path(__file__).parent / "presets"

NORMS = ("layer_norm", "layer_norm_f32", "rms_norm", "rms_norm_f32")
GATINGS = ("none", "silu", "gelu", "relu", "sigmoid", "tanh", "elu", "leaky_relu", "mish", "softsign", "identity")


@dataclass(frozen=True)
class TransformerConfig:
    """One stack of the reference's StreamingTransformer (Mimi's, Helium's or the depformer's)."""

    d_model: int
    num_heads: int
    num_layers: int
    dim_feedforward: int
    causal: bool = True
    context: int | None = None
    max_period: float = 10_000.0
    norm: str = "layer_norm"
    gating: str = "none"                  # "none": linear1 -> GELU (exact) -> linear2
    positional_embedding: str = "rope"    # "rope" or "none"
    layer_scale: float | None = None      # None: no LayerScale parameters
    weights_per_step: int = 0             # depformer: separate projections and MLP per step

    def __post_init__(self) -> None:
        if self.d_model % self.num_heads:
            raise ConfigError(f"d_model {self.d_model} is not a multiple of num_heads {self.num_heads}")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; expected one of {NORMS}")
        if self.gating not in GATINGS:
            raise ConfigError(f"unknown gating {self.gating!r}; expected one of {GATINGS}")
        if self.positional_embedding not in ("rope", "none"):
            raise ConfigError(
                f"positional_embedding {self.positional_embedding!r} is not supported; use 'rope' or 'none'"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.num_heads

    @property
    def gating_hidden(self) -> int:
        """Hidden width of a gated MLP, as the reference's ActivationGating computes it."""
        if self.dim_feedforward == 4 * self.d_model:
            return (21 * self.d_model) // 8
        return (2 * self.dim_feedforward) // 3


# ---- Mimi configs (SEANet, quantizer, Mimi) ----


def _check_keys(raw: dict, where: str, used: set[str], ignored: set[str]) -> None:
    """Every key is used or explicitly ignored; unknown keys are reported, not silently dropped."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(raw).__name__}")
    unknown = sorted(set(raw) - used - ignored)
    if unknown:
        warnings.warn(f"{where}: ignoring unknown keys {unknown}", stacklevel=3)


def _require(raw: dict, where: str, key: str, allowed: tuple) -> None:
    if key in raw and raw[key] not in allowed:
        raise ConfigError(f"{where}: {key}={raw[key]!r} is not supported by this port (supported: {allowed})")


def _get(raw: dict, where: str, key: str, default=None, kind: type = int):
    if key not in raw:
        if default is None:
            raise ConfigError(f"{where}: missing key {key!r}")
        return default
    value = raw[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}: {key} must be {kind.__name__}, got {value!r}")
    return value


@dataclass(frozen=True)
class SeanetConfig:
    """SEANet encoder/decoder (causal, ELU, weight norm already folded into the weights)."""

    channels: int = 1
    dimension: int = 512
    n_filters: int = 64
    n_residual_layers: int = 1
    ratios: tuple[int, ...] = (8, 6, 5, 4)  # decoder (upsampling) order; the encoder runs them reversed
    kernel_size: int = 7
    residual_kernel_size: int = 3
    last_kernel_size: int = 3
    dilation_base: int = 2
    compress: int = 2
    pad_mode: str = "constant"  # left padding of the causal convs: "constant" (zeros) or "replicate"

    def __post_init__(self) -> None:
        if not self.ratios or any(r < 1 for r in self.ratios):
            raise ConfigError(f"seanet ratios must be positive integers, got {self.ratios}")
        if self.pad_mode not in ("constant", "replicate"):
            raise ConfigError(f"seanet pad_mode {self.pad_mode!r}: use 'constant' or 'replicate'")

    @property
    def hop_length(self) -> int:
        """Audio samples per encoder step."""
        return math.prod(self.ratios)

    @classmethod
    def from_kyutai(cls, raw: dict) -> SeanetConfig:
        where = "mimi config 'seanet'"
        used = {"channels", "dimension", "n_filters", "n_residual_layers", "ratios", "kernel_size",
                "residual_kernel_size", "last_kernel_size", "dilation_base", "compress", "pad_mode",
                "causal", "activation", "activation_params", "norm", "true_skip"}
        ignored = {"disable_norm_outer_blocks", "norm_params", "trim_right_ratio", "final_activation",
                   "final_activation_params"}
        _check_keys(raw, where, used, ignored)
        _require(raw, where, "causal", (True,))
        _require(raw, where, "activation", ("ELU",))
        _require(raw, where, "norm", ("none",))  # released weights have weight norm folded in
        _require(raw, where, "true_skip", (True,))
        _require(raw, where, "trim_right_ratio", (1.0,))
        _require(raw, where, "final_activation", (None,))
        if raw.get("activation_params", {"alpha": 1.0}) != {"alpha": 1.0}:
            raise ConfigError(f"{where}: only ELU with alpha 1.0 is supported")
        ratios = raw.get("ratios", [8, 6, 5, 4])
        if not isinstance(ratios, list) or not all(isinstance(r, int) for r in ratios):
            raise ConfigError(f"{where}: ratios must be a list of integers, got {ratios!r}")
        return cls(
            channels=_get(raw, where, "channels", 1),
            dimension=_get(raw, where, "dimension"),
            n_filters=_get(raw, where, "n_filters"),
            n_residual_layers=_get(raw, where, "n_residual_layers", 1),
            ratios=tuple(ratios),
            kernel_size=_get(raw, where, "kernel_size", 7),
            residual_kernel_size=_get(raw, where, "residual_kernel_size", 3),
            last_kernel_size=_get(raw, where, "last_kernel_size", 7),
            dilation_base=_get(raw, where, "dilation_base", 2),
            compress=_get(raw, where, "compress", 2),
            pad_mode=_get(raw, where, "pad_mode", "constant", str),
        )


@dataclass(frozen=True)
class QuantizerConfig:
    """Split residual VQ: `n_q_semantic` codebooks with their own projections, then the acoustic ones."""

    dimension: int = 256          # codebook vector size
    n_q: int = 32                 # codebooks stored (semantic + acoustic)
    bins: int = 2048              # entries per codebook
    input_dimension: int = 512
    output_dimension: int = 512
    n_q_semantic: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.n_q_semantic < self.n_q:
            raise ConfigError(f"quantizer needs 0 < n_q_semantic ({self.n_q_semantic}) < n_q ({self.n_q})")

    @classmethod
    def from_kyutai(cls, raw: dict) -> QuantizerConfig:
        where = "mimi config 'quantizer'"
        used = {"dimension", "n_q", "bins", "input_dimension", "output_dimension", "n_q_semantic"}
        ignored = {"q_dropout", "no_quantization_rate", "decay", "threshold_usage_ratio", "replaced_usage_ratio"}
        _check_keys(raw, where, used, ignored)
        dim = _get(raw, where, "dimension")
        return cls(
            dimension=dim,
            n_q=_get(raw, where, "n_q"),
            bins=_get(raw, where, "bins"),
            input_dimension=raw.get("input_dimension") or dim,
            output_dimension=raw.get("output_dimension") or dim,
            n_q_semantic=_get(raw, where, "n_q_semantic", 1),
        )


def _mimi_transformer_from_kyutai(raw: dict, dimension: int) -> TransformerConfig:
    where = "mimi config 'transformer'"
    used = {"d_model", "num_heads", "num_layers", "dim_feedforward", "causal", "context", "max_period",
            "norm", "gating", "positional_embedding", "layer_scale", "input_dimension", "output_dimensions",
            "conv_layout"}
    ignored = {"bias_ff", "bias_attn", "kv_repeat"}
    _check_keys(raw, where, used, ignored)
    _require(raw, where, "bias_ff", (False,))
    _require(raw, where, "bias_attn", (False,))
    _require(raw, where, "kv_repeat", (1,))
    if raw.get("input_dimension", dimension) != dimension or list(raw.get("output_dimensions", [dimension])) != [
        dimension
    ]:
        raise ConfigError(
            f"{where}: input_dimension and output_dimensions must be the SEANet dimension {dimension} "
            f"(got {raw.get('input_dimension')}, {raw.get('output_dimensions')})"
        )
    layer_scale = raw.get("layer_scale")
    context = raw.get("context")
    return TransformerConfig(
        d_model=_get(raw, where, "d_model"),
        num_heads=_get(raw, where, "num_heads"),
        num_layers=_get(raw, where, "num_layers"),
        dim_feedforward=_get(raw, where, "dim_feedforward"),
        causal=bool(raw.get("causal", True)),
        context=None if context is None else _get(raw, where, "context"),
        max_period=_get(raw, where, "max_period", 10_000.0, float),
        norm=_get(raw, where, "norm", "layer_norm", str),
        gating=_get(raw, where, "gating", "none", str),
        positional_embedding=_get(raw, where, "positional_embedding", "rope", str),
        layer_scale=None if layer_scale is None else _get(raw, where, "layer_scale", kind=float),
    )


@dataclass(frozen=True)
class MimiConfig:
    """The Mimi codec: SEANet + transformers + learnt 2x resampling + split RVQ."""

    seanet: SeanetConfig
    quantizer: QuantizerConfig
    transformer: TransformerConfig   # shared by the encoder and decoder transformers
    sample_rate: int = 24_000
    channels: int = 1
    frame_rate: float = 12.5
    num_codebooks: int = 8           # codebooks used by encode/decode (not stored in Kyutai's schema)

    def __post_init__(self) -> None:
        if self.channels != 1 or self.seanet.channels != 1:
            raise ConfigError("only mono Mimi (channels 1) is supported")
        if not self.quantizer.n_q_semantic <= self.num_codebooks <= self.quantizer.n_q:
            raise ConfigError(
                f"num_codebooks {self.num_codebooks} must be between {self.quantizer.n_q_semantic} and the "
                f"{self.quantizer.n_q} codebooks the quantizer holds"
            )
        if self.quantizer.input_dimension != self.seanet.dimension or (
            self.quantizer.output_dimension != self.seanet.dimension
        ):
            raise ConfigError("quantizer input/output dimensions must equal the SEANet dimension")
        ratio = self.encoder_frame_rate / self.frame_rate
        if ratio != int(ratio) or ratio < 1:
            raise ConfigError(
                f"encoder frame rate {self.encoder_frame_rate} Hz must be an integer multiple of the frame "
                f"rate {self.frame_rate} Hz"
            )
        if self.sample_rate / self.frame_rate != self.frame_size:
            raise ConfigError(f"sample_rate / frame_rate = {self.sample_rate / self.frame_rate} is not whole")

    @property
    def encoder_frame_rate(self) -> float:
        """Rate of the SEANet latent (25 Hz for the released Mimi)."""
        return self.sample_rate / self.seanet.hop_length

    @property
    def resample_stride(self) -> int:
        """Stride of the learnt down/up-sampling between the SEANet rate and the frame rate."""
        return int(self.encoder_frame_rate / self.frame_rate)

    @property
    def frame_size(self) -> int:
        """Audio samples per codec frame (1920 = 80 ms at 24 kHz for the released Mimi)."""
        return int(self.sample_rate / self.frame_rate)

    @property
    def cardinality(self) -> int:
        return self.quantizer.bins

    def with_num_codebooks(self, n: int) -> MimiConfig:
        return replace(self, num_codebooks=n)

    @classmethod
    def from_kyutai(cls, raw: dict, num_codebooks: int = 8) -> MimiConfig:
        """Read Kyutai's mimi config schema (the reference's `_mimi_config`: seanet/quantizer/transformer)."""
        where = "mimi config"
        _check_keys(raw, where, {"sample_rate", "channels", "frame_rate", "seanet", "quantizer", "transformer"},
                    set())
        for key in ("seanet", "quantizer", "transformer"):
            if not isinstance(raw.get(key), dict):
                raise ConfigError(f"{where}: missing or malformed {key!r} section")
        seanet = SeanetConfig.from_kyutai(raw["seanet"])
        return cls(
            seanet=seanet,
            quantizer=QuantizerConfig.from_kyutai(raw["quantizer"]),
            transformer=_mimi_transformer_from_kyutai(raw["transformer"], seanet.dimension),
            sample_rate=_get(raw, where, "sample_rate", 24_000),
            channels=_get(raw, where, "channels", 1),
            frame_rate=_get(raw, where, "frame_rate", 12.5, float),
            num_codebooks=num_codebooks,
        )

    @classmethod
    def preset(cls, name: str = "mimi_202407", num_codebooks: int = 8) -> MimiConfig:
        """A config shipped under `moshi_mlx/presets/` (Kyutai's JSON)."""
        path = resources.files("moshi_mlx") / "presets" / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"no Mimi preset named {name!r}")
        return cls.from_kyutai(json.loads(path.read_text()), num_codebooks)



# ---- Language model configs (depformer, LM) ----


@dataclass(frozen=True)
class DepformerConfig:
    """The depth transformer: one small transformer per generated codebook ("slice") sharing one cache.

    Each slice has its own projection from the temporal transformer (`linear_in`), its own embedding of
    the previous token of the frame (`emb`), its own transformer weights and output head (`linear_out`).
    """

    transformer: TransformerConfig   # one slice's stack; context = num_slices (one frame)
    num_slices: int                  # dep_q: codebooks generated per frame
    multi_linear: bool = True        # False: the reference shares one depformer_in across slices


# Keys of Kyutai's JSON schema this port reads, and those it deliberately ignores (with why).
_LM_IGNORED_KEYS = {
    "depformer_causal": "deprecated; the reference drops it (the depformer is always causal)",
    "depformer_context": "the reference overrides it: the depformer attends over one frame (dep_q steps)",
    "existing_text_end_padding_id": "only used in training",
    "extra_heads_dim": "only meaningful with extra heads, which must be absent (extra_heads_num_heads 0)",
    "model_type": "metadata",
    "mimi_name": "hub metadata",
    "moshi_name": "hub metadata",
    "tokenizer_name": "hub metadata",
    "mimi_config_name": "hub metadata",
    "model_id": "hub metadata",
    "quantization": "read by load_lm (weights.quant_config) and checked against the weight file",
    "model_files": "read by load_lm (weights.quant_config): the quantization of each file of the folder",
}
# Features of the reference this port does not implement: accepted only at their inactive value.
_LM_UNSUPPORTED = {
    "conditioners": None,
    "fuser": None,
    "demux_second_stream": False,
    "demux_second_text_stream": False,
    "depformer_weights_per_step_schedule": None,
    "depformer_low_rank_embeddings": None,
    "depformer_norm": None,
    "extra_heads_num_heads": 0,
    "norm_emb": False,
    "bias_proj": False,
    "kv_repeat": 1,
    "cross_attention": False,
}
_LM_USED_KEYS = {
    "dim", "num_heads", "num_layers", "hidden_scale", "causal", "layer_scale", "context", "max_period",
    "gating", "norm", "positional_embedding", "text_card", "text_card_out", "existing_text_padding_id",
    "n_q", "dep_q", "card", "delays", "depformer_dim", "depformer_dim_feedforward", "depformer_num_heads",
    "depformer_num_layers", "depformer_layer_scale", "depformer_multi_linear", "depformer_max_period",
    "depformer_gating", "depformer_pos_emb", "depformer_weights_per_step",
}


@dataclass(frozen=True)
class LmConfig:
    """Moshi's language model: temporal transformer over text + audio streams, depformer per frame.

    Streams: index 0 is text; 1..dep_q are Moshi's audio codebooks (generated); dep_q+1..n_q the user's.
    """

    transformer: TransformerConfig   # the temporal (main) transformer
    depformer: DepformerConfig
    text_card: int                   # text vocabulary; text_card itself is the initial text token
    card: int                        # audio codebook size; card itself is the initial audio token
    n_q: int                         # audio streams fed to the model (Moshi's + the user's)
    delays: tuple[int, ...]          # per stream, text first: steps a stream lags behind the text
    existing_text_padding_id: int = 3

    def __post_init__(self) -> None:
        if len(self.delays) != self.n_q + 1:
            raise ConfigError(f"delays has {len(self.delays)} entries; expected n_q + 1 = {self.n_q + 1}")
        if any(d < 0 for d in self.delays):
            raise ConfigError(f"delays must be non-negative, got {list(self.delays)}")
        if not 0 < self.dep_q <= self.n_q:
            raise ConfigError(f"dep_q {self.dep_q} must be in 1..n_q ({self.n_q})")
        if self.transformer.context is None:
            raise ConfigError("the temporal transformer needs a finite `context` to stream")

    @property
    def dim(self) -> int:
        return self.transformer.d_model

    @property
    def dep_q(self) -> int:
        return self.depformer.num_slices

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
    def from_kyutai(cls, raw: dict, source: str = "LM config") -> "LmConfig":
        """Read Kyutai's JSON schema (`configs/moshi_7b_202409.json`); warn on keys it does not know."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: expected a JSON object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _LM_USED_KEYS - set(_LM_IGNORED_KEYS) - set(_LM_UNSUPPORTED))
        if unknown:
            warnings.warn(f"{source}: ignoring unknown keys {unknown}", stacklevel=2)
        for key, inactive in _LM_UNSUPPORTED.items():
            if raw.get(key, inactive) not in (inactive, {}, []):
                raise ConfigError(
                    f"{source}: {key}={raw[key]!r} is not supported by this port (only Moshi-style models "
                    f"without it are); remove the key or use Kyutai's PyTorch package for this model."
                )

        def need(key: str):
            if key not in raw:
                raise ConfigError(f"{source}: missing required key {key!r}")
            return raw[key]

        try:
            dim = int(need("dim"))
            if not bool(raw.get("causal", True)):
                raise ConfigError(f"{source}: causal=false cannot stream; Moshi's LM is causal")
            if not bool(raw.get("depformer_weights_per_step", True)):
                raise ConfigError(
                    f"{source}: depformer_weights_per_step=false is not supported (the reference cannot "
                    "stream such a depformer either)"
                )
            text_card = int(need("text_card"))
            if raw.get("text_card_out", text_card) not in (None, text_card):
                raise ConfigError(f"{source}: text_card_out different from text_card is not supported")
            temporal = TransformerConfig(
                d_model=dim,
                num_heads=int(need("num_heads")),
                num_layers=int(need("num_layers")),
                dim_feedforward=int(float(need("hidden_scale")) * dim),
                causal=True,
                context=int(need("context")),
                max_period=float(raw.get("max_period", 10_000)),
                norm=str(raw.get("norm", "layer_norm")),
                gating=str(raw.get("gating", "none")),
                positional_embedding=str(raw.get("positional_embedding", "sin")),
                layer_scale=raw.get("layer_scale"),
            )
            dep_dim = int(need("depformer_dim"))
            dep_ff = raw.get("depformer_dim_feedforward")
            if isinstance(dep_ff, list):
                if len(set(dep_ff)) != 1:
                    raise ConfigError(f"{source}: per-step depformer_dim_feedforward lists are not supported")
                dep_ff = dep_ff[0]
            if dep_ff is None:
                dep_ff = int(float(need("hidden_scale")) * dep_dim)
            dep_q = int(need("dep_q"))
            depformer = DepformerConfig(
                transformer=TransformerConfig(
                    d_model=dep_dim,
                    num_heads=int(need("depformer_num_heads")),
                    num_layers=int(raw.get("depformer_num_layers", temporal.num_layers)),
                    dim_feedforward=int(dep_ff),
                    causal=True,
                    context=dep_q,
                    max_period=float(raw.get("depformer_max_period", temporal.max_period)),
                    norm=temporal.norm,
                    gating=str(raw.get("depformer_gating", temporal.gating)),
                    positional_embedding=str(raw.get("depformer_pos_emb", "sin")),
                    layer_scale=raw.get("depformer_layer_scale", temporal.layer_scale),
                ),
                num_slices=dep_q,
                multi_linear=bool(raw.get("depformer_multi_linear", False)),
            )
            if temporal.gating == "none" or depformer.transformer.gating == "none":
                raise ConfigError(f"{source}: only gated MLPs (gating='silu', ...) are supported in the LM")
            return cls(
                transformer=temporal,
                depformer=depformer,
                text_card=text_card,
                card=int(need("card")),
                n_q=int(need("n_q")),
                delays=tuple(int(d) for d in need("delays")),
                existing_text_padding_id=int(raw.get("existing_text_padding_id", 3)),
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{source}: malformed value ({e})") from None

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> "LmConfig":
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the LM config ({e.strerror})") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: not valid JSON ({e})") from None
        return cls.from_kyutai(raw, source=str(path))

    @classmethod
    def preset(cls, name: str = "moshi_7b_202409") -> "LmConfig":
        path = PRESETS / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in PRESETS.glob("*.json"))
            raise ConfigError(f"unknown preset {name!r}; known presets: {known}")
        return cls.from_json(path)
