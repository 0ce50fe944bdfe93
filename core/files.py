"""Files crossrt writes and reads: atomic writes, the disk's errors said in one line, and the
paths a command may write to.

Every file crossrt writes goes through :func:`write_atomic` (a temporary file beside it, then
a rename): never half-written. The OS errors a user can fix (disk full, not writable, a name
too long) become one-line UsageErrors naming the path. Light imports only.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from core.errors import UsageError
from core.log import log


def write_atomic(path: str | Path, data: bytes | memoryview | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written.
    Text is UTF-8; a file name in it that is not (a non-UTF-8 name on disk) keeps its bytes."""
    path = Path(path)
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    with disk_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path.name),
                                   suffix=TEMP_SUFFIX)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.chmod(tmp, 0o666 & ~umask())  # mkstemp makes it private; results are not
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


TEMP_SUFFIX = ".tmp"
_MKSTEMP_CHARACTERS = 8  # what tempfile puts between the prefix and the suffix


def temp_prefix(name: str) -> str:
    """``.NAME.``: the prefix of the temporary file that becomes ``NAME`` (shortened where
    the whole would pass the filesystem's limit)."""
    room = "0" * _MKSTEMP_CHARACTERS + TEMP_SUFFIX
    return derived_name(name, suffix=f".{room}", prefix=".")[:-len(room)]


def is_temp_of(entry: str, names: Iterable[str]) -> bool:
    """Whether ``entry`` is a temporary file (:func:`write_atomic`'s ``.NAME.XXXXXXXX.tmp``) or
    folder (``.NAME.XXXXXXXX``, where a graph is staged) that crossrt left for one of ``names``
    when it was killed mid-write."""
    for name in names:
        prefix = temp_prefix(name)
        rest = entry[len(prefix):] if entry.startswith(prefix) else ""
        random = rest.removesuffix(TEMP_SUFFIX)  # tempfile's characters: letters, digits, _
        if len(random) == _MKSTEMP_CHARACTERS and random.replace("_", "").isalnum():
            return True
    return False


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
    """Turn the OS errors a user can fix (disk full, not writable, a name too long, a folder
    where a file goes) into one-line UsageErrors naming the path the OS named."""

    def __init__(self, path: str | Path, fix: str = "choose a writable folder (e.g. --out)"):
        self.path, self.fix = Path(path), fix

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> None:
        if not isinstance(exc, OSError):
            return
        where = Path(os.fsdecode(exc.filename)) if exc.filename else self.path
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UsageError(f"disk full while writing {where}; free some space and run "
                             "again (nothing was left half-written)") from exc
        if exc.errno == errno.ENAMETOOLONG:
            raise UsageError(f"cannot write {where}: a name in it is too long for the "
                             "filesystem; choose a shorter name") from exc
        ours = self.path.resolve() in (where.resolve(), *where.resolve().parents) or \
            where.resolve() in (self.path.resolve(), *self.path.resolve().parents)
        if exc.errno in (errno.EACCES, errno.EROFS, errno.EPERM) or (
                exc.errno == errno.ENOENT and not ours):  # a library's cache folder
            fix = self.fix if ours else ("make it writable; libraries crossrt uses (Paddle) "
                                         "keep caches under HOME: set HOME to a writable folder")
            raise UsageError(f"cannot write to {where}: {exc.strerror}; {fix}") from exc
        if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            raise UsageError(f"cannot write to {where}: {exc.strerror}; {self.fix}") from exc


# -- names crossrt derives from a user's name -------------------------------------------------
NAME_MAX = 255  # bytes in one path component on the filesystems crossrt runs on


def derived_name(name: str, suffix: str = "", prefix: str = "") -> str:
    """``prefix + name + suffix`` for crossrt's own helper files (locks, staging folders,
    temporary files); past the filesystem's 255 bytes, the name's end is replaced by a hash of
    it, so that a legal name of the user's never makes a helper's name illegal."""
    full = f"{prefix}{name}{suffix}"
    if len(os.fsencode(full)) <= NAME_MAX:
        return full
    digest = hashlib.sha256(os.fsencode(name)).hexdigest()[:12]
    room = NAME_MAX - len(os.fsencode(f"{prefix}~{digest}{suffix}"))
    return f"{prefix}{os.fsdecode(os.fsencode(name)[:max(room, 0)])}~{digest}{suffix}"


def check_name_length(path: Path, what: str, *suffixes: str) -> None:
    """Refuse a name that is too long for the filesystem once crossrt adds ``suffixes`` to it
    (a sidecar's ``.json``, a journal's ``.partial``), before any work."""
    longest = max((len(os.fsencode(path.name + s)) for s in ("", *suffixes)), default=0)
    if longest > NAME_MAX:
        room = NAME_MAX - max((len(os.fsencode(s)) for s in suffixes), default=0)
        raise UsageError(f"{what} {path.name[:40]}... is too long a name: with "
                         f"{', '.join(suffixes) or 'nothing'} added it passes the filesystem's "
                         f"{NAME_MAX} bytes; give a name of at most {room} bytes")


# -- where a command may write ----------------------------------------------------------------
@dataclass(frozen=True)
class OutputKind:
    """A kind of file crossrt writes, and how to recognise one it wrote (so that a file of
    crossrt's own may be replaced, and anything else only with --force)."""

    name: str  # "engine plan", "validation report"
    recognise: Callable[[Path], bool]


@dataclass(frozen=True)
class Output:
    flag: str  # how the user named it: --saveEngine, --json
    path: Path
    kind: OutputKind


RECOGNISE_LIMIT = 64 << 20  # a file larger than this is not one of crossrt's reports


