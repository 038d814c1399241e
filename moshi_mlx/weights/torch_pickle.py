"""Reading tensors from a PyTorch `.pt` file (`torch.save`'s zip of a pickle) without torch and without
running anything the file asks for.

A `.pt` file is a zip holding `<name>/data.pkl` (a pickle) and one raw little-endian buffer per storage
(`<name>/data/<key>`). Unpickling it with `pickle` or `torch.load(weights_only=False)` runs whatever callable
the pickle names. This reader knows only what a saved tensor needs: `torch._utils._rebuild_tensor_v2`, the
typed storage classes (`torch.FloatStorage`, ...) and the empty `collections.OrderedDict` of backward hooks;
any other global refuses the file, naming it, before anything is built. Tensors come back as numpy arrays
(bfloat16 widened to float32, which is exact), inside the dicts, lists and tuples the pickle holds.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import CheckpointError

# torch's typed storage classes -> numpy dtype ("bf16": stored as uint16, widened to float32)
_STORAGES: dict[str, object] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bf16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
MAX_PICKLE_BYTES = 1 << 20  # the pickle only describes tensors: a voice preset's is a few hundred bytes
MAX_STORAGE_BYTES = 1 << 30  # one tensor's bytes (a preset's are a few MB): a bigger one is refused unread


class _StorageType:
    def __init__(self, name: str) -> None:
        self.name, self.dtype = name, _STORAGES[name]


class UnsafePickle(Exception):
    """The pickle asks for something other than tensors."""


class _Storage(NamedTuple):
    flat: np.ndarray  # the storage's values (bfloat16 as uint16)
    bf16: bool


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2, building a numpy array; refuses strides reaching past the storage."""
    if not isinstance(storage, _Storage):
        raise UnsafePickle("a tensor whose storage is not one of the file's")
    flat, bf16 = storage
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or any(s < 0 for s in size + stride) or offset < 0:
        raise UnsafePickle(f"a tensor of size {size} and stride {stride}")
    last = offset + sum((n - 1) * s for n, s in zip(size, stride)) if all(size) else offset - 1
    if last >= len(flat):
        raise UnsafePickle(f"a tensor of size {size} reaching past its storage of {len(flat)} values")
    view = np.lib.stride_tricks.as_strided(flat[offset:], size, tuple(s * flat.itemsize for s in stride))
    out = np.array(view)  # a copy: the storage may be shared
    if bf16:
        out = (out.astype(np.uint32) << 16).view(np.float32)
    return out


class _Unpickler(pickle.Unpickler):
    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str) -> None:
        super().__init__(io.BytesIO(data))
        self.archive, self.prefix = archive, prefix
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGES:
            return _StorageType(name)
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        raise UnsafePickle(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise UnsafePickle(f"the persistent object {str(pid)[:60]}")
        kind, key, numel = pid[1], str(pid[2]), int(pid[4])
        if key not in self.storages:
            name = f"{self.prefix}/data/{key}"
            try:
                if self.archive.getinfo(name).file_size > MAX_STORAGE_BYTES:
                    raise UnsafePickle(f"a storage of {self.archive.getinfo(name).file_size} bytes")
                raw = self.archive.read(name)
            except KeyError:
                raise UnsafePickle(f"storage {key!r}, which the file lacks") from None
            dtype = np.dtype(np.uint16 if kind.dtype == "bf16" else kind.dtype)  # type: ignore[arg-type]
            if len(raw) != numel * dtype.itemsize:
                raise UnsafePickle(f"storage {key!r} of {numel} values in {len(raw)} bytes")
            self.storages[key] = _Storage(np.frombuffer(raw, dtype.newbyteorder("<")), kind.dtype == "bf16")
        return self.storages[key]


def load_torch_file(path: str | os.PathLike) -> object:
    """The object a `.pt` file holds, its tensors as numpy arrays; CheckpointError (one sentence) if the file is
    not a torch zip or its pickle asks for anything but tensors (then nothing it names is run or built)."""
    path = Path(path)
    where = f"{path}: "
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(pickles) != 1:
                raise CheckpointError(where + "not a PyTorch file saved by torch.save (no data.pkl inside the zip)")
            prefix = pickles[0].split("/")[0]
            order = (
                archive.read(f"{prefix}/byteorder").decode().strip()
                if f"{prefix}/byteorder" in archive.namelist()
                else "little"
            )
            if order != "little":
                raise CheckpointError(where + f"saved on a {order}-endian machine; only little-endian files are read")
            if archive.getinfo(pickles[0]).file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(where + "its pickle is too large to describe only tensors; refused")
            return _Unpickler(archive.read(pickles[0]), archive, prefix).load()
    except UnsafePickle as e:
        raise CheckpointError(
            where + f"refused: its pickle asks for {e}, and only plain tensors are read from .pt files "
            "(nothing in it was run). Use a voice preset released with PersonaPlex, or a WAV file."
        ) from None
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise CheckpointError(where + f"not a readable PyTorch file ({type(e).__name__}: {e})") from None
    except OSError as e:
        raise CheckpointError(where + f"cannot read it ({e.strerror or e})") from None
