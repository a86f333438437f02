"""Reading a checkpoint file without running code, and unwrapping its container down to the state dict.

Checkpoints are pickles, and a pickle can call any function while it is read. Files are therefore read with
``torch.load(weights_only=True)``, whose unpickler builds only tensors and plain containers; the one extension is
the NumPy arrays that mmpose stores in ``meta["dataset_meta"]`` (keypoint sigmas, colours), for which exactly the
NumPy reconstruction functions and numeric dtypes are allow-listed (see :data:`NUMPY_SAFE_GLOBALS`). Anything else
is refused before it is called. ``.safetensors`` files are read with ``safetensors`` (no pickle at all).
"""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import re
import warnings
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import CheckpointError, UnsafeCheckpointError

__all__ = [
    "NUMPY_SAFE_GLOBALS",
    "Checkpoint",
    "read_checkpoint",
    "sha256_file",
    "storages_fit_records",
    "unwrap_state_dict",
    "verify_zip",
]

#: Files at least this large get a progress bar while they are hashed (smaller ones take well under a second).
PROGRESS_MIN_BYTES = 512 * 2**20

_NUMERIC_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)


def _numpy_safe_globals() -> list[Any]:
    """The NumPy globals an array pickle needs, and nothing that can run other code.

    ``_reconstruct`` + ``ndarray.__setstate__`` rebuild an array from its bytes, ``dtype`` (and, in NumPy 2, the
    concrete numeric dtype classes such as ``numpy.dtypes.Float32DType``) describe its element type. Files pickled
    by NumPy 1.x name the function ``numpy.core.multiarray._reconstruct``; it is registered under both names.
    Object arrays (``ObjectDType``) are not allowed.
    """
    from numpy._core.multiarray import _reconstruct

    allowed: list[Any] = [
        _reconstruct,
        (_reconstruct, "numpy.core.multiarray._reconstruct"),
        np.ndarray,
        np.dtype,
    ]
    allowed += [type(np.dtype(name)) for name in _NUMERIC_DTYPES]
    return allowed


#: What :func:`read_checkpoint` allows beyond ``torch.load(weights_only=True)``'s own list.
NUMPY_SAFE_GLOBALS = _numpy_safe_globals()


@dataclass
class Checkpoint:
    """A checkpoint file read into memory.

    ``state_dict`` maps the file's own key names to tensors (containers unwrapped, a DataParallel ``module.``
    prefix removed); ``meta`` is the file's ``meta`` dict when it has one (mmcv/mmengine files), and ``container``
    says how the state dict was found, e.g. ``["state_dict"]`` or ``["module. prefix"]``.
    """

    path: Path
    sha256: str
    size: int
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    container: list[str] = field(default_factory=list)


def sha256_file(path: Path, progress: bool | None = None) -> str:
    """Hex SHA-256 of a file, read in 4 MiB chunks (a progress bar on a terminal for very large files)."""
    size = path.stat().st_size
    show = size >= PROGRESS_MIN_BYTES if progress is None else progress
    digest = hashlib.sha256()
    bar = None
    if show:
        from tqdm.auto import tqdm

        bar = tqdm(
            total=size, unit="B", unit_scale=True, desc=f"hashing {path.name}", disable=None, leave=False
        )
    with path.open("rb") as f:
        while chunk := f.read(4 * 2**20):
            digest.update(chunk)
            if bar is not None:
                bar.update(len(chunk))
    if bar is not None:
        bar.close()
    return digest.hexdigest()


def _check_file(path: Path) -> None:
    if not path.exists():
        if path.is_symlink():
            try:
                os.stat(path)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise CheckpointError(
                        f"{path} is a loop of symbolic links that never reaches a file; point it at the checkpoint"
                    ) from None
            raise CheckpointError(
                f"{path} is a symbolic link to a missing file ({os.readlink(path)}); point it at the checkpoint"
            )
        raise FileNotFoundError(f"checkpoint not found: {path}; check the path")
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a directory; expected a checkpoint file (.pth, .pt, .pth.tar, .bin or .safetensors)"
        )
    if not path.is_file():
        raise CheckpointError(
            f"{path} is not a regular file (a device, pipe or socket); give a checkpoint file"
        )
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes); the download or copy was probably interrupted")


