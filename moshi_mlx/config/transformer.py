"""One transformer stack's configuration (Mimi's, Helium's or the depformer's)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

NORMS = ("layer_norm", "layer_norm_f32", "rms_norm", "rms_norm_f32")
POSITIONAL = ("rope", "none")
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
    gating: str = "none"  # "none": linear1 -> GELU (exact) -> linear2
    positional_embedding: str = "rope"  # "rope" or "none"
    layer_scale: float | None = None  # None: no LayerScale parameters

    def __post_init__(self) -> None:
        for name in ("d_model", "num_heads", "num_layers", "dim_feedforward"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.context is not None and self.context < 1:
            raise ConfigError(f"context must be at least 1 step, got {self.context}")
        if self.d_model % self.num_heads:
            raise ConfigError(f"d_model {self.d_model} is not a multiple of num_heads {self.num_heads}")
        if self.positional_embedding == "rope" and self.head_dim % 2:
            raise ConfigError(
                f"RoPE needs an even head size; d_model {self.d_model} / num_heads {self.num_heads} = {self.head_dim}"
            )
        if self.gating != "none" and self.gating_hidden < 1:
            raise ConfigError(f"dim_feedforward {self.dim_feedforward} leaves no hidden units in the gated MLP")
        if self.norm not in NORMS:
            raise ConfigError(f"unknown norm {self.norm!r}; expected one of {NORMS}")
        if self.gating not in GATINGS:
            raise ConfigError(f"unknown gating {self.gating!r}; expected one of {GATINGS}")
        if self.positional_embedding not in POSITIONAL:
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
