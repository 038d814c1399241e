"""Dialogs the app shows, behind one object so tests can intercept them (nothing here blocks a test).

Error messages open window-modal but without a nested event loop (`QMessageBox.open`), so the
model and audio keep running and a test can read and close them.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget


class Dialogs:
    def __init__(self, parent: QWidget) -> None:
        self.parent = parent
        self.open_boxes: list[QMessageBox] = []

    def error(self, title: str, message: str) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Warning, title, title, QMessageBox.StandardButton.Ok, self.parent)
        box.setInformativeText(message)
        box.setObjectName("errorDialog")
        box.finished.connect(lambda _=0, b=box: self._closed(b))
        self.open_boxes.append(box)
        box.open()
        return box

    def ask_save_before_quit(self, unsaved: int) -> str:
        """'save', 'discard' or 'cancel' (blocking, as any editor asks before it quits)."""
        s, b = QMessageBox.StandardButton, QMessageBox.ButtonRole
        many = unsaved > 1
        box = QMessageBox(
            QMessageBox.Icon.Question,
            "Quit Moshi",
            f"Save the conversation{'s' if many else ''} before quitting?",
            s.Save | s.Discard | s.Cancel,
            self.parent,
        )
        box.setInformativeText(
            f"{unsaved} conversation{'s have' if many else ' has'} not been saved. Unless saved, "
            f"{'their recordings and transcripts are' if many else 'its recording and transcript are'} "
            "deleted when Moshi quits."
        )
        box.setObjectName("quitDialog")
        box.setDefaultButton(s.Save)
        box.setEscapeButton(s.Cancel)
        box.exec()
        role = box.buttonRole(box.clickedButton()) if box.clickedButton() is not None else b.RejectRole
        box.deleteLater()
        return {b.AcceptRole: "save", b.DestructiveRole: "discard"}.get(role, "cancel")

    def choose_file(self, title: str, start: str = "", filters: str = "") -> str:
        """A file picked by the user, '' if cancelled (blocking: tests replace this method)."""
        return QFileDialog.getOpenFileName(self.parent, title, start, filters)[0]

    def choose_folder(self, title: str, start: str = "") -> str:
        """A folder picked by the user, '' if cancelled (blocking: tests replace this method)."""
        return QFileDialog.getExistingDirectory(self.parent, title, start)

    def _closed(self, box: QMessageBox) -> None:
        if box in self.open_boxes:
            self.open_boxes.remove(box)
        box.deleteLater()
