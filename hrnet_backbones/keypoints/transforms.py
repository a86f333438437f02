"""Top-down transforms: person box -> centre/scale, the crop affine (with rotation), image warping and mapping
keypoints back to the original image. Batched torch; NumPy in gives NumPy out.

Conventions: points are ``(x, y)``; sizes ``(w, h)``; ``center`` is ``(..., 2)`` in original-image pixels and
``scale`` is ``(..., 2)`` box ``(w, h)`` in units of ``pixel_std = 200`` px (the HRNet / DarkPose convention;
pass ``pixel_std=1`` to work in pixels). Integer pixel coordinates are pixel centres, as in OpenCV.

The crop affine is the similarity of the official ``get_affine_transform``: it maps the box centre to the
output centre, scales by ``output_w / box_w`` and rotates by ``rot`` degrees (counter-clockwise in the image as
displayed, i.e. the crop shows the person rotated clockwise, as in the official data augmentation). The box
height is not used: :func:`box_to_center_scale` already gave the box the output's aspect ratio, so people are
never stretched. With ``udp=True`` it is the ``(size - 1)`` variant of UDP / DarkPose: box width ``box_w - 1``
maps to ``output_w - 1`` and the centre to ``((output_w - 1) / 2, (output_h - 1) / 2)``.

The closed form replaces the official three-point construction plus ``cv2.getAffineTransform``; the two agree
to float rounding (the official one rounds its three points to float32).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ._common import ArrayLike, accurate_dtype, as_tensor, size_pair, to_output

__all__ = [
    "affine_transform_points",
    "box_to_center_scale",
    "crop_image",
    "get_affine_transform",
    "transform_preds",
    "warp_affine",
]


def _float(x: Tensor) -> Tensor:
    return (
        x if x.is_floating_point() and x.dtype != torch.float16 and x.dtype != torch.bfloat16 else x.float()
    )


def box_to_center_scale(
    box_xywh: ArrayLike, aspect_ratio: float, padding: float = 1.25, pixel_std: float = 200.0
) -> tuple[ArrayLike, ArrayLike]:
    """Person boxes to (centre, scale) with the model's aspect ratio (official ``_xywh2cs``).

    The box is grown — never shrunk, never stretched — to ``w / h == aspect_ratio`` around its centre, then
    padded by ``padding``.

    Args:
        box_xywh: ``(..., 4)`` boxes ``(x, y, w, h)`` with ``(x, y)`` the top-left corner, in pixels.
        aspect_ratio: model input ``w / h`` (192 / 256 = 0.75 for a 256x192 model).
        padding: context factor (1.25 in HRNet's COCO pipeline).
        pixel_std: unit of the returned scale (200 for the official code, 1 for pixels).

    Returns:
        ``center (..., 2)`` and ``scale (..., 2)`` = padded box ``(w, h) / pixel_std``.
    """
    if not aspect_ratio > 0 or not math.isfinite(aspect_ratio):
        raise ValueError(f"aspect_ratio must be a positive finite number (input w / h), got {aspect_ratio}")
    if isinstance(box_xywh, Tensor):
        box, xp = _float(box_xywh), torch
    else:  # NumPy in: computed in NumPy, with the torch ops' rounding (cheaper for a data sample's one box)
        box, xp = as_tensor(box_xywh, "box_xywh")[0].numpy(), np
        if box.dtype not in (np.float32, np.float64):
            box = box.astype(np.float32)
    if box.shape[-1:] != (4,):
        raise ValueError(f"box_xywh must have shape (..., 4) = (x, y, w, h), got {tuple(box.shape)}")
    # (..., 1) slices, not scalars: NumPy 1.x would compute float32 scalars with Python floats in float64
    x, y, w, h = box[..., 0:1], box[..., 1:2], box[..., 2:3], box[..., 3:4]
    center = xp.concatenate((x + w * 0.5, y + h * 0.5), -1)
    wider = w > aspect_ratio * h
    new_w = xp.where(wider, w, h * aspect_ratio)
    new_h = xp.where(wider, w / aspect_ratio, h)
    scale = xp.concatenate((new_w, new_h), -1) * (padding / pixel_std)
    return center, scale


def _similarity(
    center: Tensor,
    scale: Tensor,
    rot: Tensor,
    output_size: tuple[int, int],
    udp: bool,
    pixel_std: float,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(k, theta, c, d)`` of ``dst = k R(-theta) (src - c) + d`` in an accurate dtype."""
    out_w, out_h = output_size
    src_w = scale[..., 0] * pixel_std
    if udp:
        k = (out_w - 1.0) / (src_w - 1.0)
        d = torch.tensor(((out_w - 1) * 0.5, (out_h - 1) * 0.5), dtype=scale.dtype, device=scale.device)
    else:
        k = out_w / src_w
        d = torch.tensor((out_w * 0.5, out_h * 0.5), dtype=scale.dtype, device=scale.device)
    theta = rot * (math.pi / 180.0)
    return k, theta, center, d


def _prepare_cs(
    center: ArrayLike, scale: ArrayLike, rot: ArrayLike | float
) -> tuple[Tensor, Tensor, Tensor, bool, torch.dtype]:
    c, as_np = as_tensor(center, "center")
    s, _ = as_tensor(scale, "scale")
    if c.shape[-1:] != (2,):
        raise ValueError(f"center must have shape (..., 2), got {tuple(c.shape)}")
    if s.ndim == c.ndim - 1:  # one number per box: a square scale
        s = torch.stack((s, s), dim=-1)
    if s.shape[-1:] != (2,):
        raise ValueError(
            f"scale must have shape (..., 2) (box w, h in pixel_std units), got {tuple(s.shape)}"
        )
    out_dtype = _float(c).dtype
    acc = accurate_dtype(c.device)
    r = rot if isinstance(rot, Tensor) else as_tensor(rot, "rot")[0]
    c, s, r = c.to(acc), s.to(device=c.device, dtype=acc), r.to(device=c.device, dtype=acc)
    c, s = torch.broadcast_tensors(c, s)
    return c, s, r, as_np, out_dtype


def _affine_matrix(
    center: ArrayLike,
    scale: ArrayLike,
    rot: ArrayLike | float,
    output_size: Sequence[int],
    inv: bool,
    udp: bool,
    pixel_std: float,
) -> tuple[Tensor, bool, torch.dtype]:
    """The matrices in an accurate dtype, plus whether the input was NumPy and the dtype to return."""
    output_size = size_pair(output_size, "output_size")
    c, s, r, as_np, out_dtype = _prepare_cs(center, scale, rot)
    k, theta, c, d = _similarity(c, s, r, output_size, udp, pixel_std)
    k, theta = torch.broadcast_tensors(k, theta)
    cos, sin = torch.cos(theta), torch.sin(theta)
    # forward: k R(-theta), inverse: R(theta) / k
    sign = -1.0 if inv else 1.0
    a = torch.stack((cos, sign * sin, -sign * sin, cos), dim=-1).view(*k.shape, 2, 2)
    if not inv:
        a = a * k[..., None, None]
        t = d - (a @ c[..., None])[..., 0]
    else:
        a = a / k[..., None, None]
        t = c - (a @ d[..., None])[..., 0]
    return torch.cat((a, t[..., None]), dim=-1), as_np, out_dtype


def get_affine_transform(
    center: ArrayLike,
    scale: ArrayLike,
    rot: ArrayLike | float,
    output_size: Sequence[int],
    *,
    inv: bool = False,
    udp: bool = False,
    pixel_std: float = 200.0,
) -> ArrayLike:
    """The crop affine, batched: ``(..., 2, 3)`` matrices like ``cv2.getAffineTransform``'s.

    Args:
        center: ``(..., 2)`` box centres in original-image pixels.
        scale: ``(..., 2)`` box sizes ``(w, h)`` in ``pixel_std`` units (only ``w`` is used); ``(...)`` means
            square boxes.
        rot: rotation in degrees, a number or ``(...)``.
        output_size: ``(w, h)`` of the crop (input size) or of the heatmap.
        inv: return the inverse (crop -> original image).
        udp: the ``(size - 1)`` variant of UDP / DarkPose.
        pixel_std: unit of ``scale``.

    Returns:
        ``(..., 2, 3)`` in ``center``'s float dtype (float32 for integer input).
    """
    if (
        isinstance(center, np.ndarray)
        and center.shape == (2,)
        and isinstance(scale, np.ndarray)
        and scale.shape in ((2,), ())
        and isinstance(rot, (int, float))
    ):  # one box, as each data sample has
        m = _affine_one(center, scale, rot, size_pair(output_size, "output_size"), inv, udp, pixel_std)
        return m.astype(center.dtype if center.dtype in (np.float32, np.float64) else np.float32, copy=False)
    m, as_np, out_dtype = _affine_matrix(center, scale, rot, output_size, inv, udp, pixel_std)
    return to_output(m.to(out_dtype), as_np)


def _affine_one(
    center: np.ndarray,
    scale: np.ndarray,
    rot: float,
    output_size: tuple[int, int],
    inv: bool,
    udp: bool,
    pixel_std: float,
) -> np.ndarray:
    """:func:`_affine_matrix` for one box in Python floats (float64), ``(2, 3)``: the same arithmetic without
    the torch dispatch, which costs far more than the arithmetic on a 2x3 matrix."""
    out_w, out_h = output_size
    cx, cy = float(center[0]), float(center[1])
    src_w = float(scale.reshape(-1)[0]) * pixel_std
    # k as torch evaluates number / tensor (reciprocal, then product): bit-identical to the batched matrices
    if udp:
        k, dx, dy = (1.0 / (src_w - 1.0)) * (out_w - 1.0), (out_w - 1) * 0.5, (out_h - 1) * 0.5
    else:
        k, dx, dy = (1.0 / src_w) * out_w, out_w * 0.5, out_h * 0.5
    cos, sin = 1.0, 0.0
    if rot != 0:  # torch's cos and sin, which round differently from libm's for ~0.1 % of the angles
        theta = torch.tensor(rot * (math.pi / 180.0), dtype=torch.float64)
        cos, sin = torch.cos(theta).item(), torch.sin(theta).item()
    if not inv:  # k R(-theta), mapping the centre to d
        a = (cos * k, sin * k, -sin * k, cos * k)
        t = (dx - (a[0] * cx + a[1] * cy), dy - (a[2] * cx + a[3] * cy))
    else:  # R(theta) / k, mapping d to the centre
        a = (cos / k, -sin / k, sin / k, cos / k)
        t = (cx - (a[0] * dx + a[1] * dy), cy - (a[2] * dx + a[3] * dy))
    return np.array(((a[0], a[1], t[0]), (a[2], a[3], t[1])))


def _apply_affine(xy: Tensor, trans: Tensor) -> Tensor:
    return xy @ trans[..., :2].transpose(-1, -2) + trans[..., None, :, 2]


def affine_transform_points(points: ArrayLike, trans: ArrayLike) -> ArrayLike:
    """Apply ``(..., 2, 3)`` affine matrices to ``(..., K, 2)`` points (extra columns are kept as they are).
    Evaluated in float64; returned in the points' float dtype."""
    p, as_np = as_tensor(points, "points")
    t, _ = as_tensor(trans, "trans")
    if p.ndim < 2 or p.shape[-1] < 2 or t.shape[-2:] != (2, 3):
        raise ValueError(
            f"need points (..., K, 2) and trans (..., 2, 3), got {tuple(p.shape)} and {tuple(t.shape)}"
        )
    p = _float(p)
    acc = accurate_dtype(p.device)
    out = _apply_affine(p[..., :2].to(acc), t.to(device=p.device, dtype=acc)).to(p.dtype)
    if p.shape[-1] > 2:
        out = torch.cat((out, p[..., 2:]), dim=-1)
    return to_output(out, as_np)


def transform_preds(
    coords: ArrayLike,
    center: ArrayLike,
    scale: ArrayLike,
    output_size: Sequence[int],
    *,
    rot: ArrayLike | float = 0.0,
    udp: bool = False,
    pixel_std: float = 200.0,
) -> ArrayLike:
    """Map crop-space keypoints back to the original image (official ``transform_preds``, batched).

    Args:
        coords: ``(N, K, 2)`` keypoints in the space whose size is ``output_size``: heatmap coordinates with
            ``output_size=(W, H)``, or input-crop coordinates (what the codecs' ``decode`` returns) with
            ``output_size=(w, h)`` — both give the same image points.
        center, scale: ``(N, 2)`` of the crop (see :func:`get_affine_transform`).
        rot: the crop's rotation in degrees (0 at test time).
        udp: use the ``(size - 1)`` affine (UDP / DarkPose); pair it with :class:`UDPHeatmap`'s default decoding.

    Returns:
        ``(N, K, 2)`` original-image ``(x, y)``.
    """
    q, as_np = as_tensor(coords, "coords")
    if q.ndim < 2 or q.shape[-1] < 2:
        raise ValueError(f"coords must have shape (N, K, 2), got {tuple(q.shape)}")
    q = _float(q)
    if isinstance(rot, (Tensor, np.ndarray)) or float(rot) != 0.0:
        trans, _, _ = _affine_matrix(center, scale, rot, output_size, True, udp, pixel_std)
        _check_boxes(trans.shape[:-2], q)
        out = _apply_affine(q[..., :2].to(trans.dtype), trans.to(q.device))
        return to_output(out.to(q.dtype), as_np)
    # The test-time case, no rotation: p = c + (q - d) * box_w / out_w, without building matrices.
    c, _ = as_tensor(center, "center")
    s, _ = as_tensor(scale, "scale")
    if c.shape[-1:] != (2,) or s.shape not in (c.shape, c.shape[:-1]):
        raise ValueError(
            f"need center (N, 2) and scale (N, 2) or (N,), got {tuple(c.shape)} and {tuple(s.shape)}"
        )
    _check_boxes(c.shape[:-1], q)
    out_w, out_h = size_pair(output_size, "output_size")
    acc = accurate_dtype(q.device)
    box_w = (s[..., 0] if s.ndim == c.ndim else s).to(device=q.device, dtype=acc) * pixel_std
    if udp:
        per_px, d = (box_w - 1) / (out_w - 1), ((out_w - 1) * 0.5, (out_h - 1) * 0.5)
    else:
        per_px, d = box_w / out_w, (out_w * 0.5, out_h * 0.5)
    shifted = q[..., :2].to(acc) - torch.tensor(d, dtype=acc, device=q.device)
    out = c.to(device=q.device, dtype=acc)[..., None, :] + shifted * per_px[..., None, None]
    return to_output(out.to(q.dtype), as_np)


def _check_boxes(boxes: tuple[int, ...], q: Tensor) -> None:
    if tuple(boxes) != tuple(q.shape[:-2]):
        raise ValueError(
            f"coords {tuple(q.shape)} and center/scale give {tuple(boxes)} boxes; need one box per instance (N, 2)"
        )


def _invert_affine(trans: ArrayLike) -> ArrayLike:
    """Inverses of ``(..., 2, 3)`` affines, NumPy or torch; one NumPy ``(2, 3)`` matrix in Python floats."""
    one = isinstance(trans, np.ndarray) and trans.shape == (2, 3)
    if one:  # the same float64 arithmetic without NumPy's per-call cost
        (a, b, t0), (c, d, t1) = trans.tolist()
    else:
        a, b, t0 = trans[..., 0, 0], trans[..., 0, 1], trans[..., 0, 2]
        c, d, t1 = trans[..., 1, 0], trans[..., 1, 1], trans[..., 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    # -(inverse @ t) written out: NumPy's matmul rounds differently (fused multiply-adds) from torch's
    inv = (ia, ib, -(ia * t0 + ib * t1), ic, id_, -(ic * t0 + id_ * t1))
    if one:
        return np.array(inv).reshape(2, 3)
    xp = np if isinstance(trans, np.ndarray) else torch
    return xp.stack(inv, -1).reshape(*trans.shape[:-2], 2, 3)


def _sampled_region(
    inv: np.ndarray, in_w: int, in_h: int, out_w: int, out_h: int
) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)``: the part of an ``in_w x in_h`` image that the bilinear taps of the warps with the
    inverse affines ``inv`` (N, 2, 3) can reach. Converting and sampling only that part of a large photo costs
    what a person's crop costs, not what the photo costs; taps outside the image read 0 either way, so the
    result is the same up to float rounding of the sampling positions (see :func:`warp_affine`)."""
    corners = np.array(((0, out_w - 1, 0, out_w - 1), (0, 0, out_h - 1, out_h - 1), (1, 1, 1, 1)), inv.dtype)
    src = inv @ corners  # (N, 2, 4): where the corner pixels of the output sample the input
    if not np.isfinite(src).all():
        return 0, 0, in_w, in_h
    lo = (np.floor(src.min(axis=(0, 2))) - 1).tolist()  # one pixel of margin for the taps at floor(x), x + 1
    hi = (np.ceil(src.max(axis=(0, 2))) + 2).tolist()
    x0 = int(min(max(lo[0], 0), in_w - 1))
    y0 = int(min(max(lo[1], 0), in_h - 1))
    x1 = int(max(min(hi[0], in_w), x0 + 1))  # never empty: a warp entirely outside still samples zeros
    y1 = int(max(min(hi[1], in_h), y0 + 1))
    return x0, y0, x1, y1


def _sampling_grid(
    inv: ArrayLike, size: ArrayLike, xs: ArrayLike, ys: ArrayLike, out: np.ndarray | None = None
) -> ArrayLike:
    """``(N, 2, h, w)`` ``grid_sample`` positions (NumPy or torch, as ``inv``) of the output pixels ``xs, ys``,
    computed in ``inv``'s dtype (written into ``out``, NumPy, if given).

    Pixel-centre coordinates to grid_sample's [-1, 1] (align_corners=False): g = (2 * src + 1) / size - 1 with
    src = A @ (x, y) + t, folded into one affine per axis and evaluated as an outer sum of the row and column
    terms (a (N, H*W, 2) matmul in float64 costs several times the sampling itself)."""
    recip = 1 / size  # as torch evaluates 2 / size: the same rounding in NumPy and torch
    coef = inv * (recip * 2)[None, :, None]  # (n, 2, 3): rows for g_x and g_y
    offset = coef[:, :, 2] + recip - 1  # (n, 2)
    col = coef[:, :, 0, None] * xs  # (n, 2, w)
    row = coef[:, :, 1, None] * ys + offset[:, :, None]  # (n, 2, h)
    if out is not None:
        return np.add(row[:, :, :, None], col[:, :, None, :], out=out)
    return row[:, :, :, None] + col[:, :, None, :]


def warp_affine(
    images: ArrayLike, trans: ArrayLike, output_size: Sequence[int], *, dtype: torch.dtype | None = None
) -> ArrayLike:
    """``cv2.warpAffine(img, M, output_size, flags=INTER_LINEAR)`` with a constant-0 border, batched.

    Output pixel ``(x, y)`` takes the bilinear interpolation of the input at ``M^{-1} (x, y)``, with pixel
    centres at integer coordinates and pixels outside the input counted as 0 (``F.grid_sample``,
    ``align_corners=False``, ``padding_mode="zeros"``). Unlike OpenCV, the sampling position is not rounded to
    1/32 pixel.

    Args:
        images: ``(N, C, H, W)`` or ``(C, H, W)``; float, or uint8 (returned rounded to uint8).
        trans: ``(N, 2, 3)`` (or ``(2, 3)``) forward affines, input pixels -> output pixels.
        output_size: ``(w, h)`` of the output.
        dtype: of the output (default: the input's). A float dtype with a uint8 image returns the samples
            unrounded, in 0..255. Only the part of the image that the warp samples is converted (or, for a
            NumPy image, which may be read-only, copied).

    Returns:
        ``(N, C, h, w)`` (or ``(C, h, w)``).
    """
    out_w, out_h = size_pair(output_size, "output_size")
    # A NumPy image stays NumPy until its sampled region is cut out: a whole read-only photo is never copied.
    img, as_np = (images, True) if isinstance(images, np.ndarray) else as_tensor(images, "images")
    single = img.ndim == 3
    if single:
        img = img[None]
    if img.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W) or (C, H, W), got {tuple(img.shape)}")
    t, _ = as_tensor(trans, "trans")
    if t.ndim == 2:
        t = t[None]
    if t.shape[-2:] != (2, 3) or t.shape[0] not in (1, img.shape[0]):
        raise ValueError(f"trans must be (N, 2, 3) with N = {img.shape[0]} (or 1), got {tuple(t.shape)}")
    n, _, in_h, in_w = img.shape
    # float64 images are sampled in float64, all others in float32
    work_dtype = torch.float64 if img.dtype == (np.float64 if as_np else torch.float64) else torch.float32
    if as_np or (img.device.type == "cpu" and not t.requires_grad):
        # The per-box geometry in NumPy float64 (torch's dispatch costs more than the arithmetic on 2x3
        # matrices), and only the sampled region of the image is converted (on a GPU the bounds would cost a
        # device sync).
        m = t.detach().to("cpu", torch.float64).numpy()
        inv = np.broadcast_to(_invert_affine(m[0] if len(m) == 1 else m), (n, 2, 3))
        x0, y0, x1, y1 = _sampled_region(inv, in_w, in_h, out_w, out_h)
        img, in_w, in_h = img[..., y0:y1, x0:x1], x1 - x0, y1 - y0
        if as_np:
            img = torch.from_numpy(np.array(img))  # a copy of the region: Pillow's arrays are read-only
        inv = inv - np.array(((0.0, 0.0, x0), (0.0, 0.0, y0)))
        xs, ys = np.arange(out_w, dtype=np.float64), np.arange(out_h, dtype=np.float64)
        out = np.empty((n, 2, out_h, out_w), np.float64 if work_dtype == torch.float64 else np.float32)
        grid = torch.from_numpy(_sampling_grid(inv, np.array((in_w, in_h), dtype=np.float64), xs, ys, out))
    else:
        device, acc = img.device, accurate_dtype(img.device)
        inv = _invert_affine(t.to(device=device, dtype=acc)).expand(n, 2, 3)
        size = torch.tensor((in_w, in_h), dtype=acc, device=device)
        xs, ys = torch.arange(out_w, dtype=acc, device=device), torch.arange(out_h, dtype=acc, device=device)
        grid = _sampling_grid(inv, size, xs, ys)
    orig_dtype = img.dtype if dtype is None else dtype
    work = img.to(work_dtype)
    grid = grid.to(work_dtype).permute(0, 2, 3, 1)  # (n, h, w, 2)
    out = F.grid_sample(work, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if orig_dtype == torch.uint8:
        out = out.round().clamp(0, 255).to(torch.uint8)
    elif out.dtype != orig_dtype and orig_dtype.is_floating_point:
        out = out.to(orig_dtype)
    if single:
        out = out[0]
    return to_output(out, as_np)


def crop_image(
    images: ArrayLike,
    center: ArrayLike,
    scale: ArrayLike,
    output_size: Sequence[int],
    *,
    rot: ArrayLike | float = 0.0,
    udp: bool = False,
    pixel_std: float = 200.0,
) -> ArrayLike:
    """Cut the model input out of the original images (official ``crop`` / the ``warpAffine`` in
    ``JointsDataset``): :func:`get_affine_transform` then :func:`warp_affine`.

    Args:
        images: ``(N, C, H, W)``, one image per box (repeat an image for several people).
        center, scale: ``(N, 2)``; rot: degrees.
        output_size: ``(w, h)`` of the model input.
    """
    trans = get_affine_transform(center, scale, rot, output_size, udp=udp, pixel_std=pixel_std)
    return warp_affine(images, trans, output_size)
