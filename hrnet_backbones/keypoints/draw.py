"""Drawing keypoints, skeletons and facial landmarks over an image with Pillow."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from ..fileio import atomic_path
from ._common import ArrayLike
from .datasets import KeypointLayout, get_layout

__all__ = ["draw_keypoints", "save_overlay"]

Color = tuple[int, int, int]
_PALETTE: tuple[Color, ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
)


def _to_pil(image: Image.Image | ArrayLike) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
        arr = np.moveaxis(arr, 0, -1)  # CHW tensor layout
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] != 3):
        raise ValueError(f"image must be (H, W), (H, W, 3) or (3, H, W), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        arr = np.asarray(arr, dtype=np.float64)
        if arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        arr = np.clip(np.nan_to_num(arr), 0, 255).round().astype(np.uint8)
    return Image.fromarray(arr).convert("RGB")


def _instances(keypoints: ArrayLike, scores: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    kp = keypoints.detach().cpu().numpy() if isinstance(keypoints, torch.Tensor) else np.asarray(keypoints)
    kp = np.asarray(kp, dtype=np.float64)
    if kp.ndim == 2:
        kp = kp[None]
    if kp.ndim != 3 or kp.shape[-1] < 2:
        raise ValueError(f"keypoints must be (K, 2) or (N, K, 2), got shape {kp.shape}")
    if scores is None:
        sc = np.ones(kp.shape[:2])
    else:
        sc = scores.detach().cpu().numpy() if isinstance(scores, torch.Tensor) else np.asarray(scores)
        if sc.size != kp.shape[0] * kp.shape[1]:
            raise ValueError(f"scores must have one value per keypoint, shape {kp.shape[:2]}, got {sc.shape}")
        sc = np.asarray(sc, dtype=np.float64).reshape(kp.shape[:2])
    return kp[..., :2], sc


def draw_keypoints(
    image: Image.Image | ArrayLike,
    keypoints: ArrayLike,
    scores: ArrayLike | None = None,
    skeleton: Sequence[Sequence[int]] | str | KeypointLayout | None = None,
    threshold: float = 0.3,
    radius: int = 3,
    line_width: int = 2,
    colors: Sequence[Color] | None = None,
) -> Image.Image:
    """Draw keypoints (and limbs) over a copy of ``image``.

    Args:
        image: a PIL image, or an array / tensor ``(H, W)``, ``(H, W, 3)`` or ``(3, H, W)`` (uint8, or floats in
            [0, 1] or [0, 255]).
        keypoints: ``(K, 2)`` or ``(N, K, 2)`` ``(x, y)`` in image pixels.
        scores: ``(K,)`` / ``(N, K)``; keypoints scoring ``<= threshold`` (and non-finite ones) are not drawn,
            nor are limbs touching them.
        skeleton: limb index pairs, or a layout (name or :class:`KeypointLayout`) whose skeleton to use; face
            layouts have none, so landmarks are drawn as dots.
        threshold: score threshold.
        radius: dot radius in pixels; line_width: limb width.
        colors: per-instance colours (a default palette otherwise).

    Returns:
        A new RGB PIL image.
    """
    canvas = _to_pil(image).copy()
    kp, sc = _instances(keypoints, scores)
    if isinstance(skeleton, (str, KeypointLayout)):
        skeleton = get_layout(skeleton).skeleton
    limbs = [tuple(int(i) for i in pair) for pair in (skeleton or ())]
    k = kp.shape[1]
    if any(not (0 <= a < k and 0 <= b < k) for a, b in limbs):
        raise ValueError(f"skeleton refers to keypoints outside 0..{k - 1}")
    palette = tuple(colors) if colors else _PALETTE
    draw = ImageDraw.Draw(canvas)
    for n in range(kp.shape[0]):
        color = tuple(int(c) for c in palette[n % len(palette)])
        shown = (sc[n] > threshold) & np.isfinite(kp[n]).all(-1)
        for a, b in limbs:
            if shown[a] and shown[b]:
                draw.line([tuple(kp[n, a]), tuple(kp[n, b])], fill=color, width=line_width)
        for j in np.flatnonzero(shown):
            x, y = kp[n, j]
            draw.ellipse(
                [x - radius, y - radius, x + radius, y + radius], fill=color, outline=(255, 255, 255)
            )
    return canvas


def save_overlay(
    path: str | os.PathLike, image: Image.Image | ArrayLike, keypoints: ArrayLike, **kwargs
) -> Path:
    """:func:`draw_keypoints` and write the result as PNG, atomically (a temporary file in the same folder,
    then ``os.replace``), so a reader never sees a half-written file. Returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"save_overlay writes PNG; give a .png path, got {str(path)!r}")
    canvas = draw_keypoints(image, keypoints, **kwargs)
    with atomic_path(path) as tmp, open(tmp, "xb") as fh:
        canvas.save(fh, format="PNG")
    return path
