"""The real window on a real X server (Xvfb) during a conversation: it renders, and the transcript
area shows the words. CI installs Xvfb (`.ci/run`); without it this test is skipped.

MOSHI_UPDATE_SCREENSHOT=1 also copies the capture to docs/screenshot.png (the README's picture).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("PySide6")

ROOT = Path(__file__).resolve().parents[2]
XCB_PACKAGES = (
    "xvfb libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-randr0 "
    "libxcb-render-util0 libxcb-shape0 libxcb-xkb1 libxkbcommon-x11-0 libx11-xcb1"
)


@pytest.fixture
def xvfb():
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip(f"Xvfb is not installed (Debian: apt-get install {XCB_PACKAGES}); CI installs it")
    r, w = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(w), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], 20)
        display = os.read(r, 64).decode().strip() if ready else ""
        if not display:
            raise AssertionError("Xvfb did not report a display within 20 s")
        yield f":{display}"
    finally:
        os.close(r)
        proc.terminate()
        proc.wait(10)


def test_window_renders_a_conversation_on_x(xvfb: str, tmp_path: Path, qtbot) -> None:
    env = dict(os.environ, DISPLAY=xvfb, QT_QPA_PLATFORM="xcb")
    script = ROOT / "tests" / "support" / "screenshot_app.py"
    run = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    log = (run.stdout + run.stderr)[-3000:]
    assert "could not load the Qt platform plugin" not in log.lower(), (
        f"Qt's xcb plugin needs: apt-get install {XCB_PACKAGES}\n{log}"
    )
    assert run.returncode == 0, log
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["platform"] == "xcb" and info["saved"]
    # the transcript widget holds both conversations' words
    text = info["transcript_text"]
    assert "Hello, I'm Moshi. How are you doing today?" in text
    assert "What did you like most about Lisbon?" in text and "CONVERSATION 2" in text
    assert info["button_text"] == "Stop" and info["output_level"] > -30 and info["input_level"] > -40
    assert info["status"][:2] == ["Moshiko", "4-bit"] and info["status"][2].startswith("RTF ")

    from PySide6.QtGui import QImage

    img = QImage(str(tmp_path / "window.png"))
    dpr = info["dpr"]
    ww, wh = info["window"]
    assert (img.width(), img.height()) == (round(ww * dpr), round(wh * dpr))

    def region(rect):
        x, y, w, h = (round(v * dpr) for v in rect)
        assert x >= 0 and y >= 0 and x + w <= img.width() and y + h <= img.height(), f"{rect} outside the window"
        return img.copy(x, y, w, h).convertToFormat(QImage.Format.Format_RGB32)

    def pixels(im, step=2):
        return [im.pixelColor(x, y) for y in range(0, im.height(), step) for x in range(0, im.width(), step)]

    # not blank: many colours over the whole window
    whole = pixels(img.convertToFormat(QImage.Format.Format_RGB32), 4)
    assert len({c.rgb() for c in whole}) > 40
    # layout: transcript is the big area, left of the settings, above the button and meters
    tx, ty, tw, th = info["transcript_rect"]
    bx, by, bw, bh = info["button_rect"]
    sx, sy, sw, sh = info["settings_rect"]
    mx_, my, mw, mh = info["meters_rect"]
    assert tw > 0.55 * ww and th > 0.5 * wh and tx + tw <= sx and ty + th <= by and ty + th <= my
    assert bw >= 150 and bh >= 40 and mw > 200 and mh >= 10
    # the transcript area: white page with dark text in its upper part, empty below the words
    page = pixels(region(info["transcript_rect"]))
    dark = [c for c in page if c.lightness() < 110]
    light = [c for c in page if c.lightness() > 240]
    assert len(light) > 0.6 * len(page) and 0.003 * len(page) < len(dark) < 0.2 * len(page)
    top = region([tx, ty, tw, th // 3])
    bottom = region([tx, ty + 2 * th // 3, tw, th // 3])
    assert sum(c.lightness() < 110 for c in pixels(top)) > 200
    assert sum(c.lightness() < 110 for c in pixels(bottom)) == 0
    # the Stop button is red; the meters show green bars
    btn = pixels(region([bx + 4, by + 4, bw - 8, bh - 8]))
    red = [c for c in btn if c.red() > 180 and c.green() < 90 and c.blue() < 90]
    assert len(red) > 0.6 * len(btn)
    met = pixels(region(info["meters_rect"]))
    assert sum(c.green() > 150 and c.red() < 150 and c.blue() < 150 for c in met) > 50
    # at its minimum size the main areas stay apart, inside the window
    small = json.loads((tmp_path / "info-min.json").read_text())
    ww, wh = small["window"]
    assert ww <= 900 and wh <= 500 and "What did you like most about Lisbon?" in small["transcript_text"]
    names = ("transcript_rect", "button_rect", "meters_rect", "settings_rect", "status_rect")
    rects = {n: small[n] for n in names}
    for n, (x, y, w, h) in rects.items():
        assert x >= 0 and y >= 0 and x + w <= ww and y + h <= wh and w > 0 and h > 0, (n, rects[n], ww, wh)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (ax, ay, aw, ah), (bx, by, bw, bh) = rects[a], rects[b]
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay
            assert apart, f"{a} {rects[a]} overlaps {b} {rects[b]}"
    if os.environ.get("MOSHI_UPDATE_SCREENSHOT") == "1":
        (ROOT / "docs").mkdir(exist_ok=True)
        shutil.copyfile(tmp_path / "window.png", ROOT / "docs" / "screenshot.png")
