"""The model's settings read from the environment (MOSHI_MLX_CPU_LANES, MOSHI_MLX_COMPILE), checked before
loading: a malformed one is one line and exit 2 at once, not an error once the model has loaded (the 7B: after
reading 4 GB)."""

from __future__ import annotations


def check_model_settings() -> None:
    """ConfigError naming the variable when one of them is malformed."""
    from ..compiled import compile_by_default
    from ..cpu.lanes import lane_count

    lane_count()
    compile_by_default()
