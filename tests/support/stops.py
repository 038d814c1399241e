"""A Ctrl-C pressed at a chosen point of the main thread's work (for in-process tests of stopping)."""

from __future__ import annotations

import _thread
import sys
import threading
import time


def press_ctrl_c_in(function: str, after: threading.Event, timeout: float = 10.0) -> None:
    """Once `after` is set, waits until the main thread is inside `function` (by name, anywhere on its stack), then
    interrupts it as Ctrl-C does. Run on a thread of its own."""
    after.wait(timeout)
    main, deadline = threading.main_thread().ident or 0, time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = sys._current_frames().get(main)  # noqa: SLF001
        while frame is not None and frame.f_code.co_name != function:
            frame = frame.f_back
        if frame is not None:
            break
        time.sleep(0.002)
    _thread.interrupt_main()
