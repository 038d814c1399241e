"""The MLX LM against Kyutai's PyTorch reference (goldens from tests/reference/make_lm_fixtures.py)."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx.lm_gen import LmGen
from moshi_mlx.loading.lm import load_lm
from support.arrays import assert_close
from support.lm import CONFIG, FILES, goldens, greedy_run, model, teacher_codes


def test_teacher_forced_logits_match_reference():
    g = goldens()
    text, audio = model("torch").teacher_forced(mx.array(g["tf_codes"]))
    # float32 noise: the reference and MLX sum in different orders (logits are O(1)).
    np.testing.assert_allclose(np.array(text), g["tf_text_logits"], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(np.array(audio), g["tf_audio_logits"], atol=2e-5, rtol=1e-5)
    assert np.isnan(g["tf_audio_logits"]).any(), "golden should mark the delayed streams' unknown tail"


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op-by-op"])
@pytest.mark.parametrize("layout", ["torch", "mlx_bf16"])
@pytest.mark.parametrize("config,prefix", [("lm_small.json", ""), ("lm_small_ctx16.json", "ctx16_")])
def test_greedy_generation_identical_to_reference(layout, config, prefix, compiled):
    g = goldens()
    got = greedy_run(model(layout, config), g["user_codes"], compile=compiled)
    expected = g[f"{prefix}gen_tokens"]
    mismatch = np.nonzero((got != expected).any(axis=1))[0]
    assert mismatch.size == 0, (
        f"first differing steps {mismatch[:5]}: got {got[mismatch[0]]}, want {expected[mismatch[0]]}"
    )


@pytest.mark.parametrize("config,prefix", [("lm_small.json", ""), ("lm_small_ctx16.json", "ctx16_")])
def test_step_logits_match_reference(config, prefix):
    g = goldens()
    lm = model("torch", config)
    gen = LmGen(lm, temp=0.0, text_temp=0.0)
    state = gen.init_state()
    text, audio = [], []
    for frame in g["user_codes"]:
        step, _, state = gen.advance(state, mx.array(frame[None]))
        mx.eval(step, LmGen.state_arrays(state))
        text.append(np.array(step.text_logits[0]))
        audio.append(np.array(step.audio_logits[0]))
    assert_close(np.stack(text), g[f"{prefix}gen_text_logits"], atol=5e-5, rtol=1e-5, what="text logits")
    assert_close(np.stack(audio), g[f"{prefix}gen_audio_logits"], atol=5e-5, rtol=1e-5, what="audio logits")


def _run(gen: LmGen, state, frames, keep: int | None = None):
    """Steps over frames -> (text tokens, audio codes, output frames as numpy, the state kept before step
    `keep`, the last state)."""
    got, kept = [], None
    for i, frame in enumerate(frames):
        if i == keep:
            kept = state
        step, out, state = gen.advance(state, mx.array(frame[None]))
        mx.eval(step, out if out is not None else [], LmGen.state_arrays(state))
        got.append((np.array(step.text_token), np.array(step.audio_codes), None if out is None else np.array(out)))
    return got, kept, state


def _same(a, b) -> bool:
    return all(
        (x[0] == y[0]).all() and (x[1] == y[1]).all() and ((x[2] is None) == (y[2] is None)) for x, y in zip(a, b)
    )


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op-by-op"])
def test_a_kept_state_replays_the_same_steps(compiled):
    """The state passed to a step does not change: replayed from a kept state, sampling included (its key
    is part of the state), the same frames come out, past the ring cache's wrap (context 16)."""
    g = goldens()
    gen = LmGen(model("torch", "lm_small_ctx16.json"), temp=0.8, text_temp=0.7, seed=3, compile=compiled)
    frames = g["user_codes"][:24]
    first, kept, _ = _run(gen, gen.init_state(), frames, keep=18)
    assert kept is not None and kept.step == 18 and kept.lm.offset == 18
    before = [np.array(a) for a in LmGen.state_arrays(kept)]
    replay, _, _ = _run(gen, kept, frames[18:])
    assert _same(first[18:], replay)
    assert kept.step == 18 and kept.lm.offset == 18
    for a, b in zip(before, LmGen.state_arrays(kept)):
        np.testing.assert_array_equal(a, np.array(b))


