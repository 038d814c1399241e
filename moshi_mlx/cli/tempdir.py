"""The temporary folder MLX needs: its CPU backend compiles fused kernels there (`mx.compile`), at a model's
first step. A folder that is missing, not writable or full used to fail that step with C++ filesystem text;
`check_temp_folder()` refuses it in one line before anything loads."""

from __future__ import annotations

import os
import shutil
import tempfile

from ..errors import OutputError

TEMP_VARS = ("TMPDIR", "TMP", "TEMP", "TEMPDIR")  # what std::filesystem::temp_directory_path reads, in order
MIN_FREE = 8 << 20  # bytes: room for the compiler's files and the compiled kernels


def check_temp_folder() -> None:
    """Raises OutputError when MLX (on the CPU) could not compile its kernels in the temporary folder."""
    import mlx.core as mx

    if mx.default_device() != mx.cpu:
        return
    var = next((v for v in TEMP_VARS if os.environ.get(v)), None)
    folder = os.environ[var] if var else "/tmp"
    where = f"{var}={folder}" if var else f"the temporary folder {folder}"
    fix = f"point {var} at a writable folder or unset it" if var else "set TMPDIR to a writable folder"
    if not os.path.isdir(folder):
        raise OutputError(f"{where} is not a folder, and MLX compiles its CPU kernels there: {fix}")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".moshi-probe-")
        os.close(fd)
        os.unlink(probe)
        free = shutil.disk_usage(folder).free
    except OSError as e:
        why = e.strerror or e
        raise OutputError(f"cannot write in {where} ({why}), where MLX compiles its CPU kernels: {fix}") from None
    if free < MIN_FREE:
        raise OutputError(
            f"{where} is full ({free >> 10} KiB free), and MLX compiles its CPU kernels there: "
            f"free some space, or {fix}"
        )
