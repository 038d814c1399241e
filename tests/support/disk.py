"""A real small disk for full-disk and read-only tests: a tmpfs mounted for the test (Linux, as root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(folder: Path, size: str, read_only: bool = False, folders: tuple[str, ...] = ()) -> Iterator[Path]:
    """Mounts a `size` tmpfs ("200k") on `folder` (created) for the block, holding the empty `folders` (made
    before a `read_only` disk turns read-only); skips the test where not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    if (
        getattr(os, "geteuid", lambda: -1)() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True
        ).returncode
    ):
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    try:
        for name in folders:
            (folder / name).mkdir()
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