@pytest.mark.parametrize("config", ["lm_small.json", "lm_small_ctx16.json"])
def test_attending_over_the_written_slots_gives_the_full_rings_values(config):
    """Until the ring wraps, a step attends only over the slots written so far (windows of 4 here: 4, 8,
    12, then the whole ring of 16 once it is needed, then past the wrap); logits bit for bit as when
    attending over the whole ring, greedy and sampled tokens alike."""
    g = goldens()
    lm = model("torch", config)
    runs = []
    for bucket in (4, None):
        gen = LmGen(lm, seed=2, window_bucket=bucket)
        state, logits = gen.init_state(), []
        for frame in g["user_codes"]:
            step, _, state = gen.advance(state, mx.array(frame[None]))
            mx.eval(step, LmGen.state_arrays(state))
            logits.append((np.array(step.text_logits), np.array(step.audio_logits), np.array(step.audio_codes)))
        runs.append(logits)
        if bucket:  # the windows used: 4, 8, ... up to the ring's size, then the whole ring
            assert {4, 8, 12} <= set(gen._temporal), set(gen._temporal)
    for a, b in zip(*runs):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)


def test_compiled_and_op_by_op_steps_give_identical_samples():
    """Same seed, sampling on: the compiled step and the same functions run op by op draw the same tokens
    and codes (and greedy runs agree with the reference's goldens either way, above)."""
    g = goldens()
    lm = model("torch", "lm_small_ctx16.json")
    runs = [
        _run(LmGen(lm, seed=11, compile=c), LmGen(lm, seed=11).init_state(), g["user_codes"])[0] for c in (True, False)
    ]
    assert _same(*runs)
    assert any((x[1] != runs[0][1][1]).any() for x in runs[0][2:]), "sampling should vary the codes"


def test_step_timing_as_reference():
    g = goldens()
    gen = LmGen(model("torch"), temp=0.0, text_temp=0.0)
    assert gen.step(g["user_codes"][:1]) == (None, None)  # step 0: nothing yet (max_delay 1)
    text, audio = gen.step(g["user_codes"][1:2])
    assert text.shape == (1,) and audio.shape == (1, 8) and text.dtype.kind == "i"
    assert gen.step_index == 2
    gen.reset()
    assert gen.step_index == 0 and gen.step(g["user_codes"][:1]) == (None, None)


def test_batch_rows_are_independent_conversations():
    g = goldens()
    lm = model("torch")
    gen = LmGen(lm, temp=0.0, text_temp=0.0, batch=2)
    other = (g["user_codes"] + 5) % lm.cfg.card
    rows = []
    for a, b in zip(g["user_codes"][:12], other[:12]):
        text, audio = gen.step(np.stack([a, b]))
        rows.append(None if text is None else np.concatenate([text[:, None], audio], axis=1))
    got = np.stack(rows[1:])  # [S-1, 2, 9]
    assert (got[:, 0] == g["gen_tokens"][1:12]).all()
    assert (got[:, 0] != got[:, 1]).any()
    assert (got[:, 1] == greedy_run(lm, other[:12])[1:]).all()


