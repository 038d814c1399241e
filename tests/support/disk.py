"""A real small disk for full-disk and read-only tests: a tmpfs mounted for the test (Linux, as root)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def small_disk(folder: Path, size: str, read_only: bool = False) -> Iterator[Path]:
    """Mounts a `size` tmpfs ("200k") on `folder` (created) for the block; skips the test where not permitted."""
    folder.mkdir(parents=True, exist_ok=True)
    opts = f"{'ro,' if read_only else ''}size={size}"
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a small tmpfs here (needs root on Linux)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=False)
