"""Atomic file writes with ordinary permissions.

Every file the package writes goes through here: the bytes land in a temporary sibling, which replaces the
destination with ``os.replace`` only once complete, so a reader (or a crash) never sees a half-written file.
The temporary file is created the way ``open(path, "x")`` would be, so the result carries the umask's
permissions (``-rw-r--r--`` under umask 022), not ``mkstemp``'s private ``0600``. A whole folder is written the
same way (:func:`atomic_folder`): filled in a temporary sibling and renamed into place when complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_folder", "atomic_path", "atomic_write_bytes", "atomic_write_text", "refuse_existing"]


def refuse_existing(paths: Iterable[str | os.PathLike], force: bool, flag: str = "--force") -> None:
    """Raise ``FileExistsError`` naming every path that exists, unless ``force``. Call it before the work."""
    if force:
        return
    existing = [str(p) for p in paths if os.path.lexists(p)]
    if existing:
        verb = "exists" if len(existing) == 1 else "exist"
        raise FileExistsError(f"{', '.join(existing)} already {verb}; pass {flag} to overwrite")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces ``path``, on error it is removed.

    The parent folder is created if missing. The temporary name is unique per process and call, so concurrent
    writers never share one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically, with the umask's permissions. Returns the path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically, with the umask's permissions. Returns the path."""
    return atomic_write_bytes(path, text.encode(encoding))


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:12]}.{tag}")


@contextmanager
def atomic_folder(path: str | os.PathLike, force: bool = False, flag: str = "--force") -> Iterator[Path]:
    """Yield a new empty temporary sibling folder to fill; on success it becomes ``path``, on error it is removed.

    ``path`` may be missing or an empty folder; a non-empty folder is replaced only with ``force`` (the old one
    is removed once the new one is in place, and put back if the rename fails); a file is never replaced.
    The check runs before the work and again before the rename. Folders get the umask's permissions.
    """
    path = Path(path)

    def check() -> None:
        if path.exists() and not path.is_dir():
            raise FileExistsError(f"{path} exists and is not a folder; choose another output folder")
        if path.is_dir() and any(path.iterdir()) and not force:
            raise FileExistsError(f"{path} already exists and is not empty; pass {flag} to replace it")

    check()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
        check()
        if not path.exists():
            os.replace(tmp, path)
            return
        old = _sibling(path, "old")
        os.replace(path, old)
        try:
            os.replace(tmp, path)
        except BaseException:
            os.replace(old, path)  # put the previous folder back
            raise
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
