"""Heatmap codecs: Gaussian targets (MSRA / DARK / UDP) and their decoders, batched and on any device.

Conventions (the same as the reference fixtures): coordinates are ``(x, y)`` with ``x`` the column; sizes are
``(w, h)``; heatmaps are ``(N, K, H, W)`` and pixel ``(row i, col j)`` sits at ``(x=j, y=i)`` (pixel-centre
convention), so a Gaussian "at mu" has the value ``exp(-((j-mu_x)^2 + (i-mu_y)^2) / (2 sigma^2))`` at that pixel.

* :class:`MSRAHeatmap` — the target of Xiao et al., *Simple Baselines* (2018) and HRNet (Sun et al., 2019):
  input space maps to heatmap space by ``x_hm = x_in / stride`` with ``stride = input_size / heatmap_size``.
  With ``unbiased=True`` it draws the sub-pixel Gaussian of DARK (Zhang et al., *Distribution-Aware Coordinate
  Representation*, 2020).
* :class:`UDPHeatmap` — Huang et al., *The Devil is in the Details: Unbiased Data Processing* (2020):
  ``x_hm = x_in * (W - 1) / (w - 1)``, sub-pixel Gaussian, Newton-step decoding.

Every codec pairs ``encode(keypoints (N, K, 2), visible (N, K)) -> (heatmaps (N, K, H, W), weights (N, K))``
with ``decode(heatmaps, refine=...) -> (keypoints (N, K, 2) in input space, scores (N, K))``. The low-level
steps are plain functions here (:func:`get_heatmap_maximum`, :func:`refine_quarter_offset`,
:func:`gaussian_blur`, :func:`refine_dark`, :func:`refine_dark_udp`, :func:`decode_heatmaps`) so that the codecs
and user code share one implementation of each step. Tensors stay on their device; NumPy arrays in give NumPy
arrays out. Half-precision heatmaps are upcast to float32 for decoding (float64 stays float64).

Where the official code and mmpose disagree, ``convention="official"`` (the default) follows the official
HRNet / DarkPose code — the converted official checkpoints were trained and evaluated with it — and
``convention="mmpose"`` reproduces mmpose 1.x:

====================================  ======================================  ====================================
point                                 ``"official"`` (default)                ``"mmpose"``
====================================  ======================================  ====================================
heatmap maximum ``<= 0``              coordinates ``(0, 0)``                  coordinates ``(-1, -1)``
quarter-offset border test            both axes or neither:                   per axis: x moves if ``1 < x < W-1
                                      ``1 < x < W-1 and 1 < y < H-1``         and 0 < y < H`` (y likewise)
DARK target in-bounds test            ``int()`` truncation (DarkPose)         float comparison
UDP decode, heatmap -> input          ``x_hm * (w-1) / (W-1)`` (the exact     ``x_hm / (W-1) * w`` (mmpose's
                                      inverse of the encoding)                code as written)
====================================  ======================================  ====================================

In both conventions an undetectable keypoint (heatmap maximum ``<= 0``) has ``score <= 0``: mask on
``scores > 0``. UDP decoding never refines such keypoints (mmpose refines its ``(-1, -1)`` with pixels of the
neighbouring map, or returns NaN for an all-zero map). Target centres use ``int(x + 0.5)``, which truncates
toward zero (not floor), as both reference implementations do. A keypoint is drawn when its visibility is
``> 0.5`` (official; mmpose draws at ``>= 0.5``, which only matters for fractional visibilities).

Exactness: MSRA and UDP targets are bit-identical to the references; DARK targets are within two float32 ulps
(PyTorch's and NumPy's float32 ``exp`` differ in the last bit); argmax and quarter-offset coordinates are exact;
DARK/UDP refinement agrees to ~1e-5 heatmap px (DarkPose blurs in float64, mmpose in float32, we in the
heatmaps' precision with the Newton step in float64).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import (
    ArrayLike,
    accurate_dtype,
    as_tensor,
    check_heatmaps,
    check_keypoints,
    check_same_nk,
    compute_dtype,
    size_pair,
    to_output,
)

__all__ = [
    "MSRAHeatmap",
    "UDPHeatmap",
    "decode_heatmaps",
    "gaussian_blur",
    "gaussian_kernel1d",
    "get_heatmap_maximum",
    "refine_dark",
    "refine_dark_udp",
    "refine_quarter_offset",
]

Convention = Literal["official", "mmpose"]
Refine = Literal["quarter", "dark", "udp"] | None
CONVENTIONS = ("official", "mmpose")
REFINE_MODES = ("quarter", "dark", "udp", None)

# DarkPose clamps the modulated heatmap at 1e-10 before the log; UDP clips it to [1e-3, 50].
_DARK_FLOOR = 1e-10
_UDP_CLIP = (1e-3, 50.0)
_FLOAT32_EPS = float(np.finfo(np.float32).eps)
# CPU tensors take their argmax through NumPy (see _argmax_flat); the tests switch this off to run the
# torch-only path that other devices use.
_NUMPY_ARGMAX_ON_CPU = True

# cv2.getGaussianKernel(k, sigma<=0) returns these fixed kernels for k <= 7.
_CV2_SMALL_KERNELS = {
    1: (1.0,),
    3: (0.25, 0.5, 0.25),
    5: (0.0625, 0.25, 0.375, 0.25, 0.0625),
    7: (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125),
}


def _trunc_long(v: ArrayLike) -> ArrayLike:
    """``int(v)`` (toward zero) as int64, NumPy or torch. A cast, not ``torch.trunc``: cheaper on small tensors."""
    if isinstance(v, np.ndarray):
        return np.clip(v, -(2**40), 2**40).astype(np.int64)
    return v.clamp(-(2**40), 2**40).long()


_NUMPY_DTYPES = {torch.int64: np.int64, torch.float32: np.float32, torch.float64: np.float64}


def _arange(like: ArrayLike, n: int, dtype: torch.dtype = torch.int64) -> ArrayLike:
    """``arange(n)`` in ``like``'s library (and device)."""
    if isinstance(like, np.ndarray):
        return np.arange(n, dtype=_NUMPY_DTYPES[dtype])
    return torch.arange(n, dtype=dtype, device=like.device)


def _torch_exp(x: ArrayLike) -> ArrayLike:
    """torch's exp for NumPy arrays too: the targets have always used it, and NumPy's rounds differently."""
    return torch.exp(torch.from_numpy(x)).numpy() if isinstance(x, np.ndarray) else torch.exp(x)


def _floor_long(v: Tensor) -> Tensor:
    t = _trunc_long(v)
    return t - (t > v).long()


