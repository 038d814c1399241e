"""Mimi against the PyTorch reference (tiny non-degenerate checkpoint), streaming == batch, the facade."""

from __future__ import annotations

import mlx.core as mx
import numpy as np
import pytest

from moshi_mlx import Mimi, load_mimi
from moshi_mlx.cpu import blocked
from moshi_mlx.cpu.contiguous import ContiguousLinear
from moshi_mlx.modules.state_tree import arrays_of
from support import ASSETS
from support.arrays import assert_close, snr_db, to_numpy

FRAME = 1920
CONTEXT_FRAMES = 4  # the tiny transformers keep 8 steps = 4 frames; beyond, streaming sees one key fewer


def _force_blocks(rows: int, k: int, n: int) -> int | None:
    return next((b for b in (8, 4, 2) if b < n and n % b == 0), None)


@pytest.fixture(scope="module", params=["plain", "blocked", "gpu"])
def mimi(request) -> Mimi:
    """The tiny Mimi, with its weights laid out as loading chooses for the tiny sizes ("plain": no
    blocking), with every matmul weight column-blocked ("blocked", as the real size on the CPU), and with
    the modules Metal and CUDA run ("gpu": loaded as on a GPU, no CPU variant at all; computed here)."""
    with pytest.MonkeyPatch.context() as mp:
        if request.param == "blocked":
            mp.setattr(blocked, "choose_block", _force_blocks)
        if request.param == "gpu":
            mp.setattr(mx, "default_device", lambda: mx.Device(mx.gpu))
        model = load_mimi(ASSETS / "mimi_tiny.safetensors", config=ASSETS / "mimi_tiny_config.json")
    n_linear = sum(isinstance(m, blocked.BlockedLinear) for _, m in model.named_modules())
    n_conv = sum(getattr(m, "_blocks", None) is not None for _, m in model.named_modules())
    if request.param == "blocked":
        assert n_linear >= 8 and n_conv >= 10, (n_linear, n_conv)
    else:
        assert n_linear == n_conv == 0
    if request.param == "gpu":
        assert not any(isinstance(m, ContiguousLinear) for _, m in model.named_modules())
    return model


@pytest.fixture(scope="module")
def ref() -> dict[str, mx.array]:
    return mx.load(str(ASSETS / "mimi_tiny_ref.safetensors"))