@pytest.mark.parametrize(
    "name,floor,top3_floor",
    # Random weights have no margin: quantization flips close choices. Measured (teacher-forced on the
    # reference's greedy run): q8 text 0.97 / audio 0.94; q4 0.59 / 0.62, top-3 0.90 / 0.89.
    [("mlx_q8", 0.9, 0.99), ("mlx_q4", 0.5, 0.8)],
)
def test_quantized_files_agree_with_float(name, floor, top3_floor):
    codes = teacher_codes()
    lm = model(name, float32=False)
    assert lm.compute_dtype == mx.float32  # CPU: float32 activations for quantized matmuls
    text, audio = (np.array(x) for x in lm.teacher_forced(mx.array(codes)))
    text, audio = text[0, 0], audio[0]
    valid = ~np.isnan(audio[..., 0])
    agree_text = (text.argmax(-1) == codes[0, 0]).mean()
    agree_audio = (audio.argmax(-1) == codes[0, 1:9])[valid].mean()
    top3_text = (np.argsort(-text, -1)[:, :3] == codes[0, 0][:, None]).any(-1).mean()
    top3_audio = (np.argsort(-audio, -1)[..., :3] == codes[0, 1:9][..., None]).any(-1)[valid].mean()
    assert agree_text >= floor and agree_audio >= floor, (agree_text, agree_audio)
    assert top3_text >= top3_floor and top3_audio >= top3_floor, (top3_text, top3_audio)


def test_float_reference_run_is_fully_agreed_by_teacher_forcing():
    # Sanity of the agreement measure above: the float32 model agrees everywhere.
    codes = teacher_codes()
    text, audio = (np.array(x) for x in model("mlx_bf16").teacher_forced(mx.array(codes)))
    valid = ~np.isnan(audio[0, ..., 0])
    assert (text[0, 0].argmax(-1) == codes[0, 0]).all()
    assert (audio[0].argmax(-1) == codes[0, 1:9])[valid].all()


def test_runs_far_past_the_context_in_constant_memory():
    lm = model("torch", "lm_small_ctx16.json")
    gen = LmGen(lm, temp=0.8, text_temp=0.7, seed=5)
    rng = np.random.default_rng(0)
    shapes = None
    for step in range(100):  # > 6 times the context of 16
        text, audio = gen.step(rng.integers(0, lm.cfg.card, (1, 8)))
        if step > 0:
            assert 0 <= text[0] < lm.cfg.text_card and ((audio >= 0) & (audio < lm.cfg.card)).all()
        caches = gen._state.lm.temporal.caches
        now = [c.keys.shape for c in caches] + [gen._state.tokens.shape]
        assert shapes is None or now == shapes
        shapes = now
    assert gen._state.lm.offset == 100


def test_seeded_sampling_is_repeatable():
    g = goldens()
    lm = model("torch")

    def run(seed):
        gen = LmGen(lm, seed=seed)
        return [gen.step(f[None]) for f in g["user_codes"][:8]][1:]

    a, b, c = run(7), run(7), run(8)
    same = all((x[0] == y[0]).all() and (x[1] == y[1]).all() for x, y in zip(a, b))
    differ = any((x[1] != y[1]).any() for x, y in zip(a, c))
    assert same and differ
    gen = LmGen(lm, seed=7)
    first = [gen.step(f[None]) for f in g["user_codes"][:8]][1:]
    gen.reset()
    again = [gen.step(f[None]) for f in g["user_codes"][:8]][1:]
    assert all((x[1] == y[1]).all() for x, y in zip(first, again))


def test_streaming_teacher_forcing_equals_batch_with_a_float_cache():
    codes = mx.array(teacher_codes())
    lm = model("torch")
    for a, b in zip(lm.teacher_forced(codes, lm.init_state()), lm.teacher_forced(codes)):
        np.testing.assert_allclose(np.array(a), np.array(b), atol=1e-5, equal_nan=True)


def test_an_8_bit_kv_cache_agrees_with_the_float_one():
    """Teacher-forced through the cache (what generation sees). Measured on the float32 model: text 1.0,
    audio 0.974 (4 bits fell to 0.82 / 0.70, hence 8 bits only)."""
    from moshi_mlx import load_lm
    from support.lm import FILES, LM

    codes = teacher_codes()
    lm = load_lm(FILES["torch"], LM / "lm_small.json", dtype=mx.float32, kv_bits=8)
    state = lm.init_state()
    assert isinstance(state.temporal.caches[0].keys, tuple)
    text, audio = (np.array(x) for x in lm.teacher_forced(mx.array(codes), state))
    text, audio = text[0, 0], audio[0]
    valid = ~np.isnan(audio[..., 0])
    assert (text.argmax(-1) == codes[0, 0]).mean() >= 0.95
    assert (audio.argmax(-1) == codes[0, 1:9])[valid].mean() >= 0.9


