"""Atomic file writes: a temp file in the same folder, fsync, then rename; OS errors in words."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from assistant import AssistantError

REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EFBIG: "the file is larger than this system allows",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EISDIR: "it is a folder",
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "part of the path is not a folder",
}


def os_error_reason(exc: OSError) -> str:
    """Why an OS call failed, in a few words ("the disk is full", "permission denied", ...)."""
    return REASONS.get(exc.errno or 0) or exc.strerror or str(exc)


@contextmanager
def atomic_writer(path: Path, *, parents: bool = True) -> Iterator[BinaryIO]:
    """Yield a binary file that replaces ``path`` only if the block finishes without error.

    A replaced file keeps its permission bits; ``parents=False`` creates no missing folder (the write fails).
    """
    path = Path(path)
    if parents:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        except FileNotFoundError:
            pass  # a new file: owner-only (mkstemp's 0600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as handle:
        handle.write(text.encode("utf-8"))


def write_user_file(path: Path, text: str, *, replace: bool = False) -> None:
    """Write a file the user named (e.g. an export): atomically, in an existing folder, one clear error line.

    An existing file is replaced only with ``replace`` (and keeps its mode); a failed write leaves no file.
    """
    path = Path(path)
    if path.is_dir():
        raise AssistantError(f"cannot write {path}: it is a folder; name a file")
    if not path.parent.is_dir():
        raise AssistantError(f"cannot write {path}: the folder {path.parent} does not exist")
    if (path.exists() or path.is_symlink()) and not replace:
        raise AssistantError(f"{path} already exists; add --force to replace it")
    try:
        with atomic_writer(path, parents=False) as handle:
            handle.write(text.encode("utf-8"))
    except OSError as exc:
        raise AssistantError(f"cannot write {path}: {os_error_reason(exc)}") from None
