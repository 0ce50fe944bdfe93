"""Files crossrt writes and reads: atomic writes, the disk's errors said in one line, and the
paths a command may write to.

Every file crossrt writes goes through :func:`write_atomic` (a temporary file beside it, then
a rename): never half-written. The OS errors a user can fix (disk full, not writable, a name
too long) become one-line UsageErrors naming the path. Light imports only.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from core.errors import UsageError


def write_atomic(path: str | Path, data: bytes | memoryview | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written."""
    path = Path(path)
    payload = data.encode() if isinstance(data, str) else data
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; results are not
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def input_file(path: str | Path, what: str, fix: str) -> Path:
    """``path`` as an existing file, else a UsageError saying it is missing or a folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a file; {fix}")
    if not path.is_file():
        raise UsageError(f"{what} {path} does not exist; {fix}")
    return path


def output_path(path: str | Path | None, what: str, *, folder: bool = False) -> None:
    """Check before any work that ``path`` (a file, or a folder with ``folder``) can be
    written: not an existing folder (or file), not below a file."""
    if path is None:
        return
    path = Path(path)
    if folder and path.exists() and not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; name a folder")
    if not folder and path.is_dir():
        raise UsageError(f"{what} {path} is a folder; name a file to write")
    parent = path.parent if not folder else path
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: {parent} is a file, not a folder")
    if not os.access(parent, os.W_OK):
        raise UsageError(f"cannot write {what} {path}: {parent} is not writable")


def write_json(path: str | Path, obj: Any) -> Path:
    return write_atomic(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


class disk_errors:
    """Turn the OS errors a user can fix (disk full, not writable) into one-line UsageErrors."""

    def __init__(self, path: str | Path):
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, OSError):
            return
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UsageError(f"disk full while writing {self.path}; free some space and run "
                             "again (nothing was left half-written)") from exc
        if exc.errno in (errno.EACCES, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EPERM):
            raise UsageError(f"cannot write to {self.path}: {exc.strerror}; choose a writable "
                             "folder (e.g. --out)") from exc
