"""A safetensors file written one tensor at a time, so a 7B conversion never holds its output in memory.

`mx.save_safetensors` takes the whole dict: every array it evaluates stays referenced by the dict until
the call returns, so its peak is the whole file. Here the header is laid out first from the planned
names, dtypes and shapes (known without computing anything), then each tensor is evaluated, written at
its place and dropped. The file is written under its final name inside a staging folder that
`convert` renames into place only once every file is complete and verified. A write that fails (read-only
or full file system) is worded by `output_error`; `check_space` refuses before writing what cannot fit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import numpy as np

from moshi_mlx.errors import CheckpointError, MoshiError, OutputError
from moshi_mlx.outputs import write_failure

_DTYPES = {
    mx.bfloat16: ("BF16", mx.uint16),
    mx.float16: ("F16", mx.uint16),
    mx.float32: ("F32", mx.uint32),
    mx.uint32: ("U32", mx.uint32),
    mx.int32: ("I32", mx.uint32),
    mx.uint8: ("U8", mx.uint8),
}


class Entry(NamedTuple):
    name: str
    dtype: mx.Dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = self.dtype.size
        for d in self.shape:
            n *= d
        return n


def _header(entries: list[Entry], metadata: dict[str, str] | None) -> tuple[bytes, int]:
    """The safetensors header laid out for `entries`, and the size of the data after it."""
    header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "mlx"})}
    offset = 0
    for e in entries:
        if e.dtype not in _DTYPES:
            raise ValueError(f"{e.name}: dtype {e.dtype} cannot be written")
        header[e.name] = {
            "dtype": _DTYPES[e.dtype][0],
            "shape": list(e.shape),
            "data_offsets": [offset, offset + e.nbytes],
        }
        offset += e.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the safetensors spec recommends
    return raw, offset


def file_size(entries: list[Entry], metadata: dict[str, str] | None = None) -> int:
    """Bytes of the file `StreamingSafetensors` writes for `entries`."""
    raw, data = _header(entries, metadata)
    return 8 + len(raw) + data


class StreamingSafetensors:
    """Write `entries` in order into `path`; `write()` each tensor, then `close()`.

    Raises ValueError when a tensor comes out of order or with another dtype or shape than planned
    (a bug in the caller: the header would lie).
    """

    def __init__(self, path: str | os.PathLike, entries: list[Entry], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.entries = list(entries)
        raw, data = _header(self.entries, metadata)
        self.size = 8 + len(raw) + data
        self._next = 0
        self._file = open(self.path, "wb")  # noqa: SIM115 (held open across write() calls; closed by close/abort)
        self._file.write(len(raw).to_bytes(8, "little") + raw)

    def write(self, name: str, x: mx.array) -> None:
        e = self.entries[self._next] if self._next < len(self.entries) else None
        if e is None or e.name != name or x.dtype != e.dtype or tuple(x.shape) != e.shape:
            raise ValueError(f"{self.path.name}: got {name} {x.dtype} {tuple(x.shape)}, planned {e}")
        data = np.array(x.view(_DTYPES[x.dtype][1]))  # contiguous host copy of this one tensor
        self._file.write(data.tobytes(order="C"))
        self._next += 1

    def close(self) -> None:
        """Flush to disk; ValueError if tensors are missing (the file would be short)."""
        if self._next != len(self.entries):
            self.abort()
            raise ValueError(f"{self.path.name}: {len(self.entries) - self._next} planned tensors not written")
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def abort(self) -> None:
        """Close and delete the partial file; never raises (closing a file the disk refused fails again)."""
        with contextlib.suppress(OSError):
            if not self._file.closed:
                self._file.close()
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def size_text(n: float) -> str:
    """Bytes as people read them: 431.52 KB, 4.61 GB."""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return str(n)


def check_space(folder: Path, out: Path, nbytes: int) -> None:
    """OutputError before anything is written if `nbytes` will not fit on the file system of `folder`."""
    free = shutil.disk_usage(folder).free
    if nbytes > free:
        raise OutputError(
            f"--out {out}: the files need {size_text(nbytes)} but only {size_text(free)} is free there: "
            "free some space or choose another --out"
        )


def output_error(e: OSError, out: Path) -> MoshiError:
    """An OSError met while converting into `out`, as one line: the output cannot be written (and why, and
    what to do), or, for a file elsewhere, it cannot be read."""
    where = os.path.abspath(e.filename) if isinstance(e.filename, str) else None
    target = os.path.abspath(out)
    inside = where is None or where == target or where.startswith(target + os.sep) or target.startswith(where + os.sep)
    if not inside:
        return CheckpointError(f"cannot read {where}: {e.strerror or e}")
    return OutputError(f"cannot write --out {out}: {write_failure(e, 'choose another --out')}")
