"""Transcripts as files: plain text, JSON with word times, SubRip (srt) and WebVTT (vtt) subtitles."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing this module stays light (no numpy): the command line reads FORMATS before MLX
    from .words import TimedWord

FORMATS = ("txt", "json", "srt", "vtt")
CUE_WORDS = 10  # a subtitle cue holds at most this many words,
CUE_SECONDS = 5.0  # spans at most this long,
CUE_GAP = 1.0  # and ends where the speaker pauses this long


def cues(words: list[TimedWord]) -> list[list[TimedWord]]:
    """Words grouped into subtitle cues."""
    out: list[list[TimedWord]] = []
    for w in words:
        cue = out[-1] if out else None
        if (
            cue is None
            or len(cue) >= CUE_WORDS
            or w.end - cue[0].start > CUE_SECONDS
            or w.start - cue[-1].end > CUE_GAP
        ):
            out.append([w])
        else:
            cue.append(w)
    return out


def _clock(t: float, sep: str) -> str:
    ms = round(t * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def render(fmt: str, text: str, words: list[TimedWord], meta: dict, turn_ends: list[float] | None = None) -> str:
    """The transcript in `fmt` (one of FORMATS). `text` is the whole decoded text; `words` are timed."""
    if fmt == "txt":
        return text + "\n"
    if fmt == "json":
        body = {
            **meta,
            "text": text,
            "words": [{"word": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in words],
        }
        if turn_ends is not None:
            body["end_of_turn"] = [round(t, 3) for t in turn_ends]
        return json.dumps(body, ensure_ascii=False, indent=1) + "\n"
    sep = "," if fmt == "srt" else "."
    blocks = [] if fmt == "srt" else ["WEBVTT"]
    for i, cue in enumerate(cues(words), 1):
        end = max(cue[-1].end, cue[0].start + 0.001)
        timing = f"{_clock(cue[0].start, sep)} --> {_clock(end, sep)}"
        line = " ".join(w.text for w in cue)
        blocks.append(f"{i}\n{timing}\n{line}" if fmt == "srt" else f"{timing}\n{line}")
    return "\n\n".join(blocks) + "\n"
