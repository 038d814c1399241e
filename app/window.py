"""Main window layout: the widgets and where they sit. No behaviour (see presenter.py)."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QFont, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMainWindow,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from moshi_mlx.release import STT_REPO

from .settings import FAMILY, PRECISIONS, VOICES
from .widgets.meters import MeterRow
from .widgets.status import StatusPanel
from .widgets.transcript import TranscriptView

START_STYLE = """
QPushButton#startButton { font-size: 20px; font-weight: 600; padding: 14px 36px; border-radius: 10px;
    color: white; background: %s; border: none; }
QPushButton#startButton:disabled { background: #9ca3af; }
"""
START_COLOR, STOP_COLOR = "#2563eb", "#dc2626"
# The settings' labels: messages name these places (app/wording.py)
MODEL_BOX, PRECISION_ROW, WEIGHTS_ROW = "Model", "Precision", "Weights folder"
AUDIO_BOX, INPUT_ROW, OUTPUT_ROW = "Audio", "Microphone", "Speaker"
PERSONA_BOX, PERSONA_VOICE_ROW, ROLE_ROW = "Persona (PersonaPlex)", "Voice", "Role"
ECHO_CHECK = "Echo cancellation"
ECHO_TIP = (
    "Removes Moshi's own voice from the microphone, so that through speakers it does not hear and answer "
    "itself, while your voice passes at its full level: you can still interrupt it. Not needed with headphones."
)
SUPPRESSOR_CHECK = "Also dim leftover echo"
SUPPRESSOR_TIP = (
    "Residual echo suppressor: after echo cancellation, softens what is left of Moshi's voice where only Moshi "
    "is heard. While you and Moshi talk at once it may dull your voice slightly. Off by default."
)
USER_CHECK = "Show what I say"
USER_TIP = (
    f"Transcribes what you say, shown in the conversation beside Moshi's words and saved with it, with Kyutai's "
    f"speech-to-text model {STT_REPO} (downloaded once; it needs memory beside Moshi's). "
    "Only for a conversation with Moshi."
)
USER_NOT_HERE = f"{USER_CHECK} is for a conversation with Moshi: Hibiki and PersonaPlex do not take it"


class MainWindow(QMainWindow):
    def __init__(self) -> None:
        super().__init__()
        self.setWindowTitle("Moshi")
        self.resize(1040, 680)
        # no fixed minimum size: the layout's own (every text fits, nothing overlaps) is the window's

        # -- conversation column -----------------------------------------------------------------
        self.transcript = TranscriptView()
        self.transcript.setObjectName("transcript")
        self.transcript.setFrameShape(QFrame.Shape.NoFrame)
        self.transcript.setStyleSheet(
            "QTextBrowser#transcript { background: white; border: 1px solid #e5e7eb; border-radius: 8px; }"
        )
        self.meters = MeterRow()
        self.start_button = QPushButton("Start")
        self.start_button.setObjectName("startButton")
        self.start_button.setMinimumWidth(200)
        self.start_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.set_start_style(running=False)
        self.mute_button = QPushButton("Mute")
        self.mute_button.setCheckable(True)
        self.mute_button.setToolTip("Mute the microphone: Moshi hears silence and goes on talking (Ctrl+M)")
        self.copy_button = QToolButton()
        self.copy_button.setText("Copy")
        self.copy_button.setToolTip("Copy the transcript (Ctrl+Shift+C)")
        self.save_button = QToolButton()
        self.save_button.setText("Save…")
        self.save_button.setToolTip("Save the last conversation: both voices and the transcript (Ctrl+S)")

        self.user_check = QCheckBox(USER_CHECK)
        self.user_check.setToolTip(USER_TIP)

        title = QLabel("Moshi")
        tf = QFont(title.font())
        tf.setPointSizeF(tf.pointSizeF() * 1.6)
        tf.setWeight(QFont.Weight.DemiBold)
        title.setFont(tf)
        self.subtitle = QLabel("Inner Monologue: what Moshi says, as it says it")
        self.subtitle.setStyleSheet("color:#6b7280;")
        self.subtitle.setWordWrap(True)  # on two lines in a narrow window
        head = QHBoxLayout()
        head.addWidget(title)
        head.addSpacing(12)
        head.addWidget(self.subtitle, 1, Qt.AlignmentFlag.AlignBottom)
        head.addWidget(self.user_check)  # the transcript's other side: beside it, not among the model's settings
        head.addWidget(self.copy_button)
        head.addWidget(self.save_button)

        controls = QHBoxLayout()
        controls.setSpacing(14)
        controls.addWidget(self.start_button)
        controls.addWidget(self.mute_button)
        controls.addWidget(self.meters, 1)

        left = QVBoxLayout()
        left.setSpacing(12)
        left.addLayout(head)
        left.addWidget(self.transcript, 1)
        left.addLayout(controls)

        # -- settings column ---------------------------------------------------------------------
        self.voice_combo = QComboBox()
        for key, text in VOICES.items():
            self.voice_combo.addItem(text, key)
        self.voice_combo.insertSeparator(len(VOICES))
        for repo, text in FAMILY.items():  # the family's releases, downloaded as Moshi's (data: the repository)
            self.voice_combo.addItem(text, repo)
            self.voice_combo.setItemData(self.voice_combo.count() - 1, repo, Qt.ItemDataRole.ToolTipRole)
        self.precision_combo = QComboBox()
        for key, text in PRECISIONS.items():
            self.precision_combo.addItem(text, key)
        self.folder_edit = QLineEdit()
        self.folder_edit.setReadOnly(True)
        self.folder_edit.setPlaceholderText("(downloaded)")
        self.folder_button = _tool_button("…", "Use a folder of weights on this computer (e.g. made by quantize)")
        self.folder_clear = _tool_button("×", "Download Kyutai's weights instead")
        folder_row = _row(self.folder_edit, self.folder_button, self.folder_clear)
        self.input_combo = QComboBox()
        self.output_combo = QComboBox()
        for c in (self.input_combo, self.output_combo, self.voice_combo, self.precision_combo):
            c.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            c.setMinimumContentsLength(14)
        self.temperature_spin = QDoubleSpinBox()
        self.temperature_spin.setRange(0.0, 2.0)
        self.temperature_spin.setSingleStep(0.05)
        self.temperature_spin.setDecimals(2)
        self.temperature_spin.setToolTip("Higher is more varied, lower more predictable (0 = always the likeliest)")
        self.echo_check = QCheckBox(ECHO_CHECK)
        self.echo_check.setToolTip(ECHO_TIP)
        self.suppressor_check = QCheckBox(SUPPRESSOR_CHECK)
        self.suppressor_check.setToolTip(SUPPRESSOR_TIP)

        self.persona_voice_combo = QComboBox()  # preset names, then recordings the user picked (data: name or path)
        self.persona_voice_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.persona_voice_combo.setMinimumContentsLength(10)
        self.persona_voice_file = _tool_button(
            "…", "Use a short recording of a voice (.wav, .flac) or a voice preset (.pt)"
        )
        persona_voice_row = _row(self.persona_voice_combo, self.persona_voice_file)
        self.role_edit = QLineEdit()
        self.role_edit.setToolTip("Who Moshi is, e.g. a teacher, a customer-service agent with a name and a shop")

        model_box = QGroupBox(MODEL_BOX)
        mf = QFormLayout(model_box)
        mf.addRow("Voice", self.voice_combo)
        mf.addRow(PRECISION_ROW, self.precision_combo)
        mf.addRow(WEIGHTS_ROW, folder_row)
        mf.addRow("Temperature", self.temperature_spin)
        self.persona_box = QGroupBox(PERSONA_BOX)
        self.persona_box.setToolTip("Models whose config says model_type 'personaplex' take a voice and a role")
        pf = QFormLayout(self.persona_box)
        pf.addRow(PERSONA_VOICE_ROW, persona_voice_row)
        pf.addRow(ROLE_ROW, self.role_edit)
        audio_box = QGroupBox(AUDIO_BOX)
        af = QFormLayout(audio_box)
        af.addRow(INPUT_ROW, self.input_combo)
        af.addRow(OUTPUT_ROW, self.output_combo)
        echo_row = QHBoxLayout()  # the refinement beside the option it refines: the window stays short
        echo_row.addWidget(self.echo_check)
        echo_row.addWidget(self.suppressor_check, 1)
        af.addRow(echo_row)
        for f in (mf, pf, af):
            f.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
            f.setVerticalSpacing(10)
        self.settings_panel = QWidget()
        self.settings_panel.setFixedWidth(320)
        side = QVBoxLayout(self.settings_panel)
        side.setContentsMargins(0, 0, 0, 0)
        side.setSpacing(14)
        side.addWidget(model_box)
        side.addWidget(self.persona_box)
        side.addWidget(audio_box)
        side.addStretch(1)

        central = QWidget()
        root = QHBoxLayout(central)
        root.setContentsMargins(18, 14, 18, 10)
        root.setSpacing(18)
        root.addLayout(left, 1)
        root.addWidget(self.settings_panel)
        self.setCentralWidget(central)
        self.transcript.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.transcript.setMinimumHeight(160)

        self.status = StatusPanel()
        self.setStatusBar(self.status)

        # -- menu --------------------------------------------------------------------------------
        self.save_action = QAction("&Save conversation…", self)
        self.save_action.setShortcut(QKeySequence.StandardKey.Save)
        self.copy_action = QAction("&Copy transcript", self)
        self.copy_action.setShortcut(QKeySequence("Ctrl+Shift+C"))
        self.quit_action = QAction("&Quit", self)
        self.quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        self.start_action = QAction("Start / Stop", self)
        self.start_action.setShortcut(QKeySequence("Ctrl+Return"))
        file_menu = self.menuBar().addMenu("&File")
        file_menu.addAction(self.save_action)
        file_menu.addAction(self.copy_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        self.mute_action = QAction("&Mute microphone", self)
        self.mute_action.setCheckable(True)
        self.mute_action.setShortcut(QKeySequence("Ctrl+M"))
        talk_menu = self.menuBar().addMenu("&Conversation")
        talk_menu.addAction(self.start_action)
        talk_menu.addAction(self.mute_action)

    def set_start_style(self, running: bool) -> None:
        self.start_button.setStyleSheet(START_STYLE % (STOP_COLOR if running else START_COLOR))


def _tool_button(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    return button


def _row(field: QWidget, *buttons: QToolButton) -> QHBoxLayout:
    """A settings row: a field that takes the width, then its small buttons."""
    row = QHBoxLayout()
    row.setSpacing(4)
    row.addWidget(field, 1)
    for b in buttons:
        row.addWidget(b)
    return row
