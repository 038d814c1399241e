"""Echo canceller on a synthetic room: Moshi's voice delayed and reverberated into the mic, plus a user."""

from __future__ import annotations

import numpy as np
import pytest

from moshi_mlx.dialog.echo import EchoCanceller
from support.signals import SR, erle_db, room_ir, speechlike

SECONDS, USER_FROM = 30, 15


def _scene(delay_ms: float, seed: int, echo_gain: float = 1.0):
    far = speechlike(SECONDS, 1 + seed, (150, 250))  # Moshi's voice, as played
    echo = (np.convolve(far, room_ir(2 + seed, delay_ms=delay_ms))[: far.size] * echo_gain).astype(np.float32)
    user = speechlike(SECONDS, 3 + seed, (90, 140)) * 0.5
    user[: SR * USER_FROM] = 0.0  # Moshi alone first, then both talk at once
    noise = 1e-4 * np.random.default_rng(seed).standard_normal(far.size)
    return far, echo, user, (echo + user + noise).astype(np.float32)


def _run(ec: EchoCanceller, far: np.ndarray, mic: np.ndarray) -> np.ndarray:
    out = np.zeros_like(mic)
    for i in range(0, mic.size, 1920):  # as the model loop does: reference first, then the mic frame
        ec.push_reference(far[i : i + 1920])
        out[i : i + 1920] = ec.process(mic[i : i + 1920])
    return out


# measured (numpy FFT, float64): 40 ms: 21.0 dB alone, 21.3 dB double talk, user -0.2 -> 21.1 dB;
# 250 ms: 12.8 / 12.0 dB, user -0.9 -> 11.1 dB (the delay must be found first, then the filter converges)
@pytest.mark.parametrize(
    "delay_ms,seed,floor_db",
    [(40, 0, 18.0), (250, 1, 10.0)],  # laptop speakers; a Bluetooth speaker
)
def test_erle_and_the_user_survives_double_talk(delay_ms: float, seed: int, floor_db: float) -> None:
    far, echo, user, mic = _scene(delay_ms, seed)
    ec = EchoCanceller()
    out = _run(ec, far, mic)
    st = slice(SR * (USER_FROM - 5), SR * USER_FROM)
    dt = slice(SR * USER_FROM, SR * SECONDS)
    erle_single = erle_db(echo[st], out[st])
    residual = out[dt] - user[dt]  # the canceller is linear: what is not the user is left-over echo
    erle_double = erle_db(echo[dt], residual)
    user_snr_in = 10 * np.log10(np.sum(user[dt] ** 2) / np.sum(echo[dt] ** 2))
    user_snr_out = 10 * np.log10(np.sum(user[dt] ** 2) / np.sum(residual**2))
    print(
        f"delay {delay_ms} ms: ERLE {erle_single:.1f} dB alone, {erle_double:.1f} dB in double talk; "
        f"user-to-echo {user_snr_in:.1f} -> {user_snr_out:.1f} dB; delay found {ec.delay_ms:.0f} ms"
    )
    assert erle_single > floor_db
    assert erle_double > floor_db  # the filter does not fall apart while the user talks
    assert user_snr_out > user_snr_in + floor_db - 1.0
    gain = float(np.dot(out[dt], user[dt]) / np.dot(user[dt], user[dt]))
    assert 0.9 < gain < 1.1  # the user's voice passes at its own level: suppressed echo, not a muted mic
    assert abs(ec.delay_ms - (delay_ms - 10)) <= 10  # bulk delay found (filter starts 2 blocks early)


def test_passes_the_mic_untouched_without_reference() -> None:
    _, _, user, _ = _scene(40, 0)
    ec = EchoCanceller()
    out = _run(ec, np.zeros_like(user), user)
    np.testing.assert_array_equal(out, user)


def test_skip_and_reset_keep_timelines_aligned() -> None:
    far, echo, user, mic = _scene(40, 2)
    ec = EchoCanceller()
    out = np.zeros_like(mic)
    for i in range(0, mic.size, 1920):
        ec.push_reference(far[i : i + 1920])
        if (i // 1920) % 10 == 9:  # the loop drops every tenth frame (model too slow)
            ec.skip(1920)
            out[i : i + 1920] = mic[i : i + 1920]
        else:
            out[i : i + 1920] = ec.process(mic[i : i + 1920])
    kept = [i for i in range(SR * 10, SR * USER_FROM, 1920) if (i // 1920) % 10 != 9]
    e = np.concatenate([echo[i : i + 1920] for i in kept])
    o = np.concatenate([out[i : i + 1920] for i in kept])
    assert erle_db(e, o) > 10.0  # still converges: skipped frames did not shift the far signal
    ec.reset()
    assert ec.delay_ms == 0 and ec.stats().erle_db == pytest.approx(0.0)


def test_rejects_frames_that_are_not_whole_blocks() -> None:
    with pytest.raises(ValueError, match="multiple"):
        EchoCanceller().process(np.zeros(1000, np.float32))
