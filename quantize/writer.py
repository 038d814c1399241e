"""A safetensors file written one tensor at a time, so a 7B conversion never holds its output in memory.

`mx.save_safetensors` takes the whole dict: every array it evaluates stays referenced by the dict until
the call returns, so its peak is the whole file. Here the header is laid out first from the planned
names, dtypes and shapes (known without computing anything), then each tensor is evaluated, written at
its place and dropped. The file is written under its final name inside a staging folder that
`convert` renames into place only once every file is complete and verified.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import mlx.core as mx
import numpy as np

_DTYPES = {mx.bfloat16: ("BF16", mx.uint16), mx.float16: ("F16", mx.uint16), mx.float32: ("F32", mx.uint32),
           mx.uint32: ("U32", mx.uint32), mx.int32: ("I32", mx.uint32), mx.uint8: ("U8", mx.uint8)}


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


class StreamingSafetensors:
    """Write `entries` in order into `path`; `write()` each tensor, then `close()`.

    Raises ValueError when a tensor comes out of order or with another dtype or shape than planned
    (a bug in the caller: the header would lie).
    """

    def __init__(self, path: str | os.PathLike, entries: list[Entry], metadata: dict[str, str] | None = None):
        self.path = Path(path)
        self.entries = list(entries)
        header: dict[str, object] = {"__metadata__": dict(metadata or {"format": "mlx"})}
        offset = 0
        for e in self.entries:
            if e.dtype not in _DTYPES:
                raise ValueError(f"{e.name}: dtype {e.dtype} cannot be written")
            header[e.name] = {"dtype": _DTYPES[e.dtype][0], "shape": list(e.shape),
                              "data_offsets": [offset, offset + e.nbytes]}
            offset += e.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # data starts 8-byte aligned, as the safetensors spec recommends
        self.size = 8 + len(raw) + offset
        self._next = 0
        self._file = open(self.path, "wb")
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
        """Close and delete the partial file."""
        if not self._file.closed:
            self._file.close()
        self.path.unlink(missing_ok=True)
