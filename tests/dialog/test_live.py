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