@pytest.mark.parametrize(
    "name,floor",
    # Measured with bfloat16 activations (teacher-forced, text / audio): bf16 0.97 / 0.97, q8 0.95 / 0.92,
    # q4 0.62 / 0.62; the CPU's float32 activations give 1.0 / 1.0, 0.97 / 0.94, 0.59 / 0.62.
    [("mlx_bf16", 0.9), ("mlx_q8", 0.85), ("mlx_q4", 0.5)],
)
def test_the_gpu_compute_dtype_agrees_with_the_reference(name, floor, monkeypatch):
    """On Metal or CUDA the activations are bfloat16 (the weights' dtype): the path Macs run, its modules
    and dtypes, computed here on the CPU."""
    from moshi_mlx.lm import default_compute_dtype

    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.gpu))
    assert default_compute_dtype(True, mx.bfloat16) == mx.bfloat16
    assert default_compute_dtype(False, mx.bfloat16) == mx.bfloat16
    lm = load_lm(FILES[name], CONFIG)  # the modules a GPU runs: no CPU variant (no lanes)
    monkeypatch.undo()
    assert default_compute_dtype(True, mx.bfloat16) == mx.float32  # on CPU
    lm.set_compute_dtype(mx.bfloat16)
    codes = teacher_codes()
    text, audio = (np.array(x) for x in lm.teacher_forced(mx.array(codes)))
    valid = ~np.isnan(audio[0, ..., 0])
    agree_text = (text[0, 0].argmax(-1) == codes[0, 0]).mean()
    agree_audio = (audio[0].argmax(-1) == codes[0, 1:9])[valid].mean()
    assert agree_text >= floor and agree_audio >= floor, (agree_text, agree_audio)
    gen = LmGen(lm, seed=3)
    for frame in goldens()["user_codes"][:6]:
        text_token, audio_codes = gen.step(frame[None])
    assert 0 <= text_token[0] < lm.cfg.text_card and ((audio_codes >= 0) & (audio_codes < lm.cfg.card)).all()


def test_set_dtype_float32_upcasts_the_arithmetic_too():
    """`lm.set_dtype(mx.float32)`, the usual MLX way to upcast, computes in float32 as `load_lm(dtype=...)`
    does: the activations follow the parameters (a bf16 load computes in bf16 on this CPU)."""
    g = goldens()
    lm = load_lm(FILES["mlx_bf16"], CONFIG)
    assert lm.compute_dtype == mx.bfloat16
    lm.set_compute_dtype(mx.bfloat16)  # a chosen compute dtype, too, gives way to the next cast
    lm.set_dtype(mx.float32)
    assert lm.compute_dtype == mx.float32 == lm.cache_dtype
    got = greedy_run(lm, g["user_codes"])
    mismatch = np.nonzero((got != g["gen_tokens"]).any(axis=1))[0]
    assert mismatch.size == 0, f"first differing steps {mismatch[:5]}"  # bf16 arithmetic: from step 2


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op-by-op"])
def test_a_step_writes_its_caches_in_place(compiled):
    """A conversation that lets go of its old state gets its caches written in place: a step's memory
    peaks well under one more copy of the caches (an evaluation while the old state was still held copied
    them all: the 7B q4 peaked 1.46 GiB higher)."""
    import dataclasses

    from moshi_mlx.bench.lm import random_model, skinny
    from moshi_mlx.config import LmConfig

    cfg = skinny(LmConfig.preset(), dim=256, context=3000)
    cfg = dataclasses.replace(cfg, transformer=dataclasses.replace(cfg.transformer, num_layers=4))
    lm = random_model(cfg, "q4")  # quantized weights, float32 activations on this CPU
    gen = LmGen(lm, seed=0, compile=compiled)
    frame = np.zeros((1, cfg.user_codebooks), np.int32)
    for _ in range(2):
        gen.step(frame)
    cache = sum(a.nbytes for a in gen._state.lm.arrays())
    assert cache > 10 * 2**20  # 4 layers x 3000 slots x 256 x 2 (keys, values) x 2 bytes (bfloat16)
    mx.eval(gen._state.lm.arrays())
    mx.reset_peak_memory()
    before = mx.get_active_memory()
    for _ in range(3):
        gen.step(frame)
    assert mx.get_peak_memory() - before < cache / 2, (mx.get_peak_memory() - before, cache)


