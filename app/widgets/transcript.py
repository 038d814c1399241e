"""Moshi's live transcript (its Inner Monologue text), kept as a scrollable list of conversations.

When the user is transcribed too (an STT model, `run --transcribe-user`), each side's turn is a paragraph of
its own, headed "You" or "Moshi", the user's words in another colour; copied text keeps the labels. Each word
takes its place by when it was said: the user's come late (the STT model's delay) and go before Moshi's words
said after them, splitting Moshi's turn. Where the STT model says the user finished a turn, the user's paragraph
closes there: their next words start a new one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QPainter, QTextCursor
from PySide6.QtWidgets import QTextBrowser, QWidget

_HEAD_STYLE = "color:#6b7280; font-size:small; font-weight:600; letter-spacing:0.5px;"
_NOTE_STYLE = "color:#9ca3af; font-size:small; font-style:italic;"
_USER_COLOR = "#2563eb"  # the user's words (Moshi's keep the palette's text colour)
SPEAKERS = {"user": "You", "moshi": "Moshi"}


@dataclass
class _Word:
    """A word shown in the open conversation, and where it begins (to write again what follows a late word)."""

    t: float  # seconds on the conversation's timeline (a user's word: when it was said)
    speaker: str
    text: str  # its pieces as they came (a leading space unless it was the first)
    pos: int = 0  # its place in the document
    pieces: int = 0  # the copied text's pieces before it
    turn: str | None = None  # whose turn was open before it
    ends_turn: bool = False  # not a word: the speaker finished a turn here


class TranscriptView(QTextBrowser):
    """Read-only, selectable text; follows new words unless the user scrolled up to read."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setReadOnly(True)
        self.setOpenLinks(False)
        flags = Qt.TextInteractionFlag
        self.setTextInteractionFlags(flags.TextSelectableByMouse | flags.TextSelectableByKeyboard)
        font = QFont(self.font())
        font.setPointSizeF(max(15.0, font.pointSizeF() * 1.5))
        self.setFont(font)
        self.document().setDocumentMargin(18)
        # Qt draws a placeholder on one line, cut off in a narrow window: this one wraps (paintEvent)
        self.hint = "Press Start and say hello. Moshi's words appear here as it speaks them."
        self._conversations: list[list[str]] = []  # text pieces per conversation, for copying
        self._open = False
        self._speaker: str | None = None  # whose turn the last paragraph holds, once both sides are shown
        # the open conversation's words in their order by time; each speaker's last word (its next piece may
        # continue it)
        self._words: list[_Word] = []
        self._last_word: dict[str, _Word] = {}

    # -- content ---------------------------------------------------------------------------------
    def begin_conversation(self, title: str) -> int:
        """Starts a conversation's section; returns its index (for `conversation_text`)."""
        follow = self._at_bottom()
        cur = self._end_cursor()
        if not self.document().isEmpty():
            cur.insertBlock()
        cur.insertHtml(f'<p style="{_HEAD_STYLE}">{html.escape(title.upper())}</p>')
        cur.insertBlock()
        cur.setCharFormat(self._text_format())
        self._conversations.append([])
        self._words = []
        self._last_word = {}
        self._open = True
        self._speaker = None
        self._follow(follow)
        return len(self._conversations) - 1

    def append_text(self, text: str, speaker: str = "moshi", t: float | None = None) -> None:
        """Appends a piece of speech as it arrives (it carries its own leading space): Moshi's, or the
        user's (`speaker` "user") when the user is transcribed too.

        `t` (seconds on the conversation's timeline; a user's word: when it was said) places a new word among
        the words already shown: the user's words come late (the STT model's delay), so one said before Moshi's
        last words goes before them, splitting Moshi's turn. A piece without a leading space continues its
        speaker's last word (the first word of a conversation starts one). Without `t` a piece goes at the end."""
        if not self._open:
            self.begin_conversation("Conversation")
        words = self._words
        last = self._last_word.get(speaker)
        if last is not None and not text.startswith(" "):  # the rest of a word already placed
            last.text += text
            if last is words[-1]:
                self._show(text, speaker)
            else:
                self._rewrite_from(words.index(last), last)
            return
        when = t if t is not None else (words[-1].t if words else 0.0)
        word = _Word(when, speaker, text)
        self._last_word[speaker] = word
        at = len(words)
        while at > 0 and words[at - 1].t > when:  # the words said after this one
            at -= 1
        if at == len(words):
            words.append(word)
            self._mark(word)
            self._show(text, speaker)
        else:
            after = words[at]  # where it goes: the document as it was before that word
            words.insert(at, word)
            self._rewrite_from(at, after)

    def end_turn(self, speaker: str, t: float) -> None:
        """`speaker` finished a turn at `t` (seconds on the conversation's timeline, when it was said): their
        paragraph closes there, and their next words start a new one."""
        if not self._open:
            return
        words = self._words
        mark = _Word(t, speaker, "", ends_turn=True)
        self._last_word.pop(speaker, None)  # a piece after it never continues the word before it
        at = len(words)
        while at > 0 and words[at - 1].t > t:
            at -= 1
        words.insert(at, mark)
        if at == len(words) - 1:
            self._mark(mark)
            self._close(speaker)
        else:
            self._rewrite_from(at, words[at + 1])

    def _close(self, speaker: str) -> None:
        if self._speaker == speaker:
            self._speaker = ""  # whoever speaks next starts a labelled paragraph

    def _show(self, text: str, speaker: str) -> None:
        """Writes a piece at the end of the open conversation: a new turn's label when the speaker changes."""
        follow = self._at_bottom()
        cur = self._end_cursor()
        if speaker == "user" and self._speaker is None:
            self._speaker = "moshi"  # both sides from here on: turns as labelled paragraphs
        if self._speaker is not None and speaker != self._speaker:
            self._speaker = speaker
            if self._conversations[-1]:
                cur.insertBlock()
                self._conversations[-1].append("\n")
            cur.insertHtml(f'<span style="{_HEAD_STYLE}">{SPEAKERS[speaker].upper()}</span> ')
            self._conversations[-1].append(f"{SPEAKERS[speaker]}: ")
            text = text.lstrip()
        if (not self._conversations[-1] or self._conversations[-1][-1].endswith(("\n", ": "))) and text.startswith(" "):
            text = text.lstrip()
        fmt = self._text_format()
        if speaker == "user":
            fmt.setForeground(QColor(_USER_COLOR))
        cur.setCharFormat(fmt)
        cur.insertText(text)
        self._conversations[-1].append(text)
        self._follow(follow)

    def _mark(self, word: _Word) -> None:
        """Notes where `word` begins: the document's end, the copied pieces, whose turn was open."""
        word.pos, word.pieces, word.turn = self._end_cursor().position(), len(self._conversations[-1]), self._speaker

    def _rewrite_from(self, index: int, mark: _Word) -> None:
        """Writes the open conversation's words again from `index` on (a late word was placed among them), from
        where `mark` began; the text before stays as it is."""
        follow = self._at_bottom()
        value = self.verticalScrollBar().value()
        cur = self._end_cursor()
        cur.setPosition(mark.pos, QTextCursor.MoveMode.KeepAnchor)
        cur.removeSelectedText()
        del self._conversations[-1][mark.pieces :]
        self._speaker = mark.turn
        for word in self._words[index:]:
            self._mark(word)
            if word.ends_turn:
                self._close(word.speaker)
            else:
                self._show(word.text, word.speaker)
        if not follow:
            self.verticalScrollBar().setValue(value)

    def end_conversation(self, note: str = "") -> None:
        if not self._open:
            return
        self._open = False
        if note:
            follow = self._at_bottom()
            cur = self._end_cursor()
            cur.insertBlock()
            cur.insertHtml(f'<span style="{_NOTE_STYLE}">{html.escape(note)}</span>')
            self._follow(follow)

    def transcript_text(self) -> str:
        """Every conversation's words as plain text, one paragraph per conversation."""
        return "\n\n".join("".join(c).strip() for c in self._conversations if "".join(c).strip())

    def conversation_text(self, index: int) -> str:
        return "".join(self._conversations[index]).strip() if self._conversations else ""

    def last_conversation_text(self) -> str:
        return self.conversation_text(-1)

    def hint_rect(self):
        """Where the hint is drawn while the transcript is empty."""
        m = int(self.document().documentMargin())
        return self.viewport().rect().adjusted(m, m, -m, -m)

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().paintEvent(event)
        if self.document().isEmpty() and self.hint:
            p = QPainter(self.viewport())
            p.setPen(self.palette().placeholderText().color())
            p.drawText(self.hint_rect(), Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, self.hint)
            p.end()

    # -- helpers ---------------------------------------------------------------------------------
    def _text_format(self):
        fmt = self._end_cursor().charFormat()
        fmt.setForeground(self.palette().text())
        fmt.setFontItalic(False)
        fmt.setFontWeight(QFont.Weight.Normal)
        fmt.setFontPointSize(self.font().pointSizeF())
        return fmt

    def _end_cursor(self) -> QTextCursor:
        cur = QTextCursor(self.document())
        cur.movePosition(QTextCursor.MoveOperation.End)
        return cur

    def _at_bottom(self) -> bool:
        bar = self.verticalScrollBar()
        return bar.value() >= bar.maximum() - 4

    def _follow(self, follow: bool) -> None:
        if follow:
            self.verticalScrollBar().setValue(self.verticalScrollBar().maximum())