def _is_safetensors(path: Path) -> bool:
    """A safetensors file starts with an 8-byte little-endian header length and then a JSON object."""
    with path.open("rb") as f:
        head = f.read(9)
    if len(head) < 9 or head[8:9] != b"{":
        return False
    return 2 <= int.from_bytes(head[:8], "little") <= path.stat().st_size - 8


_MAGIC = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\x1f\x8b", "gzip-compressed; decompress it first"),
    (b"7z\xbc\xaf", "a 7-Zip archive; extract it first"),
    (b"Rar!", "a RAR archive; extract it first"),
    (b"%PDF", "a PDF document"),
    (b"\x93NUMPY", "a NumPy .npy array"),
    (b"\x89HDF", "an HDF5 file (Keras/TensorFlow?)"),
    (b"<", "HTML or XML text (a web page saved instead of the file?)"),
    (b"{", "JSON text"),
    (b"version https://git-lfs", "a Git LFS pointer, not the file; run `git lfs pull`"),
)


def _sniff(path: Path) -> str:
    """The file's format from its first bytes (``zip``, ``pickle`` or ``safetensors``), before anything is hashed.

    torch.save writes a zip archive (PyTorch >= 1.6) or a pickle stream (protocol 2, the legacy format); anything
    else is refused here, naming what the file looks like.
    """
    with path.open("rb") as f:
        head = f.read(32)
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if _is_safetensors(path):
        return "safetensors"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "pickle"
    what = next((desc for magic, desc in _MAGIC if head.startswith(magic)), None)
    if what is None and head.strip(b"\x00") == b"":
        what = "all zero bytes at its start (a preallocated or failed download?)"
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") >= 2:
        return "safetensors"  # a header length beyond the file: safetensors says so, as a damaged file
    what = what or f"unknown format, starts with {head[:8]!r}"
    raise CheckpointError(
        f"{path.name} is not a PyTorch checkpoint ({what}); expected a file written by torch.save (.pth, .pt, "
        ".pth.tar, .bin) or a .safetensors file"
    )


def _storages(obj: Any, depth: int = 0) -> list[torch.UntypedStorage]:
    """The storages of every tensor in a loaded checkpoint (containers searched a few levels deep)."""
    if isinstance(obj, torch.Tensor):
        return [obj.untyped_storage()] if obj.layout == torch.strided else []  # sparse tensors have none
    if depth > 6:
        return []
    values = obj.values() if isinstance(obj, Mapping) else obj if isinstance(obj, list | tuple) else ()
    return [s for v in values for s in _storages(v, depth + 1)]


_DATA_RECORD = re.compile(r"[^/]+/data/[^/]+")


def verify_zip(path: str | os.PathLike[str]) -> dict[int, tuple[str, int]]:
    """Refuse a damaged zip-format checkpoint: every record is read once and its CRC-32 checked.

    Memory-mapped loading (``torch.load(mmap=True)``) takes each tensor's bytes straight from the file at its
    record's offset and checks neither the zip's checksums nor that the record is as long as the tensor, so bytes
    changed in transit or a record cut short would load as other bytes, silently. A failed check raises
    :class:`CheckpointError`. Returns the tensor data records, ``{data offset: (name, size)}``, for
    :func:`storages_fit_records`, which checks the sizes once the file is loaded.
    """
    path = Path(path)
    records = {}
    try:
        with zipfile.ZipFile(path) as zf, path.open("rb") as f:
            bad = zf.testzip()
            for info in zf.infolist():
                if not _DATA_RECORD.fullmatch(info.filename) or not info.file_size:
                    continue
                f.seek(
                    info.header_offset
                )  # the data starts after the local header, whose extra field may differ
                local = f.read(30)
                if len(local) < 30 or not local.startswith(b"PK\x03\x04"):
                    raise zipfile.BadZipFile(f"bad local header for {info.filename}")
                start = info.header_offset + 30 + int.from_bytes(local[26:28], "little")
                records[start + int.from_bytes(local[28:30], "little")] = (info.filename, info.file_size)
    except (
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        zlib.error,
        NotImplementedError,
        RuntimeError,
    ) as e:
        # RuntimeError: a record marked encrypted; NotImplementedError: an unknown compression method
        raise CheckpointError(
            f"{path.name} is truncated or corrupt (its zip archive cannot be read: {_first_line(e)}); download or "
            "copy it again"
        ) from None
    if bad is not None:
        raise CheckpointError(
            f"{path.name} is corrupt: its record {bad} fails the zip's CRC-32 check (bytes changed after it was "
            "written); download or copy it again"
        )
    return records