@pytest.mark.parametrize("value,compiled", [("0", False), ("off", False), ("1", True), ("", True)])
def test_moshi_mlx_compile_chooses_the_step(value, compiled, monkeypatch):
    from moshi_mlx import load_mimi
    from support import ASSETS

    monkeypatch.setenv("MOSHI_MLX_COMPILE", value)
    assert LmGen(model("torch")).compiled is compiled
    mimi = load_mimi(ASSETS / "mimi_tiny.safetensors", config=ASSETS / "mimi_tiny_config.json")
    assert mimi.compiled is compiled


def test_a_compile_setting_that_is_no_switch_is_refused(monkeypatch):
    from moshi_mlx.errors import ConfigError

    monkeypatch.setenv("MOSHI_MLX_COMPILE", "banana")  # was read as "on", silently
    with pytest.raises(ConfigError, match="MOSHI_MLX_COMPILE must be 1 or 0 .*'banana'"):
        LmGen(model("torch"))


def test_prepare_traces_every_attention_window_before_the_conversation(monkeypatch):
    """After `prepare`, a conversation crossing every window of its ring (4, 8, 12, then the whole ring of 16
    and past its wrap) runs the traced functions no more: no stall at a window's first step."""
    runs = {"n": 0}
    original = LmGen._temporal_half

    def counting(self, *args, **kwargs):
        runs["n"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(LmGen, "_temporal_half", counting)
    gen = LmGen(model("torch", "lm_small_ctx16.json"), seed=1, window_bucket=4)
    gen.prepare()
    traced = runs["n"]
    assert traced == 4  # windows 4, 8, 12 and the whole ring
    for frame in goldens()["user_codes"][:24]:
        gen.step(frame[None])
    assert runs["n"] == traced


def test_a_sampled_previous_token_is_embedded_as_the_general_rule_does():
    """Depformer.step(sampled=True) (a drawn token: no "no input" rule, the row added by the input
    projection's addmm) gives the general path's logits to float32 rounding, for every codebook."""
    lm = model("torch")
    rng = np.random.default_rng(3)
    context = mx.array(rng.standard_normal((2, 1, lm.cfg.dim)).astype(np.float32))
    fast, general = lm.depformer.init_state(2, mx.float32), lm.depformer.init_state(2, mx.float32)
    for k in range(lm.cfg.dep_q):
        vocab = lm.cfg.text_card if k == 0 else lm.cfg.card
        prev = mx.array(rng.integers(0, vocab, 2).astype(np.int32))
        got, fast = lm.depformer.step(k, context, prev, fast, sampled=True)
        want, general = lm.depformer.step(k, context, prev, general)
        assert_close(got, want, atol=2e-5, what=f"codebook {k}")


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "op-by-op"])
def test_the_modules_a_gpu_runs_generate_the_reference_tokens(compiled, monkeypatch):
    """Metal and CUDA run the model code without any CPU variant (no contiguous Linears, no lanes): loaded
    as on a GPU and computed here, greedy float32 generation gives the reference's tokens."""
    from moshi_mlx.cpu.contiguous import ContiguousLinear

    monkeypatch.setattr(mx, "default_device", lambda: mx.Device(mx.gpu))
    lm = load_lm(FILES["torch"], CONFIG, dtype=mx.float32)
    monkeypatch.undo()
    assert not any(isinstance(m, ContiguousLinear) for _, m in lm.named_modules())
    got = greedy_run(lm, goldens()["user_codes"], compile=compiled)
    assert (got == goldens()["gen_tokens"]).all()
