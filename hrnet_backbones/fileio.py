"""Atomic file and folder writes with ordinary permissions.

Every file the package writes goes through here: the bytes land in a temporary sibling, which replaces the
destination with ``os.replace`` only once complete, so a reader (or a crash) never sees a half-written file.
The temporary file is created the way ``open(path, "x")`` would be, so the result carries the umask's
permissions (``-rw-r--r--`` under umask 022), not ``mkstemp``'s private ``0600``. A folder is assembled the same
way (:func:`atomic_folder`): a temporary sibling made with ``os.mkdir`` (``drwxr-xr-x``, not ``mkdtemp``'s
``0700``) whose files are given the umask's permissions before it is renamed into place.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "atomic_folder",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_output_folder",
    "only_these_entries",
    "ordinary_mode",
    "refuse_existing",
]


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


def _umask() -> int:
    # os.umask can only be read by setting it; /proc gives it without that (brief) change where it exists
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def ordinary_mode(is_dir: bool = False) -> int:
    """The permission bits a new file (``0o666``) or folder (``0o777``) gets under the current umask."""
    return (0o777 if is_dir else 0o666) & ~_umask()


def _temporary_sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{uuid.uuid4().hex[:12]}")


@contextmanager
def atomic_folder(path: str | os.PathLike, replace: bool = False) -> Iterator[Path]:
    """Yield a new temporary sibling folder to fill; on success it becomes ``path``, on error it is removed.

    The folder and every plain file in it end with the umask's permissions, whatever the code that wrote them
    used (``safetensors`` writes ``0600``). An existing ``path`` is replaced only with ``replace=True``: it is
    moved aside, the new folder renamed into place, then the old one removed (put back if the rename fails).
    Deciding whether ``path`` may be replaced at all is the caller's job. The parent folder must exist.
    """
    path = Path(path)
    tmp = _temporary_sibling(path, "tmp")
    os.mkdir(tmp)  # mode 0o777 & ~umask, unlike mkdtemp's 0o700
    try:
        yield tmp
        file_mode = ordinary_mode()
        for entry in os.scandir(tmp):
            if entry.is_file(follow_symlinks=False):
                os.chmod(entry.path, file_mode)
        _rename_into_place(tmp, path, replace)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _rename_into_place(tmp: Path, path: Path, replace: bool) -> None:
    if not os.path.lexists(path) or (path.is_dir() and not path.is_symlink() and not any(path.iterdir())):
        os.replace(tmp, path)  # rename(2) replaces an empty folder: nothing is lost
        return
    if not replace:
        raise FileExistsError(f"{path} already exists; pass --force to replace it")
    old = _temporary_sibling(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)  # put the previous folder back
        raise
    if old.is_dir() and not old.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
    else:
        old.unlink(missing_ok=True)


def make_parent_folders(path: str | os.PathLike, flag: str = "--out") -> None:
    """Create the folders above ``path`` that are missing, or fail with one line that names ``path`` (not the
    temporary sibling an atomic write would go on to fail on) and the option to change."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a read-only or pseudo file system, a file where a folder should be
        raise ValueError(
            f"cannot create the output folder {path}: {e.strerror}; choose another {flag}"
        ) from None


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_output_folder(
    folder: str | os.PathLike,
    force: bool,
    *,
    command: str,
    is_ours: Callable[[Path], tuple[bool, str]],
    inputs: Iterable[str | os.PathLike] = (),
    input_name: str = "input",
    flag: str = "--out",
) -> None:
    """Refuse early (before any work) an output folder that cannot or must not be written by ``command``.

    Never over a file, the current folder or one of its ancestors, or a folder that is or holds one of
    ``inputs``; an existing non-empty folder only with ``force``, and then only one that ``is_ours`` recognises
    as this command's own output (it returns ``(ours, why_not)``): ``--force`` must never cost a user data.
    An empty existing folder is written into as if it were missing.
    """
    if str(folder) in ("", "."):
        raise ValueError(
            f"{flag} {str(folder)!r} is the current folder, which {command} never replaces; name a new folder"
        )
    folder = Path(folder)
    target = Path(os.path.realpath(folder))
    if _within(Path(os.path.realpath(Path.cwd())), target):
        raise ValueError(
            f"{flag} {folder} is the current folder or one that contains it, which {command} never replaces; "
            "name a new folder"
        )
    for source in inputs:
        for src in (Path(os.path.abspath(source)), Path(os.path.realpath(source))):
            if _within(src, target) or _within(src, Path(os.path.abspath(folder))):
                raise ValueError(
                    f"{flag} {folder} is or holds the {input_name} {source}; write the output elsewhere"
                )
    if os.path.islink(folder) and not folder.exists():
        raise ValueError(
            f"{flag} {folder} is a symbolic link to a missing path ({os.readlink(folder)}); remove the link or "
            f"choose another {flag}"
        )
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a folder; choose another {flag}")
    if folder.is_dir() and any(folder.iterdir()):
        if not force:
            raise FileExistsError(
                f"{folder} already exists; pass --force to replace it, or choose another {flag}"
            )
        ours, why = is_ours(folder)
        if not ours:
            raise ValueError(
                f"--force replaces only a folder written by `hrnet-backbones {command}`, and {folder} is not "
                f"one: {why}; choose another {flag} (nothing was changed)"
            )
    ancestor = folder.absolute().parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(
            f"cannot create the output folder {folder}: {ancestor} is a file; choose another {flag}"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(
            f"cannot create the output folder {folder}: {ancestor} is not writable; choose another {flag}"
        )


def only_these_entries(folder: Path, names: Iterable[str], what: str) -> tuple[bool, str]:
    """An ``is_ours`` helper: ``folder`` holds nothing but entries named ``names``; if not, why not."""
    allowed = set(names)
    others = sorted(name for name in os.listdir(folder) if name not in allowed)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        return False, f"it holds entries {what} does not write ({shown})"
    return True, ""