def _check_convention(convention: str) -> None:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def _check_kernel_size(kernel_size: int) -> int:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, (int, np.integer)):
        raise ValueError(f"blur_kernel_size must be an odd positive integer, got {kernel_size!r}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"blur_kernel_size must be an odd positive integer, got {kernel_size}")
    return int(kernel_size)


# ----------------------------------------------------------------------------------------------------------
# argmax and the quarter offset
# ----------------------------------------------------------------------------------------------------------


def _prepare_heatmaps(heatmaps: ArrayLike) -> tuple[Tensor, bool]:
    hm, as_np = as_tensor(heatmaps, "heatmaps")
    check_heatmaps(hm)
    dtype = compute_dtype(hm.dtype)
    return (hm if hm.dtype == dtype else hm.to(dtype)), as_np


@functools.lru_cache(maxsize=64)
def _grid_constants(device: torch.device, h: int, w: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Small per-(device, map size) constants for the quarter offset: neighbour steps ``(4, 2)``, the last
    pixel ``(W-1, H-1)``, the map size ``(W, H)`` and the flat-index weights ``(1, W)``."""
    steps = torch.tensor([[1, 0], [-1, 0], [0, 1], [0, -1]], device=device)
    last = torch.tensor([w - 1, h - 1], device=device)
    return steps, last, last + 1, torch.tensor([1, w], device=device)


def _flatten(hm: Tensor) -> Tensor:
    n, k, h, w = hm.shape
    return hm.reshape(n * k, h * w)


def _argmax_flat(flat: Tensor, w: int) -> tuple[Tensor, Tensor]:
    """Integer ``(x, y)`` ``(M, 2)`` of the first maximum of each row (row-major ties go to the first pixel,
    NaN counts as the maximum, like ``np.argmax``), and the maximum ``(M,)``."""
    if _NUMPY_ARGMAX_ON_CPU and flat.device.type == "cpu" and flat.dtype in (torch.float32, torch.float64):
        # NumPy's SIMD argmax is several times faster than torch's CPU argmax on (N*K, H*W) rows, with the
        # same tie and NaN rules; the view is zero-copy and the per-keypoint bookkeeping is cheaper there too.
        array = flat.detach().numpy()
        idx = np.argmax(array, axis=1)
        y, x = np.divmod(idx, w)
        p = torch.from_numpy(np.stack((x, y), axis=1))
        if not flat.requires_grad:
            return p, torch.from_numpy(array[np.arange(len(idx)), idx])
        return p, flat.gather(1, torch.from_numpy(idx)[:, None])[:, 0]
    idx = flat.argmax(dim=1)
    return torch.stack((idx % w, idx // w), dim=1), flat.gather(1, idx[:, None])[:, 0]


def _pixel_coords(
    hm: Tensor, coords: ArrayLike, rounding: Literal["floor", "trunc"]
) -> tuple[Tensor, Tensor, Tensor]:
    """``(M, 2)`` float coordinates and their integer pixel ``px, py``: ``floor(x + 0.5)`` or ``int(x)``."""
    c, _ = as_tensor(coords, "coords")
    check_keypoints(c, "coords")
    check_same_nk(hm, c, "heatmaps", "coords")
    n, k = hm.shape[:2]
    c = c[..., :2].to(device=hm.device, dtype=hm.dtype).reshape(n * k, 2)
    p = _floor_long(c + 0.5) if rounding == "floor" else _trunc_long(c)
    return c, p[:, 0], p[:, 1]


def get_heatmap_maximum(heatmaps: ArrayLike, invalid_value: float = 0.0) -> tuple[ArrayLike, ArrayLike]:
    """Location and value of each heatmap's maximum.

    Args:
        heatmaps: ``(N, K, H, W)``.
        invalid_value: coordinate given to keypoints whose maximum is ``<= 0`` (or NaN): ``0`` in the official
            ``get_max_preds``, ``-1`` in mmpose's ``get_heatmap_maximum``.

    Returns:
        ``coords (N, K, 2)`` integer-valued ``(x, y)`` in heatmap pixels, ties resolved to the first pixel in
        row-major order; ``maxvals (N, K)``. Float32 (float64 for float64 input).
    """
    hm, as_np = _prepare_heatmaps(heatmaps)
    n, k, _, w = hm.shape
    p, vals = _argmax_flat(_flatten(hm), w)
    coords = torch.where((vals > 0)[:, None], p.to(hm.dtype), float(invalid_value))
    return to_output(coords.view(n, k, 2), as_np), to_output(vals.view(n, k), as_np)


def _quarter_offsets(flat: Tensor, p: Tensor, h: int, w: int, border: str) -> Tensor:
    """``(M, 2)`` quarter-pixel shifts for integer pixels ``p`` ``(M, 2)`` (see :func:`refine_quarter_offset`)."""
    steps, last, size, to_flat = _grid_constants(flat.device, h, w)
    nb = torch.clamp(p[:, None, :] + steps, min=torch.zeros_like(last), max=last)  # x+1, x-1, y+1, y-1
    v = flat.gather(1, (nb * to_flat).sum(-1)).view(-1, 2, 2)
    step = torch.sign(v[:, :, 0] - v[:, :, 1])  # (M, 2): signs of the x and y differences
    inside = (p > 1) & (p < last)  # 1 < x < W-1, 1 < y < H-1
    # "per_axis": x moves if 0 < y < H, y moves if 0 < x < W
    ok = inside.all(dim=1, keepdim=True) if border == "both" else inside & ((p > 0) & (p < size)).flip(1)
    return step * ok * 0.25


def refine_quarter_offset(
    heatmaps: ArrayLike, coords: ArrayLike, border: Literal["both", "per_axis"] = "both"
) -> ArrayLike:
    """Move each coordinate a quarter pixel towards the higher neighbour (Newell et al. 2016; HRNet).

    ``px = floor(x + 0.5)`` (likewise ``py``); the shift is ``0.25 * sign(hm[py, px+1] - hm[py, px-1])`` in x and
    ``0.25 * sign(hm[py+1, px] - hm[py-1, px])`` in y.

    Args:
        heatmaps: ``(N, K, H, W)``.
        coords: ``(N, K, 2)`` heatmap coordinates, usually from :func:`get_heatmap_maximum`.
        border: ``"both"`` — the official ``get_final_preds``: shift both axes only if
            ``1 < px < W-1 and 1 < py < H-1``, else neither. ``"per_axis"`` — mmpose ``refine_keypoints``:
            shift x if ``1 < px < W-1 and 0 < py < H``, shift y if ``1 < py < H-1 and 0 < px < W``.

    Returns:
        ``(N, K, 2)`` refined coordinates.
    """
    if border not in ("both", "per_axis"):
        raise ValueError(f"border must be 'both' or 'per_axis', got {border!r}")
    hm, as_np = _prepare_heatmaps(heatmaps)
    n, k, h, w = hm.shape
    c, px, py = _pixel_coords(hm, coords, "floor")
    out = c + _quarter_offsets(_flatten(hm), torch.stack((px, py), dim=1), h, w, border)
    return to_output(out.view(n, k, 2), as_np)


# ----------------------------------------------------------------------------------------------------------
# Gaussian modulation (blur) and the DARK / UDP sub-pixel steps
# ----------------------------------------------------------------------------------------------------------


def gaussian_kernel1d(
    kernel_size: int, *, dtype: torch.dtype = torch.float64, device: torch.device | str | None = None
) -> Tensor:
    """The 1-D kernel of ``cv2.GaussianBlur(img, (k, k), 0)``: ``sigma = 0.3 * ((k - 1) / 2 - 1) + 0.8``,
    normalised to sum 1 (and cv2's fixed kernels for ``k <= 7``). ``k = 11`` gives ``sigma = 2``."""
    kernel_size = _check_kernel_size(kernel_size)
    if kernel_size in _CV2_SMALL_KERNELS:
        values = np.array(_CV2_SMALL_KERNELS[kernel_size], dtype=np.float64)
    else:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
        offsets = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2
        values = np.exp(-(offsets**2) / (2 * sigma * sigma))
        values /= values.sum()
    return torch.as_tensor(values, dtype=dtype, device=device)


def gaussian_blur(heatmaps: ArrayLike, kernel_size: int = 11, *, rescale: bool = True) -> ArrayLike:
    """DARK's distribution modulation over whole maps, batched.

    Each map is zero-padded by ``kernel_size // 2``, blurred with :func:`gaussian_kernel1d` (separably), and —
    with ``rescale=True`` — multiplied by ``original max / blurred max`` so that its maximum is unchanged
    (DarkPose ``gaussian_blur``, mmpose ``gaussian_blur``). Unlike DarkPose's, the input is not modified.

    Args:
        heatmaps: ``(N, K, H, W)``.

    Returns:
        ``(N, K, H, W)``, float32 (float64 for float64 input). An all-zero map gives NaN (0 / 0), as in the
        reference code.
    """
    hm, as_np = _prepare_heatmaps(heatmaps)
    return to_output(_blur_full(hm, kernel_size, rescale), as_np)


def _blur_full(hm: Tensor, kernel_size: int, rescale: bool) -> Tensor:
    n, k, h, w = hm.shape
    g = gaussian_kernel1d(kernel_size, dtype=hm.dtype, device=hm.device)
    r = kernel_size // 2
    x = hm.reshape(n * k, 1, h, w)
    x = F.conv2d(x, g.view(1, 1, 1, -1), padding=(0, r))
    x = F.conv2d(x, g.view(1, 1, -1, 1), padding=(r, 0))
    x = x.view(n, k, h, w)
    if rescale:
        before = hm.amax(dim=(2, 3), keepdim=True)
        after = x.amax(dim=(2, 3), keepdim=True)
        x = x * (before / after)
    return x


def _band(kernel: Tensor, size: int, out: int, offset: int = 0) -> Tensor:
    """``band[j, c] = kernel[j - c + offset]`` (0 outside): a correlation of ``size`` inputs into ``out`` outputs.
    ``offset = kernel_size // 2`` with ``out = size`` is a "same"-size blur with zero padding."""
    j = (
        torch.arange(size, device=kernel.device)[:, None]
        - torch.arange(out, device=kernel.device)[None, :]
        + offset
    )
    return torch.where((j >= 0) & (j < kernel.numel()), kernel[j.clamp(0, kernel.numel() - 1)], 0.0)


def _blurred_patch(
    flat: Tensor, px: Tensor, py: Tensor, h: int, w: int, kernel: Tensor, radius: int
) -> Tensor:
    """Blurred (zero-padded, not rescaled) values at ``(px + dx, py + dy)`` for ``|dx|, |dy| <= radius``.

    Only a ``(2 * (radius + kernel_size // 2) + 1)^2`` window around each pixel is read, so decoding never
    blurs whole maps. ``px, py`` must lie on the map. Returns ``(M, 2r+1, 2r+1)`` indexed
    ``[dy + r, dx + r]``, in ``kernel.dtype``; entries for positions off the map are unspecified.
    """
    size = 2 * (radius + kernel.numel() // 2) + 1
    if h < size or w < size or not flat.is_contiguous():
        return _blurred_patch_masked(flat, px, py, h, w, kernel, radius)
    m, wr, p = flat.shape[0], size // 2, 2 * radius + 1
    # The window is moved inside the map where it would stick out: every map pixel the blur needs is still
    # in it, and blurring the window alone ("same" size, zeros beyond it) gives the map's zero-padded blur at
    # the pixels we keep. Rows of a sliding view of the flat maps are copied with one index_select.
    x0 = (px - wr).clamp(0, w - size)
    y0 = (py - wr).clamp(0, h - size)
    ar = torch.arange(size, device=flat.device)
    starts = (torch.arange(m, device=flat.device) * (h * w) + y0 * w + x0)[:, None] + ar * w
    rows = flat.view(-1).unfold(0, size, 1).index_select(0, starts.view(-1))
    same = _band(kernel, size, size, offset=kernel.numel() // 2)
    blur_x = (rows.to(kernel.dtype) @ same).view(m, size, size)  # [m, row, col]
    # Window columns of px-r .. px+r; positions off the map (never used by the callers) repeat the border.
    keep_x = ((px - radius - x0)[:, None] + ar[:p]).clamp_(0, size - 1)
    blur_x = blur_x.gather(2, keep_x[:, None, :].expand(m, size, p))  # (M, size, p)
    blur_xy = (blur_x.transpose(1, 2).reshape(m * p, size) @ same).view(m, p, size)  # [m, dx, row]
    keep_y = ((py - radius - y0)[:, None] + ar[:p]).clamp_(0, size - 1)
    return blur_xy.gather(2, keep_y[:, None, :].expand(m, p, p)).transpose(1, 2)


def _blurred_patch_masked(
    flat: Tensor, px: Tensor, py: Tensor, h: int, w: int, kernel: Tensor, radius: int
) -> Tensor:
    """:func:`_blurred_patch` for maps smaller than the window: gather it pixel by pixel, zeros outside."""
    m = flat.shape[0]
    wr = radius + kernel.numel() // 2
    size, p = 2 * wr + 1, 2 * radius + 1
    offs = torch.arange(-wr, wr + 1, device=flat.device)
    xs = px[:, None] + offs
    ys = py[:, None] + offs
    inside = ((ys >= 0) & (ys < h))[:, :, None] & ((xs >= 0) & (xs < w))[:, None, :]
    idx = (ys.clamp(0, h - 1) * w)[:, :, None] + xs.clamp(0, w - 1)[:, None, :]
    win = flat.gather(1, idx.view(m, size * size)).view(m, size, size)
    win = torch.where(inside, win, 0.0).to(kernel.dtype)
    band = _band(kernel, size, p)
    rows = (win.view(m * size, size) @ band).view(m, size, p)  # blurred along x
    cols = rows.transpose(1, 2).reshape(m * p, size) @ band  # then along y: [m, dx, dy]
    return cols.view(m, p, p).transpose(1, 2)


def _full_patch(
    hm_sub: Tensor, px: Tensor, py: Tensor, kernel_size: int, radius: int, dtype: torch.dtype
) -> Tensor:
    """The same patch read from whole, rescaled blurred maps (the reference path), with edge-clamped indices."""
    n, h, w = hm_sub.shape
    blurred = _blur_full(hm_sub.to(dtype)[:, None], kernel_size, rescale=True).view(n, h * w)
    offs = torch.arange(-radius, radius + 1, device=hm_sub.device)
    xs = (px[:, None] + offs).clamp(0, w - 1)
    ys = (py[:, None] + offs).clamp(0, h - 1)
    p = 2 * radius + 1
    return blurred.gather(1, ((ys * w)[:, :, None] + xs[:, None, :]).view(n, p * p)).view(n, p, p)


@functools.lru_cache(maxsize=16)
def _derivative_matrix(kind: str, device: torch.device, dtype: torch.dtype) -> Tensor:
    """Finite-difference weights turning log values into ``(g_x, g_y, H_xx, H_yy, H_xy)`` with one matmul.

    ``"dark"``: the 5x5 patch ``[dy + 2, dx + 2]`` (DarkPose ``taylor``: half-differences over 1 px,
    quarter-weighted second differences over 2 px). ``"udp"``: the stencil ``(L, L[x+1], L[y+1], L[x+1,y+1],
    L[x-1,y-1], L[x-1], L[y-1])`` (mmpose ``refine_keypoints_dark_udp``: second differences over 1 px).
    """
    if kind == "dark":
        d = torch.zeros(5, 5, 5, dtype=torch.float64)
        d[2, 3, 0], d[2, 1, 0] = 0.5, -0.5
        d[3, 2, 1], d[1, 2, 1] = 0.5, -0.5
        d[2, 4, 2], d[2, 2, 2], d[2, 0, 2] = 0.25, -0.5, 0.25
        d[4, 2, 3], d[2, 2, 3], d[0, 2, 3] = 0.25, -0.5, 0.25
        d[3, 3, 4], d[1, 3, 4], d[3, 1, 4], d[1, 1, 4] = 0.25, -0.25, -0.25, 0.25
        d = d.view(25, 5)
    else:
        d = torch.tensor(
            [  # g_x   g_y   H_xx  H_yy  H_xy
                [0.0, 0.0, -2.0, -2.0, 1.0],  # L
                [0.5, 0.0, 1.0, 0.0, -0.5],  # L[x+1]
                [0.0, 0.5, 0.0, 1.0, -0.5],  # L[y+1]
                [0.0, 0.0, 0.0, 0.0, 0.5],  # L[x+1, y+1]
                [0.0, 0.0, 0.0, 0.0, 0.5],  # L[x-1, y-1]
                [-0.5, 0.0, 1.0, 0.0, -0.5],  # L[x-1]
                [0.0, -0.5, 0.0, 1.0, -0.5],  # L[y-1]
            ],
            dtype=torch.float64,
        )
    return d.to(device=device, dtype=dtype)


def _newton_offsets(derivatives: Tensor, move: Tensor, ridge: float = 0.0) -> Tensor:
    """``-(H + ridge I)^{-1} g`` from ``(M, 5)`` derivatives ``(g_x, g_y, H_xx, H_yy, H_xy)`` where ``move`` and
    the determinant is non-zero, else 0; ``(M, 2)``."""
    gx, gy, hxx, hyy, hxy = derivatives.unbind(dim=1)
    if ridge:
        hxx, hyy = hxx + ridge, hyy + ridge
    det = hxx * hyy - hxy * hxy
    move = move & (det != 0)
    det = torch.where(move, det, 1.0)
    off = torch.stack((hxy * gy - hyy * gx, hxy * gx - hxx * gy), dim=1) / det[:, None]
    return torch.where(move[:, None], off, 0.0)


def _dark_offsets(hm: Tensor, px: Tensor, py: Tensor, kernel_size: int) -> Tensor:
    """DarkPose Taylor step for integer pixels (see :func:`refine_dark`), ``(M, 2)`` in an accurate dtype."""
    n, k, h, w = hm.shape
    acc = accurate_dtype(hm.device)
    # The blur runs in the heatmaps' precision (float32 like mmpose, float64 for float64 maps), the log and the
    # Newton step in float64.
    kernel = gaussian_kernel1d(kernel_size, dtype=hm.dtype, device=hm.device)
    inside = (px > 1) & (px < w - 2) & (py > 1) & (py < h - 2)
    patch = _blurred_patch(_flatten(hm), px.clamp(0, w - 1), py.clamp(0, h - 1), h, w, kernel, radius=2).to(
        acc
    )
    # The reference rescales each blurred map by max / blurred max (>= 1 when the max is > 0); a constant
    # factor cancels in the log-derivatives, so it matters only where the 1e-10 floor can clamp a value.
    clamp = inside & (patch.flatten(1).amin(dim=1) < _DARK_FLOOR)
    if bool(clamp.any()):
        sel = clamp.nonzero()[:, 0]
        patch = patch.index_put(
            (sel,), _full_patch(hm.reshape(n * k, h, w)[sel], px[sel], py[sel], kernel_size, 2, acc)
        )
    lg = torch.log(patch.clamp_min(_DARK_FLOOR)).flatten(1)
    return _newton_offsets(lg @ _derivative_matrix("dark", lg.device, lg.dtype), inside)


def _udp_offsets(hm: Tensor, px: Tensor, py: Tensor, kernel_size: int) -> Tensor:
    """UDP Newton step for integer pixels (see :func:`refine_dark_udp`), ``(M, 2)`` in an accurate dtype."""
    n, k, h, w = hm.shape
    acc = accurate_dtype(hm.device)
    kernel = gaussian_kernel1d(kernel_size, dtype=hm.dtype, device=hm.device)
    flat = _flatten(hm)
    on_map = (px >= 0) & (px < w) & (py >= 0) & (py < h)
    xc, yc = px.clamp(0, w - 1), py.clamp(0, h - 1)
    peak = flat.gather(1, (yc * w + xc)[:, None])[:, 0]
    valid = on_map & (peak > 0)
    patch = _blurred_patch(flat, xc, yc, h, w, kernel, radius=1).to(acc)
    # Edge padding: the neighbour at x-1 of column 0 is column 0 itself (offsets into the 3x3 patch).
    lo_x, hi_x = (xc == 0).long(), 2 - (xc == w - 1).long()
    lo_y, hi_y = (yc == 0).long(), 2 - (yc == h - 1).long()
    one = torch.ones_like(xc)
    # i, x+1, y+1, (x+1, y+1), (x-1, y-1), x-1, y-1
    cols = torch.stack((one, hi_x, one, hi_x, lo_x, lo_x, one), dim=1)
    rows = torch.stack((one, one, hi_y, hi_y, lo_y, one, lo_y), dim=1)
    stencil = patch.flatten(1).gather(1, rows * 3 + cols)
    # The clip bounds hold after the reference's rescale (factor >= 1, max kept) when they hold before it.
    clip = valid & ((stencil.amin(dim=1) < _UDP_CLIP[0]) | (peak > _UDP_CLIP[1]))
    if bool(clip.any()):
        sel = clip.nonzero()[:, 0]
        full = _full_patch(hm.reshape(n * k, h, w)[sel], xc[sel], yc[sel], kernel_size, 1, acc)
        # Clamped indices already give the edge padding here, so read the 3x3 patch directly.
        stencil = stencil.index_put((sel,), full.flatten(1)[:, [4, 5, 7, 8, 0, 3, 1]])
    lg = torch.log(stencil.clamp(*_UDP_CLIP))
    return _newton_offsets(lg @ _derivative_matrix("udp", lg.device, lg.dtype), valid, ridge=_FLOAT32_EPS)


def refine_dark(heatmaps: ArrayLike, coords: ArrayLike, blur_kernel_size: int = 11) -> ArrayLike:
    """DARK sub-pixel refinement (DarkPose ``get_final_preds``): a Taylor/Newton step on the log of the
    blurred heatmap.

    ``px = int(x)``, ``py = int(y)``. Keypoints with ``1 < px < W-2 and 1 < py < H-2`` and a non-singular Hessian
    move by ``-H^{-1} g``, where on ``L = log(max(blur(hm), 1e-10))``: ``g = (L[x+1]-L[x-1]) / 2``,
    ``H_xx = (L[x+2] - 2 L[x] + L[x-2]) / 4``, ``H_xy = (L[y+1,x+1] - L[y-1,x+1] - L[y+1,x-1] + L[y-1,x-1]) / 4``.
    Others are returned unchanged.

    Only a 15x15 window per keypoint is blurred (in the maps' precision; the Newton step in float64); whole
    maps are blurred only for the rare keypoints where the 1e-10 floor could bite, so the result equals
    blurring everything.

    Args:
        heatmaps: ``(N, K, H, W)``, the raw model output.
        coords: ``(N, K, 2)`` integer argmax coordinates from :func:`get_heatmap_maximum`.
        blur_kernel_size: the modulation kernel (11 for sigma=2 targets, 17 for sigma=3).
    """
    blur_kernel_size = _check_kernel_size(blur_kernel_size)
    hm, as_np = _prepare_heatmaps(heatmaps)
    n, k = hm.shape[:2]
    c, px, py = _pixel_coords(hm, coords, "trunc")
    out = (c.to(accurate_dtype(hm.device)) + _dark_offsets(hm, px, py, blur_kernel_size)).to(hm.dtype)
    return to_output(out.view(n, k, 2), as_np)


def refine_dark_udp(heatmaps: ArrayLike, coords: ArrayLike, blur_kernel_size: int = 11) -> ArrayLike:
    """UDP's refinement (mmpose ``refine_keypoints_dark_udp``): one full Newton step on
    ``L = log(clip(blur(hm), 1e-3, 50))`` with one-pixel differences and edge padding, no border test.

    ``g = (L[x+1] - L[x-1]) / 2``, ``H_xx = L[x+1] - 2 L[x] + L[x-1]``,
    ``H_xy = (L[x+1,y+1] - L[x+1] - L[y+1] + 2 L - L[x-1] - L[y-1] + L[x-1,y-1]) / 2``; the step is
    ``-(H + eps I)^{-1} g`` with ``eps`` = float32 epsilon. Neighbours beyond the border repeat the border pixel.

    Keypoints whose coordinates lie outside the map, or whose heatmap value there is ``<= 0`` (undetectable:
    see :func:`get_heatmap_maximum`), are returned unchanged, as are the (measure-zero) singular systems.
    """
    blur_kernel_size = _check_kernel_size(blur_kernel_size)
    hm, as_np = _prepare_heatmaps(heatmaps)
    n, k = hm.shape[:2]
    c, px, py = _pixel_coords(hm, coords, "trunc")
    out = (c.to(accurate_dtype(hm.device)) + _udp_offsets(hm, px, py, blur_kernel_size)).to(hm.dtype)
    return to_output(out.view(n, k, 2), as_np)


def decode_heatmaps(
    heatmaps: ArrayLike,
    refine: Refine = "quarter",
    *,
    blur_kernel_size: int = 11,
    convention: Convention = "official",
) -> tuple[ArrayLike, ArrayLike]:
    """Heatmaps to heatmap-space coordinates and scores.

    Args:
        heatmaps: ``(N, K, H, W)``.
        refine: ``None`` (argmax), ``"quarter"`` (:func:`refine_quarter_offset`), ``"dark"``
            (:func:`refine_dark`) or ``"udp"`` (:func:`refine_dark_udp`).
        blur_kernel_size: modulation kernel for ``"dark"`` / ``"udp"``.
        convention: ``"official"`` or ``"mmpose"`` (see the module docstring).

    Returns:
        ``coords (N, K, 2)`` in heatmap pixels, ``scores (N, K)`` = the heatmap maxima (``<= 0`` marks an
        undetectable keypoint). Float32 (float64 for float64 input).
    """
    if refine not in REFINE_MODES:
        raise ValueError(f"refine must be one of {REFINE_MODES}, got {refine!r}")
    _check_convention(convention)
    blur_kernel_size = _check_kernel_size(blur_kernel_size)
    hm, as_np = _prepare_heatmaps(heatmaps)
    n, k, h, w = hm.shape
    flat = _flatten(hm)
    p, scores = _argmax_flat(flat, w)
    p = torch.where((scores > 0)[:, None], p, 0 if convention == "official" else -1)
    coords = p.to(hm.dtype)
    px, py = p[:, 0], p[:, 1]
    if refine == "quarter":
        coords = coords + _quarter_offsets(flat, p, h, w, "both" if convention == "official" else "per_axis")
    elif refine == "dark":
        coords = (coords.to(accurate_dtype(hm.device)) + _dark_offsets(hm, px, py, blur_kernel_size)).to(
            hm.dtype
        )
    elif refine == "udp":
        coords = (coords.to(accurate_dtype(hm.device)) + _udp_offsets(hm, px, py, blur_kernel_size)).to(
            hm.dtype
        )
    return to_output(coords.view(n, k, 2), as_np), to_output(scores.view(n, k), as_np)


# ----------------------------------------------------------------------------------------------------------
# Codecs
# ----------------------------------------------------------------------------------------------------------

_DEFAULT = object()


def _check_sigma(sigma: float) -> float:
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float, np.floating, np.integer)):
        raise ValueError(f"sigma must be a positive number, got {sigma!r}")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"sigma must be a positive finite number, got {sigma}")
    return float(sigma)


class _HeatmapCodec:
    """Shared plumbing: argument checks, NumPy interop, decode in heatmap space then scale to input space."""

    default_refine: Refine = "quarter"

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float,
        blur_kernel_size: int,
        convention: Convention,
    ) -> None:
        self.input_size = size_pair(input_size, "input_size")
        self.heatmap_size = size_pair(heatmap_size, "heatmap_size")
        self.sigma = _check_sigma(sigma)
        self.blur_kernel_size = _check_kernel_size(blur_kernel_size)
        _check_convention(convention)
        self.convention = convention
        # 3-sigma window; the official code uses tmp_size = 3 * sigma as a float.
        self.radius = 3.0 * self.sigma
        self.window = int(math.floor(self.radius))
        self._constants: dict[tuple, ArrayLike] = {}

    def _constant(self, name: str, like: ArrayLike, make, dtype: torch.dtype | None = None) -> ArrayLike:
        """A small constant made once and reused (fewer tiny ops per batch): the tensor ``make()`` in ``dtype``
        (default: the float dtype of ``like``) and in ``like``'s library and device."""
        as_np = isinstance(like, np.ndarray)
        if dtype is None:
            dtype = (torch.float64 if like.dtype == np.float64 else torch.float32) if as_np else like.dtype
        key = (name, None if as_np else like.device, dtype)
        value = self._constants.get(key)
        if value is None:
            value = make().to(dtype)
            value = value.numpy() if as_np else value.to(like.device)
            self._constants[key] = value
        return value

    # -- encode -------------------------------------------------------------------------------------------
    def encode(
        self,
        keypoints: ArrayLike,
        visible: ArrayLike | None = None,
        *,
        joint_weights: ArrayLike | Sequence[float] | None = None,
    ) -> tuple[ArrayLike, ArrayLike]:
        """Keypoints in input-crop pixels to target heatmaps and target weights, all instances at once.

        Args:
            keypoints: ``(N, K, 2)`` ``(x, y)`` in input (crop) pixels; extra trailing columns are ignored.
            visible: ``(N, K)`` visibility / weight, default all ones. A keypoint is drawn when its weight is
                ``> 0.5`` (as in the official code); non-finite keypoints are treated as invisible.
            joint_weights: optional ``(K,)`` per-joint loss weights multiplied into the returned weights (the
                official ``USE_DIFFERENT_JOINTS_WEIGHT``). Do not pass them to the loss as well.

        Returns:
            ``heatmaps (N, K, H, W)`` and ``weights (N, K)``: the visibility, zeroed where the Gaussian lies
            entirely off the map. Float32 (float64 for float64 keypoints), on the keypoints' device.
        """
        kp, as_np = as_tensor(keypoints, "keypoints")
        check_keypoints(kp)
        dtype = compute_dtype(kp.dtype)
        kp = kp[..., :2].to(dtype)
        if visible is None:
            vis = torch.ones(kp.shape[:2], dtype=dtype, device=kp.device)
        else:
            vis, _ = as_tensor(visible, "visible")
            if vis.shape != kp.shape[:2]:
                raise ValueError(
                    f"visible must have shape (N, K) = {tuple(kp.shape[:2])} to match keypoints, "
                    f"got {tuple(vis.shape)}"
                )
            vis = vis.to(device=kp.device, dtype=dtype)
        if kp.device.type == "cpu":
            # A data sample's few keypoints cost torch's per-op overhead many times over: on the CPU the
            # encoders compute in NumPy, with the same rounding (and torch's exp).
            kp, vis = kp.detach().numpy(), vis.detach().numpy()
            finite = np.isfinite(kp).all(axis=-1)
            kp = np.where(finite[..., None], kp, 0.0)  # keeps NaN out of the arithmetic (never drawn)
        else:
            finite = torch.isfinite(kp).all(dim=-1)
            kp = torch.where(finite[..., None], kp, 0.0)
        heatmaps, weights = (torch.as_tensor(v) for v in self._encode(kp, vis, finite))
        if joint_weights is not None:
            jw, _ = as_tensor(joint_weights, "joint_weights")
            if jw.shape != (kp.shape[1],):
                raise ValueError(
                    f"joint_weights must have shape (K,) = ({kp.shape[1]},), got {tuple(jw.shape)}"
                )
            weights = weights * jw.to(device=weights.device, dtype=weights.dtype)
        return to_output(heatmaps, as_np), to_output(weights, as_np)

    def _encode(self, kp: ArrayLike, vis: ArrayLike, finite: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        """NumPy arrays (on the CPU) or tensors; ``finite`` (N, K): keypoints with finite coordinates (the
        others, set to 0, count as invisible)."""
        raise NotImplementedError

    def _integer_centres(
        self, kp_hm: ArrayLike, vis: ArrayLike, finite: ArrayLike
    ) -> tuple[ArrayLike, ArrayLike, ArrayLike]:
        """``mu = int(kp_hm + 0.5)`` (N*K, 2), the weights after the official in-bounds test, the drawn mask.

        The official test ``int(mu - r) >= W or int(mu + r + 1) < 0`` is, for an integer ``mu`` and ``W >= 1``,
        ``mu >= W + r or mu <= -r - 2``.
        """
        xp = np if isinstance(kp_hm, np.ndarray) else torch
        w, h = self.heatmap_size
        r = self.radius
        mu = _trunc_long(kp_hm + 0.5).reshape(-1, 2)
        on = finite.reshape(-1) & (mu[:, 0] < w + r) & (mu[:, 1] < h + r) & (mu > -r - 2).all(1)
        weights = xp.where(on.reshape(vis.shape), vis, 0.0)
        return mu, weights, (weights > 0.5).reshape(-1)

    def _assemble_rows(
        self, table: ArrayLike, first: ArrayLike, mu_y: ArrayLike, drawn: ArrayLike, n: int, k: int
    ) -> ArrayLike:
        """Build the maps row by row, writing every output element once (no zero fill, no scatter).

        ``table`` holds, per block, a zero row, the ``2r+1`` full-width window rows (zero outside the window
        columns) and another zero row; ``first[m]`` is the index of keypoint ``m``'s first window row. Row ``i``
        of its map is ``table[first + i - mu_y + r]``, clamped into the block, so rows above or below the window
        read a zero row; every row of an undrawn keypoint reads a zero row.
        """
        xp = np if isinstance(table, np.ndarray) else torch
        w, h = self.heatmap_size
        r = self.window
        # Undrawn centres may lie anywhere: they read the first block's zero row.
        first = xp.where(drawn, first, 1)
        lo = first - 1
        hi = xp.where(drawn, first + 2 * r + 1, lo)
        rows = (first + r - mu_y)[:, None] + _arange(first, h)
        src = xp.minimum(xp.maximum(rows, lo[:, None]), hi[:, None])
        return table[src.reshape(-1)].reshape(n, k, h, w)

    # -- decode -------------------------------------------------------------------------------------------
    def decode(self, heatmaps: ArrayLike, refine: Refine | object = _DEFAULT) -> tuple[ArrayLike, ArrayLike]:
        """Heatmaps ``(N, K, H, W)`` to ``keypoints (N, K, 2)`` in input-crop pixels and ``scores (N, K)``.

        ``refine`` is ``"quarter"``, ``"dark"``, ``"udp"`` or ``None`` (plain argmax); the default is the
        codec's own (:attr:`default_refine`). Scores are the heatmap maxima; ``score <= 0`` marks a keypoint
        that could not be located. Map them to the original image with
        :func:`hrnet_backbones.keypoints.transform_preds`.
        """
        refine = self.default_refine if refine is _DEFAULT else refine
        hm, as_np = _prepare_heatmaps(heatmaps)
        w, h = self.heatmap_size
        if tuple(hm.shape[2:]) != (h, w):
            raise ValueError(
                f"heatmaps are {tuple(hm.shape[2:])} (H, W) but this codec's heatmap_size is (w, h) = {(w, h)}"
            )
        coords, scores = decode_heatmaps(
            hm, refine, blur_kernel_size=self.blur_kernel_size, convention=self.convention
        )
        return to_output(self._to_input(coords), as_np), to_output(scores, as_np)

    def _to_input(self, coords: Tensor) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma}, blur_kernel_size={self.blur_kernel_size}, convention={self.convention!r}"
            f"{self._extra_repr()})"
        )

    def _extra_repr(self) -> str:
        return ""


