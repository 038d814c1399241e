"""Echo canceller on the bench's simulated laptop scenes (moshi_mlx/bench/echo_scenes.py): a room impulse
response, a mildly distorting loudspeaker, microphone noise, two espeak voices. Short scenes (6 s); the
full table is `python -m moshi_mlx.bench echo`. The canceller before issue 15, on these same scenes:
50 ppm 8.9 dB removed over 3-6 s and never 10 dB held for a second; never back to 10 dB within the 3 s
after the path change; in double talk 18.7 dB removed alone before it and STOI 0.947 (it fails all three)."""

from __future__ import annotations

import numpy as np
import pytest

from moshi_mlx.audio import FRAME
from moshi_mlx.bench import echo_scenes as sc
from moshi_mlx.dialog.echo import EchoCanceller

SR = sc.SR


def _run(ec: EchoCanceller, far: np.ndarray, mic: np.ndarray) -> np.ndarray:
    """As the model loop: the reference first, then the mic frame; the output put back in step with the mic."""
    out = np.zeros_like(mic)
    for i in range(0, mic.size - FRAME + 1, FRAME):
        ec.push_reference(far[i : i + FRAME])
        out[i : i + FRAME] = ec.process(mic[i : i + FRAME])
    return np.concatenate([out[ec.latency :], np.zeros(ec.latency, np.float32)])


def test_separate_devices_50_ppm_apart_and_a_fast_start() -> None:
    # a speaker whose clock runs 50 ppm fast: the echo slides by 1.2 samples a second
    s = sc.make_scene(6.0, drift_ppm=50.0)
    ec = EchoCanceller()
    out = _run(ec, s.far, s.mic)
    late = slice(3 * SR, 6 * SR)
    erle = sc.erle_db(s.mic[late], out[late], s.echo[late])
    t10 = sc.time_to_db(s.mic, out, s.echo, 0)
    print(f"50 ppm: {erle:.1f} dB removed over 3-6 s, 10 dB after {t10:.2f} s, drift found {ec.drift_ppm:.1f} ppm")
    assert erle >= 18.0
    assert t10 <= 0.5  # Moshi's greeting is not heard back for long
    assert ec.drift_ppm == pytest.approx(50.0, abs=10.0)


@pytest.mark.parametrize("moved_at", [4.0, 5.5])
def test_re_converges_after_the_echo_path_changes(moved_at: float) -> None:
    # the laptop moved, its lid opened wider, while Moshi speaks. Before the path change test (3.3 ms blocks,
    # a bolder shadow followed at once, its old tail forgotten) the move at 4 s took 0.98 s; before the
    # least-squares refit (echo_fit), the move at 5.5 s took 1.12 s (reverberation after an utterance)
    s = sc.make_scene(moved_at + 1.6, change_at=moved_at)
    out = _run(EchoCanceller(), s.far, s.mic)
    t = sc.time_to_db(s.mic, out, s.echo, s.change_at)
    print(f"moved at {moved_at} s: 10 dB again after {t:.2f} s")
    assert t <= 0.5  # the target (measured 0.24 and 0.26 s)


def test_a_bluetooth_speaker_250_ms_late_is_cancelled_within_half_a_second() -> None:
    # the echo arrives 262 ms after the reference: the bulk delay three agreeing frames gave took until
    # 0.48 s (microphone noise before the echo peaks too), and 10 dB came 0.92 s after the start
    s = sc.make_scene(2.0, extra_delay_ms=250.0)
    ec = EchoCanceller()
    out = _run(ec, s.far, s.mic)
    t10 = sc.time_to_db(s.mic, out, s.echo, 0)
    print(f"+250 ms: 10 dB after {t10:.2f} s, delay {ec.delay_ms:.1f} ms")
    assert t10 <= 0.5
    assert 240.0 <= ec.delay_ms <= 262.0  # the filter starts a few taps before the echo


@pytest.mark.parametrize("suppress", [0.0, 1.0])
def test_double_talk_keeps_the_user_intact(suppress: float) -> None:
    # the user 6 dB below Moshi's echo, talking over it from 3 s on
    s = sc.make_scene(6.0, user_db=-6.0, user_from=3.0)
    out = _run(EchoCanceller(suppress=suppress), s.far, s.mic)
    alone = slice(2 * SR, 3 * SR)
    dt = s.double_talk
    assert dt is not None
    erle = sc.erle_db(s.mic[alone], out[alone], s.echo[alone])
    gain, worst = sc.user_gain_db(out[dt], s.user[dt])
    stoi, stoi_mic = sc.stoi(s.user[dt], out[dt]), sc.stoi(s.user[dt], s.mic[dt])
    print(
        f"suppress {suppress}: {erle:.1f} dB removed alone; user {gain:+.2f} dB (worst 10% {worst:+.1f}), "
        f"STOI {stoi:.3f} (mic {stoi_mic:.3f})"
    )
    assert erle >= 22.0
    assert abs(gain) <= 1.0 and worst >= -1.5  # not a half-duplex gate: the user passes at its own level
    assert stoi >= 0.95 > stoi_mic


def test_passes_the_mic_untouched_without_reference() -> None:
    user = sc.voice("user")[: 2 * SR].copy()
    ec = EchoCanceller()
    out = _run(ec, np.zeros_like(user), user)
    np.testing.assert_array_equal(out, user)


def test_skip_and_reset_keep_timelines_aligned() -> None:
    s = sc.make_scene(5.0)
    ec = EchoCanceller()
    out = np.zeros_like(s.mic)
    for i in range(0, s.mic.size - FRAME + 1, FRAME):
        ec.push_reference(s.far[i : i + FRAME])
        if (i // FRAME) % 10 == 9:  # the loop drops every tenth frame (model too slow)
            ec.skip(FRAME)
            out[i : i + FRAME] = s.mic[i : i + FRAME]
        else:
            out[i : i + FRAME] = ec.process(s.mic[i : i + FRAME])
    kept = [i for i in range(2 * SR, 5 * SR - FRAME + 1, FRAME) if (i // FRAME) % 10 != 9]
    pick = np.concatenate([np.arange(i, i + FRAME) for i in kept])
    assert sc.erle_db(s.mic[pick], out[pick], s.echo[pick]) > 15.0  # skipped frames did not shift the far signal
    ec.reset()
    st = ec.stats()
    assert ec.delay_ms == 0 and st.erle_db == pytest.approx(0.0) and st.drift_ppm == 0.0


def test_rejects_frames_that_are_not_whole_blocks_and_a_bad_strength() -> None:
    with pytest.raises(ValueError, match="multiple"):
        EchoCanceller().process(np.zeros(1000, np.float32))
    with pytest.raises(ValueError, match="suppress"):
        EchoCanceller(suppress=2.0)


def test_a_refit_over_digital_silence_played_leaves_the_response_as_it_was() -> None:
    """An exact-zero reference (a speaker underrun, a pause played as zeros) explains nothing: the refit
    keeps the response it started from. It divided by zero there, and the canceller's output was NaN from
    then on (found through the loop: test_loop.py::test_echo_canceller_in_the_loop_removes_the_played_voice)."""
    from moshi_mlx.dialog.echo_fit import fit_response

    rng = np.random.default_rng(0)
    taps, n = 96, FRAME
    h0 = (rng.normal(size=taps) * np.exp(-np.arange(taps) / 20)).astype(np.float32)
    mic = rng.normal(0, 1e-3, n).astype(np.float32)  # the room's noise
    h = fit_response(np.zeros(n + taps - 1, np.float32), mic, np.full(taps, 1e-3), h0)
    np.testing.assert_array_equal(h, h0)
