"""The live conversation's keys (its runs through `python -m moshi_mlx.run` are in tests/test_run.py)."""

from __future__ import annotations

import io

from moshi_mlx.dialog.console import ConsoleView
from moshi_mlx.dialog.live import _keyboard


def test_keyboard_enter_resets_and_m_toggles_mute():
    class Loop:
        muted, resets = False, 0

        def set_muted(self, on):
            self.muted = on

        def reset(self):
            self.resets += 1

    loop, err = Loop(), io.StringIO()
    _keyboard(loop, ConsoleView(io.StringIO(), err, live=False), lines=["m\n", "M \n"])
    assert loop.muted is False and loop.resets == 0
    assert "microphone muted" in err.getvalue() and "microphone on" in err.getvalue()
    _keyboard(loop, ConsoleView(io.StringIO(), err, live=False), lines=["\n", "m\n"])
    assert loop.resets == 1 and loop.muted is True


def test_ctrl_c_while_the_model_loads_ends_at_once():
    """Ctrl-C while the model loads (the 7B reads for tens of seconds): run_live ends at once and the loading thread
    ends on its own once built (process exit does not wait for it, see mlx_thread). It waited for the load to end,
    up to 10 s more, after the person asked to stop."""
    import pytest

    from moshi_mlx.audio.devices import AudioIO
    from moshi_mlx.audio.fake import FakeStreamFactory
    from moshi_mlx.dialog.live import run_live
    from support.fake_models import EchoModel
    from support.stops import SlowLoad

    slow = SlowLoad(EchoModel)
    with pytest.raises(KeyboardInterrupt):
        run_live(slow, AudioIO(backend=FakeStreamFactory()), max_lag_frames=2)
    assert not slow.built, "run_live waited for the model to load"
    assert slow.finish() and len(slow.built) == 1
