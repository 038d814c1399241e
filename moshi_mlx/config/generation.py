"""A release's own sampling defaults: the `lm_gen_config` of its config.json (Kyutai's server and
`run_inference` pass it to `LMGen`), e.g. an RL-tuned checkpoint's temperatures. Read into our names."""

from __future__ import annotations

import os

from ..sampling import TEMP_RANGE, TOP_K_RANGE
from .common import Fields, read_json_object

# Kyutai's LMGen keyword -> our Sampling field
_KEYS = {"temp": "temp", "temp_text": "text_temp", "top_k": "top_k", "top_k_text": "text_top_k"}


def release_sampling(config: str | os.PathLike | None) -> dict[str, float | int]:
    """The sampling defaults a model's config.json gives (only those it gives); ConfigError on a bad value."""
    if config is None:
        return {}
    raw = read_json_object(config).get("lm_gen_config") or {}
    f = Fields(raw, f"{config}: lm_gen_config")
    out: dict[str, float | int] = {}
    for key, ours in _KEYS.items():
        if key in raw:
            out[ours] = f.float(key, *TEMP_RANGE) if key.startswith("temp") else f.int(key, *TOP_K_RANGE)
    if raw.get("use_sampling") is False:
        out["temp"] = out["text_temp"] = 0.0
    return out