class MSRAHeatmap(_HeatmapCodec):
    """The HRNet / SimpleBaseline Gaussian heatmap (``unbiased=True``: the DARK sub-pixel Gaussian).

    ``x_hm = x_in / stride`` with ``stride = input_size / heatmap_size``.

    * ``unbiased=False`` (official ``generate_target``): an unnormalised Gaussian (peak 1) on the integer centre
      ``mu = int(x_hm + 0.5)``, clipped to the ``(2*floor(3 sigma) + 1)`` square window. The weight is zeroed when
      the window lies entirely off the map (``int(mu - 3 sigma) >= W`` or ``int(mu + 3 sigma + 1) < 0``; note
      that a window ending exactly at column 0 keeps weight 1 with an all-zero map, as in the official code).
      Bit-identical to the official code and to mmpose when ``3 sigma`` is an integer; for other sigmas their
      truncated window gains a pixel on one side (and shifts for negative centres), ours stays symmetric.
    * ``unbiased=True`` (DARK, DarkPose ``generate_target``): a full-map Gaussian on the sub-pixel centre, in
      float32 like DarkPose; in-bounds test as above on the sub-pixel centre, with truncation (``"official"``)
      or float comparison (``"mmpose"``). The centre is ``x_in / stride`` like mmpose's (DarkPose's own data
      pipeline maps image joints to the heatmap with its ``(size - 1)`` affine instead).

    Decoding defaults to ``"dark"`` when ``unbiased`` and ``"quarter"`` otherwise.

    Args:
        input_size: ``(w, h)`` of the model input.
        heatmap_size: ``(W, H)`` of the model output.
        sigma: Gaussian sigma in heatmap pixels.
        unbiased: draw the sub-pixel DARK Gaussian (and decode with DARK by default).
        blur_kernel_size: odd modulation kernel for DARK/UDP decoding (11 for sigma 2, 17 for sigma 3).
        convention: ``"official"`` or ``"mmpose"``, see the module docstring.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        unbiased: bool = False,
        blur_kernel_size: int = 11,
        convention: Convention = "official",
    ) -> None:
        super().__init__(input_size, heatmap_size, sigma, blur_kernel_size, convention)
        self.unbiased = bool(unbiased)
        self.default_refine = "dark" if self.unbiased else "quarter"
        (w, h), (ww, hh) = self.input_size, self.heatmap_size
        self.stride = (w / ww, h / hh)
        # The (2r+1)^2 window, with the same float32 arithmetic as the official generate_target ...
        r = self.window
        d = np.arange(-r, r + 1, dtype=np.float32)
        kernel = np.exp(-(d[:, None] ** 2 + d[None, :] ** 2) / np.float32(2 * self.sigma**2))
        # ... laid out as full-width rows for every horizontal position of the centre: block o is a zero row, the
        # 2r+1 window rows for mu_x = o - r - 2 (a drawn centre has -r-2 <= mu_x <= W+r) and a zero row.
        positions = np.arange(ww + 2 * r + 3)
        dx = np.arange(ww)[None, :] - (positions[:, None] - r - 2)  # (P, W)
        rows = kernel[:, np.clip(dx + r, 0, 2 * r)].transpose(1, 0, 2)  # (P, 2r+1, W)
        rows = np.where((np.abs(dx) <= r)[:, None, :], rows, np.float32(0))
        self._row_table = np.pad(rows, ((0, 0), (1, 1), (0, 0))).reshape(-1, ww)

    def _extra_repr(self) -> str:
        return f", unbiased={self.unbiased}"

    def _encode(self, kp: ArrayLike, vis: ArrayLike, finite: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        n, k = kp.shape[:2]
        if self.unbiased:
            return self._encode_unbiased(kp, vis, finite)
        # The official feat_stride is a float64 array: x / stride is evaluated in float64.
        stride = self._constant("stride", kp, lambda: torch.tensor(self.stride), torch.float64)
        mu, weights, drawn = self._integer_centres(kp / stride, vis, finite)
        table = self._constant("rows", kp, lambda: torch.from_numpy(self._row_table))
        first = (mu[:, 0] + self.window + 2) * (2 * self.window + 3) + 1
        return self._assemble_rows(table, first, mu[:, 1], drawn, n, k), weights

    def _encode_unbiased(
        self, kp: ArrayLike, vis: ArrayLike, finite: ArrayLike
    ) -> tuple[ArrayLike, ArrayLike]:
        xp = np if isinstance(kp, np.ndarray) else torch
        w, h = self.heatmap_size
        mu = kp / self._constant("stride32", kp, lambda: torch.tensor(self.stride, dtype=torch.float32))
        # The in-bounds test int(mu - r) >= W or int(mu + r + 1) < 0 (official), or without the int() casts
        # (mmpose); for finite values and W >= 1 the casts only move the second bound to <= -1.
        r = self.radius
        hi = mu + r + 1
        below = hi <= -1 if self.convention == "official" else hi < 0
        off = (mu - r >= self._constant("size", kp, lambda: torch.tensor((w, h)))) | below
        weights = xp.where(off[..., 0] | off[..., 1] | ~finite, 0.0, vis)
        # Undrawn centres go to infinity, where the Gaussian is exactly 0 (exp(-inf)).
        mu = xp.where((weights > 0.5)[..., None], mu, math.inf)
        dx2 = (self._constant("xs", kp, lambda: torch.arange(w)) - mu[..., 0, None]) ** 2
        dy2 = (self._constant("ys", kp, lambda: torch.arange(h)) - mu[..., 1, None]) ** 2
        exponent = dy2[..., :, None] + dx2[..., None, :]
        exponent /= -float(np.float32(2 * self.sigma**2))  # -(dy2 + dx2) / (2 sigma^2), DarkPose's float32
        return _torch_exp(exponent), weights

    def _to_input(self, coords: Tensor) -> Tensor:
        stride = torch.tensor(self.stride, dtype=torch.float32, device=coords.device).to(coords.dtype)
        return coords * stride


class UDPHeatmap(_HeatmapCodec):
    """The UDP Gaussian heatmap (mmpose ``UDPHeatmap(heatmap_type='gaussian')``), batched.

    ``x_hm = x_in / s`` with ``s = (w - 1) / (W - 1)`` (float32, as mmpose). The Gaussian is centred on the
    sub-pixel ``x_hm`` but drawn in the same integer window (and with the same in-bounds test) as
    :class:`MSRAHeatmap`; its values are computed in float64 and stored as float32 — bit-identical to mmpose.

    Decoding defaults to ``"udp"`` (:func:`refine_dark_udp`). With ``convention="official"`` decoded keypoints
    are ``x_hm * s`` — the exact inverse of the encoding, and the input space of the UDP / DarkPose ``(size-1)``
    affine (:func:`~hrnet_backbones.keypoints.transform_preds` with ``udp=True``). ``convention="mmpose"``
    returns mmpose's ``x_hm / (W - 1) * w`` (pair it with mmpose's ``/ input_size * box`` back-projection).
    """

    default_refine: Refine = "udp"

    def __init__(
        self,
        input_size: Sequence[int],
        heatmap_size: Sequence[int],
        sigma: float = 2.0,
        blur_kernel_size: int = 11,
        convention: Convention = "official",
    ) -> None:
        super().__init__(input_size, heatmap_size, sigma, blur_kernel_size, convention)
        (w, h), (ww, hh) = self.input_size, self.heatmap_size
        if ww < 2 or hh < 2:
            raise ValueError(
                f"UDPHeatmap needs a heatmap of at least 2x2 pixels, got heatmap_size {(ww, hh)}"
            )
        self.scale_factor = (float(np.float32((w - 1) / (ww - 1))), float(np.float32((h - 1) / (hh - 1))))

    def _encode(self, kp: ArrayLike, vis: ArrayLike, finite: ArrayLike) -> tuple[ArrayLike, ArrayLike]:
        n, k = kp.shape[:2]
        kp_hm = kp / self._constant("scale", kp, lambda: torch.tensor(self.scale_factor, dtype=torch.float64))
        mu, weights, drawn = self._integer_centres(kp_hm, vis, finite)
        r, (w, _) = self.window, self.heatmap_size
        m, size = n * k, 2 * self.window + 1
        # Window index j = dx + r against the centre r + (kp - mu), in float64 like mmpose.
        as_np = isinstance(kp, np.ndarray)
        f64 = (lambda v: v.astype(np.float64)) if as_np else (lambda v: v.double())
        centre = r + (f64(kp_hm.reshape(-1, 2)) - f64(mu))
        j = _arange(kp, size, torch.float64)
        gy = _torch_exp(-((j - centre[:, 1, None]) ** 2) / (2 * self.sigma**2))  # (N*K, 2r+1)
        dx = _arange(kp, w) - mu[:, :1]  # (N*K, W): full-width rows
        gx = _torch_exp(-((f64(dx + r) - centre[:, :1]) ** 2) / (2 * self.sigma**2))
        gx = gx * (abs(dx) <= r)
        table = np.zeros((m, size + 2, w), kp.dtype) if as_np else kp.new_zeros((m, size + 2, w))
        table[:, 1:-1] = gy[:, :, None] * gx[:, None, :]
        first = _arange(kp, m) * (size + 2) + 1
        table = table.reshape(m * (size + 2), w)
        return self._assemble_rows(table, first, mu[:, 1], drawn, n, k), weights

    def _to_input(self, coords: Tensor) -> Tensor:
        if self.convention == "mmpose":
            (w, h), (ww, hh) = self.input_size, self.heatmap_size
            denom = torch.tensor((ww - 1.0, hh - 1.0), dtype=torch.float64, device=coords.device)
            size = torch.tensor((float(w), float(h)), dtype=torch.float64, device=coords.device)
            return (coords.double() / denom * size).to(coords.dtype)
        return coords * torch.tensor(self.scale_factor, dtype=coords.dtype, device=coords.device)