def _padded(ref: dict[str, mx.array]) -> mx.array:
    x = ref["input"]
    frames = -(-x.shape[2] // FRAME)
    return mx.pad(x, [(0, 0), (0, 0), (0, frames * FRAME - x.shape[2])])


def _stream_encode(mimi: Mimi, x: mx.array, frames_per_call: int = 1) -> mx.array:
    state, out = mimi.init_state(x.shape[0]), []
    step = frames_per_call * FRAME
    for i in range(0, x.shape[2], step):
        codes, state = mimi.stream_encode(x[..., i : i + step], state)
        out.append(codes)
    return mx.concatenate(out, axis=-1)


def _stream_decode(mimi: Mimi, codes: mx.array, frames_per_call: int = 1) -> mx.array:
    state, out = mimi.init_state(codes.shape[0]), []
    for i in range(0, codes.shape[2], frames_per_call):
        pcm, state = mimi.stream_decode(codes[..., i : i + frames_per_call], state)
        out.append(pcm)
    return mx.concatenate(out, axis=-1)


def _codes_equal(got: mx.array, want: mx.array, what: str) -> None:
    g, w = to_numpy(got), to_numpy(want)
    assert g.shape == w.shape, f"{what}: shape {g.shape} != {w.shape}"
    bad = np.argwhere(g != w)
    assert bad.size == 0, f"{what}: {len(bad)} of {g.size} codes differ, first [b, q, t] = {bad[:5].tolist()}"


def test_batch_latent_matches_reference(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    latent = mimi.encode_latent(ref["input"])
    snr = snr_db(latent, ref["latent"])
    print(f"latent SNR {snr:.1f} dB")
    assert snr > 100, f"pre-quantizer latent SNR {snr:.1f} dB vs reference"


def test_batch_encode_matches_reference(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    codes = mimi.encode(ref["input"])  # odd length: 7 frames + 777 samples
    assert codes.dtype == mx.int32
    assert codes.shape == (2, 8, 8)
    _codes_equal(codes, ref["codes"], "batch encode")


def test_streaming_encode_matches_reference(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    _codes_equal(_stream_encode(mimi, _padded(ref)), ref["stream_codes"], "streaming encode")


def test_streaming_encode_equals_batch(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    """Within the attention context, 1-frame and 2-frame chunks give the batch codes exactly."""
    x = _padded(ref)[..., : CONTEXT_FRAMES * FRAME]
    batch = mimi.encode(x)
    _codes_equal(_stream_encode(mimi, x, 1), batch, "1-frame streaming vs batch")
    _codes_equal(_stream_encode(mimi, x, 2), batch, "2-frame streaming vs batch")


def test_batch_decode_matches_reference(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    audio = mimi.decode(ref["codes"])
    assert audio.shape == (2, 1, 8 * FRAME) and audio.dtype == mx.float32
    snr = snr_db(audio, ref["audio"])
    print(f"batch decode SNR {snr:.1f} dB")
    assert snr > 100, f"batch decode SNR {snr:.1f} dB vs reference (float32 noise gives ~125 dB)"
    assert_close(audio, ref["audio"], atol=1e-4, rtol=0)


def test_streaming_decode_matches_reference(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    audio = _stream_decode(mimi, ref["codes"])
    snr = snr_db(audio, ref["stream_audio"])
    print(f"streaming decode SNR {snr:.1f} dB")
    assert snr > 100, f"streaming decode SNR {snr:.1f} dB vs reference"


def test_streaming_decode_equals_batch(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    codes = ref["codes"][..., :CONTEXT_FRAMES]
    batch = mimi.decode(codes)
    for per_call in (1, 2):
        snr = snr_db(_stream_decode(mimi, codes, per_call), batch)
        assert snr > 100, f"{per_call}-frame streaming decode vs batch: SNR {snr:.1f} dB"


def test_facade_steps_and_reset(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    x = _padded(ref)
    mimi.reset()
    first = mx.concatenate([mimi.encode_step(x[..., i : i + FRAME]) for i in range(0, x.shape[2], FRAME)], -1)
    audio = mx.concatenate([mimi.decode_step(first[..., i : i + 1]) for i in range(first.shape[2])], -1)
    _codes_equal(first, ref["stream_codes"], "encode_step")
    assert snr_db(audio, _stream_decode(mimi, first)) > 100
    # after a reset the facade behaves exactly like a fresh model: same codes, same audio
    mimi.reset()
    again = mx.concatenate([mimi.encode_step(x[..., i : i + FRAME]) for i in range(0, x.shape[2], FRAME)], -1)
    audio2 = mx.concatenate([mimi.decode_step(again[..., i : i + 1]) for i in range(again.shape[2])], -1)
    _codes_equal(again, first, "encode_step after reset")
    assert_close(audio2, audio, atol=0, rtol=0, what="decode_step after reset")
    # without a reset the state carries on, so repeating the input gives different codes
    more = mimi.encode_step(x[..., :FRAME])
    assert not np.array_equal(to_numpy(more), to_numpy(first[..., :1]))
    mimi.reset()


@pytest.mark.parametrize("length", [1, FRAME - 1, FRAME, FRAME + 1, 3 * FRAME + 5])
def test_odd_lengths_pad_to_whole_frames(mimi: Mimi, ref: dict[str, mx.array], length: int) -> None:
    x = ref["input"][..., :length]
    frames = -(-length // FRAME)
    codes = mimi.encode(x)
    assert codes.shape == (2, 8, frames)
    padded = mx.pad(x, [(0, 0), (0, 0), (0, frames * FRAME - length)])
    _codes_equal(codes, mimi.encode(padded), f"length {length}")


def test_more_codebooks(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    assert mimi.total_codebooks == 10
    mimi.set_num_codebooks(10)
    try:
        codes = mimi.encode(ref["input"])
        _codes_equal(codes, ref["codes_all"], "10-codebook encode")
        assert mimi.decode(codes).shape == (2, 1, 8 * FRAME)
        _codes_equal(codes[:, :8], ref["codes"], "first 8 of 10 codebooks")
    finally:
        mimi.set_num_codebooks(8)
    with pytest.raises(ValueError, match="between 1 and 10"):
        mimi.set_num_codebooks(11)


def test_changing_one_code_changes_audio(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    """The golden is sensitive: any codebook at any frame matters, and only from that frame on."""
    codes = to_numpy(ref["codes"]).copy()
    base = to_numpy(mimi.decode(mx.array(codes)))
    for q in (0, 4, 7):
        changed = codes.copy()
        changed[0, q, 3] = (changed[0, q, 3] + 1) % 64
        out = to_numpy(mimi.decode(mx.array(changed)))
        assert np.array_equal(out[..., : 3 * FRAME], base[..., : 3 * FRAME])
        assert np.abs(out[0, :, 3 * FRAME :] - base[0, :, 3 * FRAME :]).max() > 1e-2


def test_bad_inputs(mimi: Mimi) -> None:
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        mimi.encode(mx.zeros((1, FRAME)))
    with pytest.raises(ValueError, match=r"\[B, 1, T\]"):
        mimi.encode(mx.zeros((1, 2, FRAME)))
    with pytest.raises(ValueError, match="float"):
        mimi.encode(mx.zeros((1, 1, FRAME), dtype=mx.int16))
    with pytest.raises(ValueError, match="mx.array"):
        mimi.encode(np.zeros((1, 1, FRAME), np.float32))
    with pytest.raises(ValueError, match="1920-sample frames"):
        mimi.encode_step(mx.zeros((1, 1, 1000)))
    with pytest.raises(ValueError, match="integer codes"):
        mimi.decode(mx.zeros((1, 8, 2)))
    with pytest.raises(ValueError, match="codebooks"):
        mimi.decode(mx.zeros((1, 11, 2), dtype=mx.int32))
    with pytest.raises(ValueError, match=r"\[B, K, F\]"):
        mimi.decode_step(mx.zeros((8, 1), dtype=mx.int32))
    with pytest.raises(ValueError, match="batch 1"):
        mimi.stream_encode(mx.zeros((2, 1, FRAME)), mimi.init_state(1))


def test_compiled_streaming_equals_op_by_op_and_keeps_its_states(mimi: Mimi, ref: dict[str, mx.array]) -> None:
    """The compiled streaming steps give the op-by-op steps' codes and audio, bit for bit, past the
    transformers' ring wrap; a state passed to a step is left unchanged, so a kept state replays."""
    x = _padded(ref)
    frames = x.shape[2] // FRAME
    assert frames > CONTEXT_FRAMES, "the input must wrap the transformers' ring caches"
    runs = []
    for compiled in (True, False):
        mimi.compiled = compiled
        try:
            state, got, kept = mimi.init_state(x.shape[0]), [], None
            for i in range(frames):
                if i == frames - 3:
                    kept = state
                before = [to_numpy(a) for a in arrays_of(state)]
                codes, new = mimi.stream_encode(x[..., i * FRAME : (i + 1) * FRAME], state)
                pcm, new = mimi.stream_decode(codes, new)
                mx.eval(codes, pcm, arrays_of(new))
                for a, b in zip(before, arrays_of(state)):
                    np.testing.assert_array_equal(a, to_numpy(b))
                got.append((to_numpy(codes), to_numpy(pcm)))
                state = new
            assert kept is not None
            codes, kept = mimi.stream_encode(x[..., (frames - 3) * FRAME : (frames - 2) * FRAME], kept)
            pcm, _ = mimi.stream_decode(codes, kept)
            np.testing.assert_array_equal(to_numpy(codes), got[frames - 3][0])
            np.testing.assert_array_equal(to_numpy(pcm), got[frames - 3][1])
            runs.append(got)
        finally:
            mimi.compiled = True
    for (c1, p1), (c2, p2) in zip(*runs):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(p1, p2)
