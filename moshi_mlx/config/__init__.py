"""Model configurations as frozen dataclasses, read from Kyutai's JSON schema.

Presets are Kyutai's own JSON files under `presets/`, read by the same `from_kyutai` functions.
Derived numbers are properties, not literals. One module per model: `transformer` (a stack, shared),
`mimi`, `lm`; `common` holds what they share.
"""

from .common import PRESETS, read_json_object
from .lm import DEFAULT_PRESET, DepformerConfig, LmConfig, SttConfig, preset_path
from .mimi import MimiConfig, QuantizerConfig, SeanetConfig
from .transformer import GATINGS, NORMS, TransformerConfig

__all__ = [
    "DEFAULT_PRESET",
    "GATINGS",
    "NORMS",
    "PRESETS",
    "DepformerConfig",
    "LmConfig",
    "MimiConfig",
    "QuantizerConfig",
    "SeanetConfig",
    "SttConfig",
    "TransformerConfig",
    "preset_path",
    "read_json_object",
]
