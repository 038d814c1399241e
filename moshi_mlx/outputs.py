"""Files the CLI writes: checked before any work, written under a temporary name, renamed when complete.

A person's input is never overwritten (whatever spelling or link names it), a folder or a path under a
file is refused before minutes of compute, and a run that fails leaves no half-written file behind.
An output named through a link is written where the link points (the link stays); a pipe, terminal or
device is refused, as the rename would replace it, except the null device, which is written directly.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from .errors import OutputError

# what a failed write's errno means for a person, and what to do about it there
# (looked up by OSError.errno, which may be None)
_MEANING: dict[int | None, tuple[str, str]] = {
    errno.ENOSPC: ("the disk is full", "free some space"),
    errno.EDQUOT: ("the disk quota is used up", "free some space"),
    errno.EFBIG: ("the file is too large for that file system", ""),
    errno.EROFS: ("it is on a read-only file system", ""),
    errno.EACCES: ("no permission to write there", ""),
    errno.EPERM: ("no permission to write there", ""),
}


def write_failure(e: OSError, instead: str = "") -> str:
    """Why a write failed, for a person: the system's words, then what they mean for a full, read-only or
    forbidden disk and what to do, `instead` being the other way out: "No space left on device (the disk
    is full: free some space or choose another --out)"."""
    meaning, action = _MEANING.get(e.errno, ("", ""))
    if e.errno == errno.EFBIG and (limit := file_size_limit()) is not None:  # not the file system's doing
        meaning, action = (
            f"it reached the limit on file size set for this program ({limit} bytes, `ulimit -f`)",
            "raise it",
        )
    todo = " or ".join(filter(None, (action, instead)))
    advice = ": ".join(filter(None, (meaning, todo)))
    return f"{e.strerror or e}" + (f" ({advice})" if advice else "")


def file_size_limit() -> int | None:
    """This process's limit on the size of a file it writes, in bytes (`ulimit -f`); None where there is none."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


NAME_MAX = 255  # bytes in one file or folder name: ext4, btrfs, tmpfs, APFS (NTFS: 255 characters)


def too_long(path: str | os.PathLike) -> str | None:
    """Why `path` has a part longer than a file system takes (every look at it raises an OSError); None if not."""
    part = next((p for p in Path(path).parts if len(os.fsencode(p)) > NAME_MAX), None)
    if part is None:
        return None
    return f"a name too long for the file system ({len(os.fsencode(part))} bytes, at most {NAME_MAX}: {part[:40]}...)"


def names_folder(path: str) -> bool:
    """Does the name end in a separator (`answers/`), a folder however it is spelled (Path drops the slash)?"""
    return path.endswith(("/", os.sep))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Do two spellings name one file (`./x`, `d/../x`, a symlink, a hard link)? Either may not exist yet."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist yet
        pass
    return os.path.realpath(a) == os.path.realpath(b)  # Path.resolve raises on a link to itself, realpath not


def temp_name(path: Path) -> Path:
    """Where `path` is written until it is complete: the same folder (so the rename is atomic)."""
    return path.with_name(f"{path.name}.{os.getpid()}.part")


def is_null_device(path: str | os.PathLike) -> bool:
    """Is `path` (after links) the null device, /dev/null or a node of the same device?"""
    try:
        st, null = os.stat(path), os.stat(os.devnull)
    except OSError:
        return False
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == null.st_rdev


class Staged:
    """An output file written under a temporary name next to its target (`tmp`), put in place by `commit()`
    or removed by `discard()`. A link is followed: the file it points to is replaced, the link stays. The null
    device is written directly (nothing to rename or remove)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(os.path.realpath(path)) if Path(path).is_symlink() else Path(path)
        self.tmp = self.path if is_null_device(self.path) else temp_name(self.path)

    def commit(self) -> None:
        if self.tmp != self.path:
            self.tmp.replace(self.path)

    def discard(self) -> None:
        if self.tmp != self.path:
            self.tmp.unlink(missing_ok=True)


def _existing_folder(path: Path, what: str) -> Path:
    """The nearest folder above `path` that exists (it will hold the file); refuses files in the way."""
    parent = path.parent
    while not parent.exists():
        if parent.is_symlink():  # a dangling link: mkdir would fail later
            raise OutputError(f"cannot write {what} {path}: {parent} is a broken link")
        parent = parent.parent
    if not parent.is_dir():
        raise OutputError(f"cannot write {what} {path}: {parent} is a file, not a folder. Pick another path.")
    return parent


def check_new_file(
    path: str | os.PathLike,
    what: str,
    protect: dict[str, str | os.PathLike],
    probe: Callable[[Path], None] | None = None,
) -> Path:
    """Checks that `path` can be written as the `what` output, before any work.

    Args:
        protect: files this one must not be ({"--input": path, ...}), named in the error.
        probe: writes a file of the right kind at the given path (default: an empty file), to find a
            read-only disk or a format the machine cannot write; called in the nearest existing folder.

    Raises:
        OutputError: with what is wrong and what to do.
    """
    if str(path) == "-":
        raise OutputError(f"{what} -: writing to standard output is not supported; name a file")
    if (why := too_long(path)) is not None:
        raise OutputError(f"cannot write {what} {str(path)[:60]}...: {why}: shorten it")
    said, path = str(path), Path(path)
    for name, other in protect.items():
        if other is not None and same_file(path, other):
            raise OutputError(f"{what} {path} is the same file as {name} {other}: name another file")
    if path.is_dir() or names_folder(said):
        what_it_is = "is a folder" if path.is_dir() else "names a folder (it ends in a slash)"
        raise OutputError(f"{what} {said} {what_it_is}: name a file in it, e.g. {path / 'moshi.wav'}")
    if is_null_device(path):
        return path
    if path.is_symlink() and not path.exists():
        raise OutputError(f"{what} {path} is a broken link (to {os.readlink(path)}): remove it or name another file")
    if path.exists() and not path.is_file():
        raise OutputError(
            f"{what} {path} is not a regular file (a pipe, terminal or device), which would be "
            f"replaced: name a file ({os.devnull} discards)"
        )
    folder = _existing_folder(Path(os.path.realpath(path)) if path.is_symlink() else path, what)
    try:
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".moshi-probe-", suffix=path.suffix)
    except OSError as e:
        why = write_failure(e, "pick another folder")
        raise OutputError(f"cannot write {what} {path} (in {folder}): {why}") from None
    try:
        os.close(fd)
        if probe is not None:
            probe(Path(tmp))
    except OSError as e:
        raise OutputError(f"cannot write {what} {path}: {write_failure(e, 'pick another folder')}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` in one piece: the file appears only when complete, and never half-written."""
    out = Staged(path)
    out.path.parent.mkdir(parents=True, exist_ok=True)
    try:
        out.tmp.write_text(text, encoding="utf-8")
        out.commit()
    except BaseException:
        out.discard()
        raise