def storages_fit_records(obj: Any, records: dict[int, tuple[str, int]]) -> bool:
    """Whether each memory-mapped storage in ``obj`` is exactly one of the file's data records (:func:`verify_zip`).

    torch maps every storage at ``base + offset`` of the record it names (``base``: where the file is mapped), so
    sorted by address and by offset the two lists must pair up with one constant difference, each storage as long
    as its record. False when they do not, or when some record is used by no tensor.
    """
    storages = {s.data_ptr(): s.nbytes() for s in _storages(obj) if s.nbytes()}
    if len(storages) != len(records):
        return False
    pairs = zip(sorted(storages.items()), sorted(records.items()), strict=True)
    base = None
    for (ptr, nbytes), (offset, (_, size)) in pairs:
        base = ptr - offset if base is None else base
        if ptr - offset != base or nbytes != size:
            return False
    return True


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)|got <class '([\w.]+)'>|function ([\w.<>]+)")


def _explain_unpickling_error(path: Path, err: Exception) -> CheckpointError:
    text = str(err)
    unsafe = ("GLOBAL", "Can only build", "Can only create new object", "unrecognized function")
    if any(u in text for u in unsafe):
        m = _GLOBAL_RE.search(text)
        what = (
            next((g for g in m.groups() if g), "an object that is not a tensor") if m else "an unknown object"
        )
        return UnsafeCheckpointError(
            f"refused to unpickle {path.name}: it needs {what}, which is neither a tensor nor plain data and could "
            "run code when loaded (nothing was run); a checkpoint must hold only tensors, numbers, strings, lists "
            "and dicts; re-save just the state_dict from a trusted environment"
        )
    if m := re.search(r"Unsupported operand (\d+)", text):
        return CheckpointError(
            f"{path.name} is not a PyTorch checkpoint that can be read safely (unsupported pickle opcode "
            f"{m.group(1)}); if it was written with plain pickle, re-save the state dict with torch.save"
        )
    if "invalid load key" in text or "Invalid magic number" in text or "could not find MARK" in text:
        return CheckpointError(
            f"{path.name} is not a PyTorch checkpoint (unreadable pickle: {_first_line(err)})"
        )
    return CheckpointError(f"could not read {path.name} as a PyTorch checkpoint: {_first_line(err)}")


def _torch_load(path: Path, map_location: str = "cpu", mmap: bool = False) -> Any:
    try:
        with torch.serialization.safe_globals(NUMPY_SAFE_GLOBALS), warnings.catch_warnings():
            # torch warns about what it is reading (a plain pickle before it fails, sparse tensors it validates);
            # what matters is reported by the converter itself, as one line
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as e:
        raise _explain_unpickling_error(path, e) from None
    except EOFError:
        raise CheckpointError(
            f"{path.name} is truncated (the data ends early); download or copy it again"
        ) from None
    except RuntimeError as e:
        text = str(e)
        if "PytorchStreamReader" in text or "zip archive" in text or "central directory" in text:
            raise CheckpointError(
                f"{path.name} is truncated or corrupt (its zip archive cannot be read); download or copy it again"
            ) from None
        if "record size" in text:
            raise CheckpointError(
                f"{path.name} is corrupt: a tensor record's size does not match its tensor ({_first_line(e)}); "
                "download or copy it again"
            ) from None
        if "unexpected EOF" in text:
            raise CheckpointError(
                f"{path.name} is truncated (the data ends early); download or copy it again"
            ) from None
        if "magic number" in text.lower():
            raise CheckpointError(f"{path.name} is not a PyTorch checkpoint (no torch.save header)") from None
        raise CheckpointError(
            f"could not read {path.name} as a PyTorch checkpoint: {_first_line(e)}"
        ) from None
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as e:
        # a damaged pickle stream can fail in many ways inside the unpickler
        raise CheckpointError(
            f"{path.name} is corrupt or not a PyTorch checkpoint ({type(e).__name__}: {_first_line(e)})"
        ) from None


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not a mapping)
        return tensors, meta
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(
            f"{path.name} is a damaged safetensors file ({e}); download or copy it again"
        ) from None


