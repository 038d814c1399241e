"""Reading safetensors headers without loading tensors, and atomic writes.

Format detection and memory estimates only need names, shapes and dtypes, which live in the
JSON header at the start of the file (8-byte little-endian length, then JSON).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from pathlib import Path

import mlx.core as mx

from ..config.common import parse_json
from ..errors import CheckpointError

_MAX_HEADER = 100 * 1024 * 1024
_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "I64": 8,
    "I32": 4,
    "U32": 4,
    "I16": 2,
    "U16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype string, e.g. "BF16", "U32"
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = _DTYPE_BYTES.get(self.dtype, 4)
        for d in self.shape:
            n *= d
        return n


def read_header(path: str | os.PathLike) -> dict[str, TensorInfo]:
    """Names, dtypes and shapes of every tensor in a safetensors file; checks the file is whole."""
    path = Path(path)
    if not path.is_file():
        what = "not a regular file (a pipe or device)" if path.exists() else "no such file"
        raise CheckpointError(f"{path}: {what}. Check the path, or download the weights first.")
    size = path.stat().st_size
    with path.open("rb") as f:
        raw_len = f.read(8)
        if len(raw_len) < 8:
            raise CheckpointError(f"{path}: not a safetensors file (only {size} bytes).")
        (n,) = struct.unpack("<Q", raw_len)
        if n <= 1 or n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(
                f"{path}: not a safetensors file (bad header length {n}). "
                "Pass a .safetensors checkpoint as released by Kyutai or written by `python -m quantize`."
            )
        try:
            header = parse_json(f.read(n))
        except ValueError as e:
            raise CheckpointError(f"{path}: not a safetensors file (header is not valid JSON: {e}).") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: not a safetensors file (header is not a JSON object).")
    out: dict[str, TensorInfo] = {}
    end = 0
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        try:
            shape, (start, stop) = tuple(int(d) for d in meta["shape"]), map(int, meta["data_offsets"])
            if min(shape, default=0) < 0 or not 0 <= start <= stop:
                raise ValueError
            out[name] = TensorInfo(str(meta["dtype"]), shape)
            end = max(end, stop)
        except (KeyError, TypeError, ValueError, IndexError):
            raise CheckpointError(f"{path}: malformed safetensors header entry for {name[:80]!r}.") from None
    if 8 + n + end > size:
        raise CheckpointError(
            f"{path}: truncated: the header describes {8 + n + end} bytes but the file has {size}. "
            "The download or conversion was interrupted: delete the file and fetch or convert it again."
        )
    return out


def load_tensors(path: str | os.PathLike) -> dict[str, mx.array]:
    """All tensors of a safetensors file (header validated first, so errors are clear)."""
    read_header(path)
    try:
        return dict(mx.load(str(path)))  # type: ignore[arg-type]
    except Exception as e:  # mlx raises bare RuntimeError/ValueError on corrupt data
        raise CheckpointError(f"{path}: could not read tensors ({e}).") from None
