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


class SlowLoad:
    """A model factory whose load lasts until `finish()` (at most `timeout` s), with Ctrl-C pressed once the main
    thread waits for it in `waiter` (by name): `built` lists the models it built."""

    def __init__(self, make, waiter: str = "wait_loaded", timeout: float = 10.0) -> None:
        self.make, self.timeout = make, timeout
        self.built: list = []
        self._entered, self._gate = threading.Event(), threading.Event()
        threading.Thread(target=press_ctrl_c_in, args=(waiter, self._entered, timeout), daemon=True).start()

    def __call__(self):
        self._entered.set()
        self._gate.wait(self.timeout)
        self.built.append(self.make())
        return self.built[-1]

    def finish(self) -> bool:
        """Ends the load; True once every model loop thread has ended (as a closed loop's does once built)."""
        self._gate.set()
        loops = [t for t in threading.enumerate() if t.name == "moshi-model-loop"]
        for t in loops:
            t.join(self.timeout)
        return not any(t.is_alive() for t in loops)
