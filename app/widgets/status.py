"""Status bar: model, quantization, real-time factor, latency, skipped frames."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

_QUANT_TIP = "Weights precision"
_MODEL_WIDTH = 180  # a longer folder name is shortened in the middle (the tooltip has it whole)


class StatusPanel(QStatusBar):
    """Fixed fields on the right, the state message on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state_label = QLabel("Ready", self)
        self.model_label = QLabel("—", self)
        self.quant_label = QLabel("—", self)
        self.rtf_label = QLabel("RTF —", self)
        self.latency_label = QLabel("latency —", self)
        self.skipped_label = QLabel("skipped 0", self)
        self.state_label.setContentsMargins(8, 0, 8, 0)
        self.addWidget(self.state_label, 1)
        tips = (
            "Model",
            _QUANT_TIP,
            "Real-time factor: model step time over 80 ms (below 1 keeps up)",
            "Delay from your voice reaching the model to Moshi's answer leaving the speaker queue",
            "Microphone frames skipped because the model fell behind",
        )
        for label, tip in zip(
            (self.model_label, self.quant_label, self.rtf_label, self.latency_label, self.skipped_label), tips
        ):
            label.setToolTip(tip)
            label.setContentsMargins(8, 0, 8, 0)
            self.addPermanentWidget(label)
        self.skipped = 0

    def set_state(self, text: str) -> None:
        self.state_label.setText(text)

    def set_model(self, label: str, quantization: str) -> None:
        text = label or "—"
        self.model_label.setText(self.fontMetrics().elidedText(text, Qt.TextElideMode.ElideMiddle, _MODEL_WIDTH))
        self.model_label.setToolTip(f"Model: {text}")
        self.quant_label.setText(quantization or "—")

    def set_notes(self, notes: str) -> None:
        """What the loaded model says of its set-up: shown for a while, then kept as the precision's tooltip."""
        self.quant_label.setToolTip(_QUANT_TIP + (f". {notes}" if notes else ""))
        if notes:
            self.showMessage(notes, 15000)

    def set_stats(self, rtf: float, latency_ms: float, skipped: int) -> None:
        self.rtf_label.setText(f"RTF {rtf:.2f}")
        self.latency_label.setText(f"latency {latency_ms:.0f} ms")
        self.set_skipped(skipped)

    def set_skipped(self, total: int) -> None:
        self.skipped = total
        self.skipped_label.setText(f"skipped {total}")
        self.skipped_label.setStyleSheet("color:#b45309;" if total else "")

    def clear_stats(self) -> None:
        self.rtf_label.setText("RTF —")
        self.latency_label.setText("latency —")
