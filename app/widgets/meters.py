"""Input and output level meters (dBFS bars with a falling display and a peak mark)."""

from __future__ import annotations

import math
import time

from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QColor, QLinearGradient, QPainter
from PySide6.QtWidgets import QGridLayout, QLabel, QSizePolicy, QWidget

FLOOR_DB = -60.0


class LevelMeter(QWidget):
    """A horizontal bar from -60 to 0 dBFS. The bar falls at `fall_db_s`, the peak mark holds 1 s."""

    def __init__(self, parent: QWidget | None = None, fall_db_s: float = 30.0) -> None:
        super().__init__(parent)
        self.fall_db_s = fall_db_s
        self.level_db = FLOOR_DB  # last value given
        self.shown_db = FLOOR_DB  # what the bar shows (falls smoothly)
        self.peak_db = FLOOR_DB
        self._t = self._peak_t = time.monotonic()
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(80)

    def sizeHint(self) -> QSize:
        return QSize(240, 14)

    def minimumSizeHint(self) -> QSize:
        return QSize(80, 10)

    def set_level(self, db: float) -> None:
        if db is None or math.isnan(db):
            return
        db = max(FLOOR_DB, min(0.0, float(db)))
        now = time.monotonic()
        fallen = self.shown_db - self.fall_db_s * (now - self._t)
        self.level_db, self.shown_db, self._t = db, max(db, fallen, FLOOR_DB), now
        if db >= self.peak_db or now - self._peak_t > 1.0:
            self.peak_db, self._peak_t = db, now
        self.update()

    def reset(self) -> None:
        self.level_db = self.shown_db = self.peak_db = FLOOR_DB
        self.update()

    def fraction(self) -> float:
        return (self.shown_db - FLOOR_DB) / -FLOOR_DB

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        r = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#e5e7eb"))
        p.drawRoundedRect(r, 4, 4)
        w = r.width() * self.fraction()
        if w > 0.5:
            grad = QLinearGradient(r.left(), 0, r.right(), 0)
            grad.setColorAt(0.0, QColor("#22c55e"))
            grad.setColorAt(0.75, QColor("#84cc16"))
            grad.setColorAt(0.9, QColor("#eab308"))
            grad.setColorAt(1.0, QColor("#ef4444"))
            p.setBrush(grad)
            p.drawRoundedRect(QRectF(r.left(), r.top(), w, r.height()), 4, 4)
        if self.peak_db > FLOOR_DB:
            x = r.left() + r.width() * (self.peak_db - FLOOR_DB) / -FLOOR_DB
            p.setBrush(QColor("#374151"))
            p.drawRect(QRectF(min(x, r.right() - 2), r.top(), 2, r.height()))
        p.end()


class MeterRow(QWidget):
    """'You' above 'Moshi': two labelled meters."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        lay = QGridLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setHorizontalSpacing(10)
        lay.setVerticalSpacing(8)
        self.input = LevelMeter(self)
        self.output = LevelMeter(self)
        for row, (text, meter) in enumerate((("You", self.input), ("Moshi", self.output))):
            label = QLabel(text, self)
            label.setStyleSheet("color:#4b5563; font-weight:600;")
            lay.addWidget(label, row, 0)
            lay.addWidget(meter, row, 1)
        lay.setColumnStretch(1, 1)
        self.input.setToolTip("Microphone level")
        self.output.setToolTip("Moshi's voice level")
