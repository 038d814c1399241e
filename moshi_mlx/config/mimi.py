"""Mimi's configuration (SEANet, split RVQ, transformers), read from Kyutai's mimi config schema."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace

from ..errors import ConfigError
from .common import PRESETS, read_json_object
from .transformer import TransformerConfig

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
        path = PRESETS / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"no Mimi preset named {name!r}")
        return cls.from_kyutai(read_json_object(path), num_codebooks)