def unwrap_state_dict(
    obj: Any, name: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], dict[str, Any], list[str]]:
    """Find the state dict inside a loaded checkpoint.

    Accepts a bare state dict, or one nested under ``state_dict`` (mmcv/mmengine, the segmentation repo's
    ``FullModel`` saves) or ``model`` (generic training scripts); a leading ``module.`` (DataParallel) is removed
    from every key that has it, as mmcv's loader does. Returns ``(state_dict, meta, container)``.
    """
    container: list[str] = []
    meta: dict[str, Any] = {}
    for _ in range(3):  # at most a few levels: {"state_dict": {"model": ...}} and the like
        if not isinstance(obj, Mapping):
            break
        if isinstance(obj.get("meta"), Mapping) and not meta:
            meta = dict(obj["meta"])
        inner = next((k for k in ("state_dict", "model") if isinstance(obj.get(k), Mapping)), None)
        if inner is None or any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        container.append(inner)
        obj = obj[inner]
    if not isinstance(obj, Mapping):
        raise CheckpointError(
            f"{name} holds a {type(obj).__name__}, not a state dict (a mapping of parameter names to tensors); "
            "save model.state_dict() rather than the model or a single tensor"
        )
    if not obj:
        raise CheckpointError(f"{name} holds an empty state dict (no tensors)")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        shown = ", ".join(map(repr, not_tensors[:4])) + (" ..." if len(not_tensors) > 4 else "")
        raise CheckpointError(
            f"{name} is not a state dict: {len(not_tensors)} of its {len(obj)} entries are not tensors ({shown}); "
            "expected parameter names mapped to tensors, optionally under 'state_dict' or 'model'"
        )
    not_dense = [k for k, v in obj.items() if v.layout != torch.strided or v.is_quantized]
    if not_dense:
        raise CheckpointError(
            f"{name}: {not_dense[0]!r} is a {str(obj[not_dense[0]].layout).removeprefix('torch.')}"
            f"{' quantised' if obj[not_dense[0]].is_quantized else ''} tensor; HRNet weights are dense floating-point "
            "tensors: convert the original checkpoint (or save it with .to_dense() / .dequantize())"
        )
    state_dict = {str(k): v for k, v in obj.items()}
    if any(k.startswith("module.") for k in state_dict):
        container.append("module. prefix")
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict, meta, container


def read_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read ``path`` (a ``torch.save`` file of either format, or ``.safetensors``) without running code.

    Raises ``FileNotFoundError`` or :class:`CheckpointError` (:class:`UnsafeCheckpointError` for a pickle that would
    call something outside the allow-list) with a one-line explanation.
    """
    path = Path(path)
    _check_file(path)
    size = path.stat().st_size
    kind = _sniff(path)  # before hashing: a file of another kind is refused at once, however large
    digest = sha256_file(path)
    meta_hint: dict[str, Any] = {}
    if kind == "safetensors":
        state_dict, file_meta = _load_safetensors(path)
        obj: Any = state_dict
        meta_hint = {"safetensors_metadata": file_meta} if file_meta else {}
    elif kind == "zip":
        # memory-mapped: tensors are paged in as they are read rather than copied up front. That path checks
        # neither checksums nor record sizes, so the checksums are verified first and the sizes after; a file
        # whose tensors are not exactly its records is loaded again without mmap, where torch checks each size.
        records = verify_zip(path)
        obj = _torch_load(path, mmap=True)
        if not storages_fit_records(obj, records):
            obj = _torch_load(path)
    else:
        obj = _torch_load(path)
    state_dict, meta, container = unwrap_state_dict(obj, path.name)
    return Checkpoint(path, digest, size, state_dict, {**meta_hint, **meta}, container)
