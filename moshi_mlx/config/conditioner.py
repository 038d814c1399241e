"""Conditioners of the LM (Hibiki's "description"), read from Kyutai's `conditioners` and `fuser` keys.

Kyutai's schema (moshi.models.loaders.get_conditioner_provider / get_condition_fuser):
    "conditioners": {"description": {"type": "lut", "lut": {"n_bins": 31, "dim": 16, "tokenizer": "noop",
                                                            "possible_values": ["very_bad", ..., "very_good"]}}},
    "fuser": {"sum": ["description"], "prepend": [], "cross": [], "cross_attention_pos_emb": false, ...}
A lookup-table conditioner embeds one value of a fixed list ([n_bins + 1, dim], the last row for no value)
and projects it to the LM's width; the fuser sums it into the LM's input at every step. Only that is
implemented (what Hibiki uses); anything else is refused by name.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from .common import MAX_CARD, MAX_WIDTH, Fields, show_value

# keys of a LUT conditioner's block: the reference's LUTConditioner and BaseConditioner arguments
_LUT_USED = {"n_bins", "dim", "tokenizer", "possible_values", "learn_padding", "force_linear", "output_bias"}
_LUT_IGNORED = {"init_scale": "training initialisation", "pad_empty": "a value is always given at inference"}
_FUSER_IGNORED = {"cross_attention_pos_emb", "cross_attention_pos_emb_scale"}  # only with cross conditions

# What the reference's run_inference (get_condition_tensors) gives each model_type: the values that condition
# generation, and the negative ones classifier-free guidance pushes away from (with cfg_coef != 1).
CONDITIONS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "hibiki": ({"description": "very_good"}, {"description": "very_bad"}),
}


@dataclass(frozen=True)
class LutConditionerConfig:
    """One lookup-table conditioner: a value of `values` -> embedding [dim] -> projection to the LM width."""

    name: str
    n_bins: int
    dim: int
    values: tuple[str, ...]  # possible_values: value i is row i of the table
    learn_padding: bool = True  # the file holds `learnt_padding` (used only when no value is given)

    def index(self, value: str) -> int:
        """Row of `value`; ConfigError listing the possible ones."""
        if value not in self.values:
            raise ConfigError(f"{self.name} {value!r} is not one of {', '.join(self.values)}")
        return self.values.index(value)


def read_conditioners(raw: dict, source: str) -> tuple[LutConditionerConfig, ...]:
    """The summed conditioners of a config (empty without `conditioners`); ConfigError for any other kind."""
    blocks = raw.get("conditioners") or {}
    fuser = raw.get("fuser") or {}
    if not blocks:
        if fuser and any(fuser.get(k) for k in ("sum", "prepend", "cross")):
            raise ConfigError(f"{source}: fuser {show_value(fuser)} names conditioners but there are none")
        return ()
    where = f"{source}: conditioners"
    if not isinstance(blocks, dict) or not isinstance(fuser, dict):
        raise ConfigError(f"{where} and fuser must be JSON objects")
    for method in ("prepend", "cross"):
        if fuser.get(method):
            raise ConfigError(
                f"{source}: fuser {method} {show_value(fuser[method])} is not supported (only conditions summed "
                "into the input, as Hibiki's, are)"
            )
    unknown = sorted(set(fuser) - {"sum", "prepend", "cross"} - _FUSER_IGNORED)
    if unknown:
        raise ConfigError(f"{source}: unknown fuser keys {unknown}")
    summed = fuser.get("sum") or []
    if not isinstance(summed, list) or sorted(map(str, summed)) != sorted(blocks):
        raise ConfigError(
            f"{source}: fuser sum {show_value(summed)} must name each conditioner once ({', '.join(blocks)})"
        )
    out = []
    for name in summed:
        block = Fields(blocks[name], f"{where} {name!r}")
        if block.raw.get("type") != "lut":
            raise block.error(f"type {show_value(block.raw.get('type'))} is not supported (only 'lut', Hibiki's)")
        unknown = sorted(set(block.raw) - {"type", "lut"})
        if unknown:
            raise ConfigError(f"{where} {name!r}: unknown keys {unknown}")
        lut = Fields(block.raw.get("lut"), f"{where} {name!r} lut")
        lut.check_keys(_LUT_USED, _LUT_IGNORED)
        lut.require("tokenizer", ("noop",))
        if not lut.flag("force_linear", True) or lut.flag("output_bias", False):
            raise ConfigError(
                f"{where} {name!r}: only a projection without bias (the reference's default) is supported"
            )
        n_bins = lut.int("n_bins", 1, MAX_CARD)
        values = lut.raw.get("possible_values")
        if not (isinstance(values, list) and values and all(isinstance(v, str) for v in values)):
            raise ConfigError(f"{where} {name!r}: possible_values must be a list of strings (the LUT's values)")
        if len(values) > n_bins or len(set(values)) != len(values):
            raise ConfigError(f"{where} {name!r}: {len(values)} possible_values for {n_bins} bins (or repeated)")
        out.append(
            LutConditionerConfig(
                name=str(name),
                n_bins=n_bins,
                dim=lut.int("dim", 1, MAX_WIDTH),
                values=tuple(values),
                learn_padding=lut.flag("learn_padding", True),
            )
        )
    return tuple(out)
