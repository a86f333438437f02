"""Private helpers shared by the keypoint modules: NumPy/torch interop, argument checks, dtypes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Tensor | np.ndarray


def as_tensor(x: Any, name: str) -> tuple[Tensor, bool]:
    """Return ``(tensor, came_from_numpy)``. Tensors pass through untouched (same device, dtype)."""
    if isinstance(x, Tensor):
        return x, False
    if isinstance(x, np.ndarray):
        if not x.flags.writeable or not x.flags.c_contiguous:
            x = np.ascontiguousarray(x).copy()
        return torch.from_numpy(x), True
    if isinstance(x, (list, tuple, int, float)):
        return torch.as_tensor(np.asarray(x)), True
    raise TypeError(f"{name} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def to_output(x: Tensor, as_numpy: bool) -> ArrayLike:
    """Give results back in the caller's kind: NumPy in, NumPy out."""
    return x.detach().cpu().numpy() if as_numpy else x


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Float64 stays float64; everything else (half, bfloat16, float32, integers) is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def accurate_dtype(device: torch.device) -> torch.dtype:
    """The dtype for small per-keypoint arithmetic: float64, except on backends without it (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def check_heatmaps(heatmaps: Tensor, name: str = "heatmaps") -> None:
    if heatmaps.ndim != 4:
        raise ValueError(
            f"{name} must have shape (N, K, H, W), got {tuple(heatmaps.shape)}; "
            "add the batch dimension with heatmaps[None] for a single instance"
        )
    if heatmaps.shape[2] < 1 or heatmaps.shape[3] < 1:
        raise ValueError(f"{name} has an empty spatial size {tuple(heatmaps.shape[2:])}")
    if heatmaps.dtype == torch.bool or heatmaps.is_complex():
        raise ValueError(f"{name} must be real-valued, got dtype {heatmaps.dtype}")


def check_keypoints(keypoints: Tensor, name: str = "keypoints") -> None:
    if keypoints.ndim != 3 or keypoints.shape[-1] < 2:
        raise ValueError(
            f"{name} must have shape (N, K, 2) with (x, y) last (extra columns are ignored), "
            f"got {tuple(keypoints.shape)}"
        )


def check_same_nk(a: Tensor, b: Tensor, name_a: str, name_b: str) -> None:
    if tuple(a.shape[:2]) != tuple(b.shape[:2]):
        raise ValueError(
            f"{name_a} and {name_b} disagree on (N, K): {tuple(a.shape[:2])} vs {tuple(b.shape[:2])}"
        )


def size_pair(size: Sequence[int] | int, name: str) -> tuple[int, int]:
    """Validate a (w, h) size of positive integers."""
    if isinstance(size, (int, np.integer)):
        size = (int(size), int(size))
    try:
        w, h = (int(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (w, h) pair of positive integers, got {size!r}") from None
    if w != size[0] or h != size[1] or w < 1 or h < 1:
        raise ValueError(f"{name} must be a (w, h) pair of positive integers, got {tuple(size)!r}")
    return w, h
