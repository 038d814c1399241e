"""Stacked embedding tables: one lookup for Moshi's 17 streams, the values of one lookup per table."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.loading.lm import load_lm
from moshi_mlx.modules.embedding import StackedRows
from support.lm import FILES, LM, model


def _tokens(lm, seed: int) -> mx.array:
    """[2, 1 + n_q, 3] ids with -1 (no input) sprinkled in, text first."""
    rng = np.random.default_rng(seed)
    k = 1 + lm.cfg.n_q
    tokens = rng.integers(0, lm.cfg.card, (2, k, 3))
    tokens[:, 0] = rng.integers(0, lm.cfg.text_card, (2, 3))
    tokens[rng.random(tokens.shape) < 0.2] = -1
    return mx.array(tokens.astype(np.int32))


@pytest.mark.parametrize("name", ["torch", "mlx_q4", "mlx_q8"])
def test_the_stacked_lookup_gives_the_per_table_sum_bit_for_bit(name):
    lm = model(name, float32=name == "torch")  # as loaded: the loader stacks the tables
    assert lm._stacked is not None and lm._stacked.quantized == (name != "torch")
    tokens = _tokens(lm, 0)
    stacked = lm.embed(tokens)
    by_table = lm._embed_by_table(tokens)
    np.testing.assert_array_equal(np.array(stacked), np.array(by_table))
    assert not mx.array_equal(stacked, lm._embed_by_table(_tokens(lm, 1))).item()  # the ids matter


def test_a_replaced_table_is_used_and_a_cast_stacks_again():
    lm = load_lm(FILES["torch"], LM / "lm_small.json", dtype=mx.float32)  # its own: this test changes it
    tokens = _tokens(lm, 2)
    before = lm.embed(tokens)
    lm.text_emb.weight = lm.text_emb.weight * 2  # a new parameter: looked up table by table, the new values
    np.testing.assert_array_equal(np.array(lm.embed(tokens)), np.array(lm._embed_by_table(tokens)))
    assert lm._stacked is None and not mx.array_equal(lm.embed(tokens), before).item()
    lm.stack_embeddings()
    lm.set_dtype(mx.bfloat16)
    assert isinstance(lm._stacked, StackedRows) and lm._stacked.tables[0].dtype == mx.bfloat16
    stacked, by_table = (np.array(x.astype(mx.float32)) for x in (lm.embed(tokens), lm._embed_by_table(tokens)))
    np.testing.assert_array_equal(stacked, by_table)


def test_tables_of_different_kinds_are_not_stacked():
    plain, q4, q8 = model("torch"), model("mlx_q4", float32=False), model("mlx_q8", float32=False)
    assert not StackedRows.stackable([*plain.audio_embs, q4.text_emb])
    assert not StackedRows.stackable([*q8.audio_embs, q4.text_emb])
