"""The conversations of this session and saving them: a recording's copy under a folder the person picks.

The controller records each conversation into a temporary folder that is removed when the app quits;
a conversation is kept only by saving it. A saved copy is written under a temporary name and renamed
when complete, and never replaces a folder already there.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Conversation:
    number: int
    recording: Path  # the controller's temporary folder (user.wav, moshi.wav, transcript.jsonl)
    started: float  # time.time()
    text_index: int  # its place in the transcript view
    saved: bool = False


def save_copy(conversation: Conversation, folder: str | Path, text: str) -> Path:
    """Copies the recording and writes `text` as transcript.txt into a new folder under `folder`
    (named after the conversation's start); returns it.

    Raises:
        OSError: the folder cannot be written (nothing is left behind).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(conversation.started))
    base = Path(folder) / f"moshi-conversation-{stamp}"
    dest, k = base, 1
    while dest.exists():
        k += 1
        dest = base.with_name(f"{base.name}-{k}")
    part = dest.with_name(f".{dest.name}.part")
    shutil.rmtree(part, ignore_errors=True)
    try:
        shutil.copytree(conversation.recording, part)
        (part / "transcript.txt").write_text(text + "\n", encoding="utf-8")
        part.rename(dest)
    except OSError:
        shutil.rmtree(part, ignore_errors=True)
        raise
    conversation.saved = True
    return dest
