"""Mimi's configuration (SEANet, split RVQ, transformers), read from Kyutai's mimi config schema."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..errors import ConfigError
from .common import (
    MAX_CARD,
    MAX_CONTEXT,
    MAX_FEEDFORWARD,
    MAX_KERNEL,
    MAX_LAYER_SCALE,
    MAX_LAYERS,
    MAX_PERIOD,
    MAX_RATE,
    MAX_RATIO,
    MAX_RESIDUAL,
    MAX_STREAMS,
    MAX_WIDTH,
    PRESETS,
    Fields,
    read_json_object,
)
from .transformer import GATINGS, NORMS, POSITIONAL, TransformerConfig


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
        """A key left out takes the released Mimi's value (the reference's `_seanet_kwargs`)."""
        f, d = Fields(raw, "mimi config 'seanet'"), cls()
        f.check_keys(
            {
                "channels",
                "dimension",
                "n_filters",
                "n_residual_layers",
                "ratios",
                "kernel_size",
                "residual_kernel_size",
                "last_kernel_size",
                "dilation_base",
                "compress",
                "pad_mode",
                "causal",
                "activation",
                "activation_params",
                "norm",
                "true_skip",
            },
            {
                "disable_norm_outer_blocks",
                "norm_params",
                "trim_right_ratio",
                "final_activation",
                "final_activation_params",
            },
        )
        f.require("causal", (True,))
        f.require("activation", ("ELU",))
        f.require("norm", ("none",))  # released weights have weight norm folded in
        f.require("true_skip", (True,))
        f.require("trim_right_ratio", (1.0,))
        f.require("final_activation", (None,))
        if raw.get("activation_params", {"alpha": 1.0}) != {"alpha": 1.0}:
            raise f.error("only ELU with alpha 1.0 is supported")
        return cls(
            channels=f.int("channels", 1, 16, d.channels),
            dimension=f.int("dimension", 1, MAX_WIDTH),
            n_filters=f.int("n_filters", 1, MAX_WIDTH),
            n_residual_layers=f.int("n_residual_layers", 0, MAX_RESIDUAL, d.n_residual_layers),
            ratios=f.ints("ratios", 1, MAX_RATIO, d.ratios, max_len=8),
            kernel_size=f.int("kernel_size", 1, MAX_KERNEL, d.kernel_size),
            residual_kernel_size=f.int("residual_kernel_size", 1, MAX_KERNEL, d.residual_kernel_size),
            last_kernel_size=f.int("last_kernel_size", 1, MAX_KERNEL, d.last_kernel_size),
            dilation_base=f.int("dilation_base", 1, MAX_RESIDUAL, d.dilation_base),
            compress=f.int("compress", 1, MAX_RATIO, d.compress),
            pad_mode=f.choice("pad_mode", ("constant", "replicate"), d.pad_mode),
        )


@dataclass(frozen=True)
class QuantizerConfig:
    """Split residual VQ: `n_q_semantic` codebooks with their own projections, then the acoustic ones."""

    dimension: int = 256  # codebook vector size
    n_q: int = 32  # codebooks stored (semantic + acoustic)
    bins: int = 2048  # entries per codebook
    input_dimension: int = 512
    output_dimension: int = 512
    n_q_semantic: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.n_q_semantic < self.n_q:
            raise ConfigError(f"quantizer needs 0 < n_q_semantic ({self.n_q_semantic}) < n_q ({self.n_q})")

    @classmethod
    def from_kyutai(cls, raw: dict) -> QuantizerConfig:
        f = Fields(raw, "mimi config 'quantizer'")
        f.check_keys(
            {"dimension", "n_q", "bins", "input_dimension", "output_dimension", "n_q_semantic"},
            {"q_dropout", "no_quantization_rate", "decay", "threshold_usage_ratio", "replaced_usage_ratio"},
        )
        dim = f.int("dimension", 1, MAX_WIDTH)
        n_q = f.int("n_q", 2, MAX_STREAMS)
        return cls(
            dimension=dim,
            n_q=n_q,
            bins=f.int("bins", 1, MAX_CARD),
            input_dimension=f.int("input_dimension", 0, MAX_WIDTH, None, nullable=True) or dim,  # 0/null: `dimension`
            output_dimension=f.int("output_dimension", 0, MAX_WIDTH, None, nullable=True) or dim,
            n_q_semantic=f.int("n_q_semantic", 1, n_q - 1, 1),
        )


def _mimi_transformer_from_kyutai(raw: dict, dimension: int) -> TransformerConfig:
    f = Fields(raw, "mimi config 'transformer'")
    f.check_keys(
        {
            "d_model",
            "num_heads",
            "num_layers",
            "dim_feedforward",
            "causal",
            "context",
            "max_period",
            "norm",
            "gating",
            "positional_embedding",
            "layer_scale",
            "input_dimension",
            "output_dimensions",
            "conv_layout",
        },
        {"bias_ff", "bias_attn", "kv_repeat"},
    )
    f.require("bias_ff", (False,))
    f.require("bias_attn", (False,))
    f.require("kv_repeat", (1,))
    if raw.get("input_dimension", dimension) != dimension or raw.get("output_dimensions", [dimension]) != [dimension]:
        raise f.error(
            f"input_dimension and output_dimensions must be the SEANet dimension {dimension} "
            f"(got {raw.get('input_dimension')}, {raw.get('output_dimensions')})"
        )
    d_model = f.int("d_model", 1, MAX_WIDTH)
    context = raw.get("context")
    fields: dict[str, Any] = dict(
        d_model=d_model,
        num_heads=f.int("num_heads", 1, d_model),
        num_layers=f.int("num_layers", 1, MAX_LAYERS),
        dim_feedforward=f.int("dim_feedforward", 1, MAX_FEEDFORWARD),
        causal=f.flag("causal", True),
        context=None if context is None else f.int("context", 1, MAX_CONTEXT),
        max_period=f.float("max_period", 0.0, MAX_PERIOD, 10_000.0, lo_open=True),
        norm=f.choice("norm", NORMS, "layer_norm"),
        gating=f.choice("gating", GATINGS, "none"),
        positional_embedding=f.choice("positional_embedding", POSITIONAL, "rope"),
        layer_scale=f.float("layer_scale", 0.0, MAX_LAYER_SCALE, None, lo_open=True, nullable=True),
    )
    try:
        return TransformerConfig(**fields)
    except ConfigError as e:
        raise f.error(str(e)) from None


@dataclass(frozen=True)
class MimiConfig:
    """The Mimi codec: SEANet + transformers + learnt 2x resampling + split RVQ."""

    seanet: SeanetConfig
    quantizer: QuantizerConfig
    transformer: TransformerConfig  # shared by the encoder and decoder transformers
    sample_rate: int = 24_000
    channels: int = 1
    frame_rate: float = 12.5
    num_codebooks: int = 8  # codebooks used by encode/decode (not stored in Kyutai's schema)

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
        f = Fields(raw, "mimi config")
        f.check_keys({"sample_rate", "channels", "frame_rate", "seanet", "quantizer", "transformer"}, ())
        for key in ("seanet", "quantizer", "transformer"):
            if not isinstance(raw.get(key), dict):
                raise f.error(f"missing or malformed {key!r} section")
        seanet = SeanetConfig.from_kyutai(raw["seanet"])
        sample_rate = f.int("sample_rate", 1, MAX_RATE, 24_000)
        fields: dict[str, Any] = dict(
            seanet=seanet,
            quantizer=QuantizerConfig.from_kyutai(raw["quantizer"]),
            transformer=_mimi_transformer_from_kyutai(raw["transformer"], seanet.dimension),
            sample_rate=sample_rate,
            channels=f.int("channels", 1, 16, 1),
            frame_rate=f.float("frame_rate", 0.0, sample_rate, 12.5, lo_open=True),
            num_codebooks=num_codebooks,
        )
        try:
            return cls(**fields)
        except ConfigError as e:
            raise f.error(str(e)) from None

    @classmethod
    def preset(cls, name: str = "mimi_202407", num_codebooks: int = 8) -> MimiConfig:
        """A config shipped under `moshi_mlx/presets/` (Kyutai's JSON)."""
        path = PRESETS / f"{name}.json"
        if not path.is_file():
            raise ConfigError(f"no Mimi preset named {name!r}")
        return cls.from_kyutai(read_json_object(path), num_codebooks)