def json_document(path: Path) -> Any:
    """The JSON in ``path``, or None (unreadable, not JSON, larger than RECOGNISE_LIMIT)."""
    try:
        if path.stat().st_size > RECOGNISE_LIMIT:
            return None
        return json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None


def json_with_format(*formats: str) -> Callable[[Path], bool]:
    """A recogniser: a JSON object whose ``format`` is one of ``formats``."""
    def recognise(path: Path) -> bool:
        document = json_document(path)
        return isinstance(document, dict) and document.get("format") in formats
    return recognise


def first_line_starts(*prefixes: str) -> Callable[[Path], bool]:
    """A recogniser: a text file whose first line starts with one of ``prefixes``."""
    def recognise(path: Path) -> bool:
        try:
            with open(path, "rb") as handle:
                first = handle.readline(4096).decode("utf-8", "replace")
        except OSError:
            return False
        return first.startswith(prefixes)
    return recognise


def same_file(a: Path, b: Path) -> bool:
    """The same file by resolved path, or by inode where both exist (links)."""
    if a.resolve() == b.resolve():
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_outputs(outputs: Iterable[Output], inputs: Iterable[tuple[str, Path]], *,
                  force: bool = False) -> None:
    """Before any work: every output can be written, none is one of the inputs or another
    output, and an existing file is replaced only when crossrt wrote it as that kind of file
    (with ``force``, any file; never a folder)."""
    outputs, inputs = list(outputs), [(flag, Path(path)) for flag, path in inputs]
    for index, output in enumerate(outputs):
        check_name_length(output.path, output.flag)  # first: the OS refuses to stat such names
        output_path(output.path, output.flag)
        for flag, path in inputs:
            if same_file(output.path, path):
                raise UsageError(f"{output.flag} {output.path} is also the input {flag}: writing "
                                 f"it would destroy what it is made from; write to another file")
        for other in outputs[:index]:
            if same_file(output.path, other.path):
                raise UsageError(f"{output.flag} and {other.flag} are the same file "
                                 f"{output.path}; give each its own path")
        if output.path.exists() and not force and not output.kind.recognise(output.path):
            raise UsageError(f"{output.flag} {output.path} exists and is not a"
                             f"{'n' if output.kind.name[0] in 'aeiou' else ''} "
                             f"{output.kind.name} crossrt wrote; choose another path, or pass "
                             "--force to replace it")


# -- one writer per folder --------------------------------------------------------------------
@contextlib.contextmanager
def locked(folder: Path, what: str) -> Iterator[None]:
    """Serialise crossrt's writers of ``folder`` (an export, bench's results); a waiting one
    says who holds the lock.

    The lock file (``.NAME.lock`` beside the folder) holds its owner's pid, host and command,
    and is removed on release; a waiter that finds it removed or replaced takes the new one,
    so no two writers ever hold it at once.
    """
    lock_path = folder.parent / derived_name(folder.name, ".lock", prefix=".")
    with disk_errors(folder):
        folder.parent.mkdir(parents=True, exist_ok=True)
        handle = _acquire(lock_path, folder, what)
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since "
                     f"{time.strftime('%H:%M:%S')}: {' '.join(sys.argv)[:200]}\n")
        handle.flush()
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _acquire(lock_path: Path, folder: Path, what: str) -> IO[str]:
    told = False
    while True:
        handle = open(lock_path, "a+")  # noqa: SIM115 - held by the caller, closed there
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not told:
                handle.seek(0)
                holder = handle.read().strip() or "another process"
                log.info(f"waiting for {folder}: another {what} holds its lock ({holder})")
                told = True
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
            except BaseException:
                handle.close()
                raise
        try:
            same = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return handle
        handle.close()  # released and removed by its holder meanwhile: lock the new one


# -- the JSON files crossrt reads back --------------------------------------------------------
Schema = dict[str, Any]  # key -> type, tuple of types, or a nested Schema (an object)
JSON_LIMIT = 256 << 20  # manifests, sidecars, saved outputs: far below; a larger file is refused


def schema_problem(document: Any, schema: Schema, where: str = "") -> str | None:
    """What ``document`` lacks of ``schema`` (a missing key, a value of another type), in
    words, or None. Keys beyond the schema are allowed (newer writers add some)."""
    if not isinstance(document, dict):
        return f"{where or 'it'} is a JSON {type(document).__name__}, not an object"
    for key, kind in schema.items():
        name = f"{where}.{key}" if where else key
        if key not in document:
            return f"no {name!r}"
        if isinstance(kind, dict):
            if problem := schema_problem(document[key], kind, name):
                return problem
        elif not isinstance(document[key], kind) or (kind is int and
                                                      isinstance(document[key], bool)):
            return f"{name!r} is a {type(document[key]).__name__}"
    return None


def read_json(path: Path, what: str, fix: str, schema: Schema | None = None) -> Any:
    """A JSON file crossrt wrote, checked: missing, unreadable, too large, not JSON or not of
    ``schema`` is one UsageError naming ``what`` and the ``fix``."""
    try:
        if path.stat().st_size > JSON_LIMIT:
            raise UsageError(f"{what} {path} is {path.stat().st_size >> 20} MiB, more than "
                             f"crossrt ever writes ({JSON_LIMIT >> 20} MiB); {fix}")
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise UsageError(f"{what} {path} does not exist; {fix}") from None
    except IsADirectoryError:
        raise UsageError(f"{what} {path} is a folder, not a file; {fix}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}; {fix}") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UsageError(f"{what} {path} is corrupt (not JSON: {exc}); {fix}") from None
    if schema is not None and (problem := schema_problem(document, schema)):
        raise UsageError(f"{what} {path} is corrupt ({problem}); {fix}")
    return document
