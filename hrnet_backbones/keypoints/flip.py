"""Horizontal-flip helpers: test-time flip fusion (official ``flip_back`` + ``SHIFT_HEATMAP``) and flipping
annotated joints (official ``fliplr_joints``). Batched torch; NumPy in gives NumPy out."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ._common import ArrayLike, as_tensor, check_heatmaps, to_output

__all__ = ["aligned_flip_shift", "flip_back", "flip_permutation", "flip_test", "fliplr_joints"]

FlipPairs = Sequence[Sequence[int]] | ArrayLike


def flip_permutation(flip_pairs: FlipPairs, num_keypoints: int) -> list[int]:
    """Index list ``perm`` with ``flipped[..., k] = original[..., perm[k]]``: each pair swapped, others kept."""
    items = (
        flip_pairs.tolist() if isinstance(flip_pairs, (Tensor, np.ndarray)) else [list(p) for p in flip_pairs]
    )
    perm = list(range(num_keypoints))
    seen: set[int] = set()
    for pair in items:
        if len(pair) != 2:
            raise ValueError(f"flip_pairs must be pairs (a, b), got {pair!r}")
        a, b = (int(v) for v in pair)
        if not (0 <= a < num_keypoints and 0 <= b < num_keypoints):
            raise ValueError(f"flip pair {(a, b)} is out of range for {num_keypoints} keypoints")
        if a in seen or b in seen or a == b:
            raise ValueError(f"flip pair {(a, b)} repeats a keypoint; each keypoint may appear in one pair")
        seen.update((a, b))
        perm[a], perm[b] = b, a
    return perm


def aligned_flip_shift(input_width: int, heatmap_width: int) -> float:
    """The exact shift, in heatmap pixels, that aligns flipped-back heatmaps of an MSRA / DARK model.

    Those codecs put input pixel ``x`` at heatmap ``x / s`` (``s = input_width / heatmap_width``, pixel centres at
    integers on both grids). A mirrored crop puts it at input ``W - 1 - x``; flipping that heatmap back lands the
    point at ``x / s - (s - 1) / s``, so the result belongs ``(s - 1) / s`` pixels further right: 0.75 at stride
    4. The official ``SHIFT_HEATMAP`` moves it by a whole pixel, which leaves the flip-test average 0.125 heatmap
    pixels (half an input pixel at stride 4) right of where the model put the point. UDP models need no shift.
    """
    if input_width < 1 or heatmap_width < 1:
        raise ValueError(f"widths must be positive, got input {input_width} and heatmap {heatmap_width}")
    stride = input_width / heatmap_width
    return max(0.0, (stride - 1.0) / stride)


def flip_back(heatmaps: ArrayLike, flip_pairs: FlipPairs, shift: bool | float = True) -> ArrayLike:
    """Bring the heatmaps of a horizontally flipped image back to the original orientation.

    Reverses the width, swaps the channels of each left/right pair (official ``flip_back``) and moves the result
    ``shift`` pixels to the right. ``shift=True`` is one whole pixel (``out[..., 1:] = out[..., :-1]``, column 0
    kept): the official ``TEST.SHIFT_HEATMAP``, which approximately compensates the misalignment of the flipped
    features. A float in ``[0, 1]`` shifts by that fraction of a pixel, interpolating linearly between
    neighbouring columns: :func:`aligned_flip_shift` gives the exact value for MSRA / DARK models (0.75 at stride
    4). Use ``shift=False`` (or 0) for UDP models, whose flip is already aligned.

    Args:
        heatmaps: ``(N, K, H, W)`` model output for the flipped images.
        flip_pairs: ``(P, 2)`` keypoint index pairs, e.g. ``COCO_KEYPOINTS.flip_pairs``.
        shift: ``True`` (1 pixel), ``False`` (none) or a fraction of a pixel in ``[0, 1]``.

    Returns:
        ``(N, K, H, W)``, a new tensor.
    """
    hm, as_np = as_tensor(heatmaps, "heatmaps")
    check_heatmaps(hm)
    if isinstance(shift, bool):
        shift = 1.0 if shift else 0.0
    if not 0.0 <= shift <= 1.0:
        raise ValueError(f"shift must be True, False or a fraction of a pixel in [0, 1], got {shift}")
    perm = flip_permutation(flip_pairs, hm.shape[1])
    out = hm[:, perm].flip(-1)
    if shift and out.shape[-1] > 1:
        moved = torch.cat((out[..., :1], out[..., :-1]), dim=-1)
        out = moved if shift == 1.0 else torch.lerp(out, moved, shift)
    return to_output(out, as_np)


def flip_test(
    model: Callable[[Tensor], Tensor | Sequence[Tensor]],
    images: Tensor,
    flip_pairs: FlipPairs,
    shift: bool | float = True,
) -> Tensor:
    """Test-time flip fusion: ``(model(x) + flip_back(model(flip(x)), shift=shift)) / 2``.

    ``images`` ``(N, C, H, W)`` and their mirror images go through ``model`` as one batch of ``2N``. If the model
    returns a list (several stages), the last element is used, as in the official ``validate``.
    """
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError("images must be a (N, C, H, W) tensor")
    n = images.shape[0]
    out = model(torch.cat((images, images.flip(-1)), dim=0))
    if isinstance(out, (list, tuple)):
        out = out[-1]
    if not isinstance(out, Tensor) or out.ndim != 4 or out.shape[0] != 2 * n:
        raise ValueError(f"model must return (2N, K, H, W) heatmaps for 2N = {2 * n} images")
    return (out[:n] + flip_back(out[n:], flip_pairs, shift=shift)) * 0.5


def fliplr_joints(
    joints: ArrayLike, joints_vis: ArrayLike, width: float, flip_pairs: FlipPairs
) -> tuple[ArrayLike, ArrayLike]:
    """Mirror annotated joints for flip augmentation (official ``fliplr_joints``, batched over leading dims).

    ``x' = width - x - 1`` (pixel-centre mirror), then each pair is swapped in both arrays; like the official
    code the returned joints are multiplied by ``joints_vis``, so invisible joints become 0.

    Args:
        joints: ``(..., K, D)`` with ``x`` in column 0 (``D`` = 2 or 3).
        joints_vis: ``(..., K, D)`` or ``(..., K)`` visibility.
        width: image width in pixels.

    Returns:
        ``(joints * joints_vis, joints_vis)``, new arrays.
    """
    j, as_np = as_tensor(joints, "joints")
    v, _ = as_tensor(joints_vis, "joints_vis")
    if j.ndim < 2 or j.shape[-1] < 2:
        raise ValueError(f"joints must have shape (..., K, D) with D >= 2, got {tuple(j.shape)}")
    if v.shape != j.shape and v.shape != j.shape[:-1]:
        raise ValueError(
            f"joints_vis must have shape {tuple(j.shape)} or {tuple(j.shape[:-1])}, got {tuple(v.shape)}"
        )
    perm = flip_permutation(flip_pairs, j.shape[-2])
    j = j.clone()
    j[..., 0] = width - j[..., 0] - 1
    j = j[..., perm, :]
    v = v[..., perm, :] if v.shape == j.shape else v[..., perm]
    vis = v if v.shape == j.shape else v[..., None]
    return to_output(j * vis.to(j.dtype), as_np), to_output(v, as_np)
