"""The benchmark CLI runs and prints its figures (it asserts nothing about speed)."""

from __future__ import annotations

import pytest

from moshi_mlx.bench import main


def test_bench_mimi_prints_figures(capsys) -> None:
    assert main(["mimi", "--frames", "1", "--warmup", "0", "--seconds", "0.2"]) == 0
    out = capsys.readouterr().out
    for needle in ("streaming encode_step", "streaming decode_step", "batch encode", "batch decode", "peak"):
        assert needle in out


def test_bench_needs_a_model(capsys) -> None:
    with pytest.raises(SystemExit):
        main([])
