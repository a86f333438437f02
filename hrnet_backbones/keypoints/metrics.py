"""Keypoint metrics: OKS (COCO), PCK (official heatmap version and coordinate version), AUC, EPE, and the
facial-landmark NME with failure rate and AUC. Torch or NumPy in; evaluated in float64.

Reproduced quirks, kept so numbers compare with published logs:

* :func:`pck_accuracy` (official HRNet ``accuracy``) with ``official_quirks=True`` (default): the norm is
  ``[H, W] / 10`` applied to ``(x, y)`` — x is divided by H/10 and y by W/10 —, the ``thr`` argument is ignored
  (the official code always calls ``dist_acc`` with its default 0.5), and a target joint counts only if its
  argmax has ``x > 1 and y > 1`` (this drops the all-zero maps of invisible joints, which argmax to (0, 0), but
  also real joints on the first two rows/columns). ``official_quirks=False`` uses ``[W, H] / 10``, honours
  ``thr`` and counts target maps whose maximum is > 0.
* :func:`keypoint_pck_accuracy`, :func:`keypoint_auc`, :func:`keypoint_epe` follow mmpose's
  ``keypoint_eval``: distances strictly below the threshold count, keypoints whose every sample is masked give
  accuracy -1 and are left out of the average. Instances with a zero norm factor are skipped (mmpose replaces
  negative norms by 1e6; we skip every non-positive norm).
* :func:`nme`: mean over valid landmarks of ``||pred - gt|| / norm`` (mmpose ``keypoint_nme``); with the full
  mask the per-sample values equal HRNet-Facial ``compute_nme``.
* :func:`coco_keypoint_stats` reproduces pycocotools' keypoint AP/AR (greedy matching, 101-point
  interpolated precision) from arrays, without JSON files.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ._common import ArrayLike, as_tensor, check_heatmaps, to_output
from .codecs import get_heatmap_maximum
from .datasets import COCO_KEYPOINTS, KeypointLayout, get_layout

__all__ = [
    "auc_nme",
    "coco_keypoint_stats",
    "failure_rate",
    "keypoint_auc",
    "keypoint_epe",
    "keypoint_pck_accuracy",
    "nme",
    "oks",
    "oks_matrix",
    "pck_accuracy",
]

_EPS = float(np.spacing(1))  # pycocotools adds np.spacing(1) to the area


def _f64(x: ArrayLike | Sequence[float], name: str) -> tuple[Tensor, bool]:
    t, as_np = as_tensor(x if isinstance(x, (Tensor, np.ndarray)) else np.asarray(x), name)
    return t.detach().to(torch.float64), as_np


def _sigmas(sigmas: ArrayLike | Sequence[float] | None, k: int, device: torch.device) -> Tensor:
    s, _ = _f64(COCO_KEYPOINTS.sigmas if sigmas is None else sigmas, "sigmas")
    if s.shape != (k,):
        raise ValueError(f"sigmas must have shape (K,) = ({k},), got {tuple(s.shape)}")
    return s.to(device)


# ----------------------------------------------------------------------------------------------------------
# OKS
# ----------------------------------------------------------------------------------------------------------


def oks_matrix(
    dt_keypoints: ArrayLike,
    gt_keypoints: ArrayLike,
    gt_areas: ArrayLike,
    sigmas: ArrayLike | Sequence[float] | None = None,
    gt_bboxes: ArrayLike | None = None,
) -> ArrayLike:
    """Object keypoint similarity of every detection against every ground truth (``COCOeval.computeOks``).

    ``oks = mean over labelled gt keypoints (v > 0) of exp(-d^2 / (2 (area + eps) (2 sigma)^2))``. A ground
    truth without labelled keypoints is compared, like pycocotools, through the distance of each detected
    keypoint to its box grown by one box size on every side (then needs ``gt_bboxes``).

    Args:
        dt_keypoints: ``(D, K, 2)`` or ``(D, K, 3)`` detections (a third column, the score, is ignored).
        gt_keypoints: ``(G, K, 3)`` ground truth ``(x, y, v)``.
        gt_areas: ``(G,)`` segment areas.
        sigmas: ``(K,)``, default the COCO sigmas.
        gt_bboxes: ``(G, 4)`` ``(x, y, w, h)``, used only for ground truths without labelled keypoints.

    Returns:
        ``(D, G)`` float64.
    """
    dt, as_np = _f64(dt_keypoints, "dt_keypoints")
    gt, _ = _f64(gt_keypoints, "gt_keypoints")
    area, _ = _f64(gt_areas, "gt_areas")
    if dt.ndim != 3 or dt.shape[-1] < 2 or gt.ndim != 3 or gt.shape[-1] != 3 or dt.shape[1] != gt.shape[1]:
        raise ValueError(
            f"need dt_keypoints (D, K, 2|3) and gt_keypoints (G, K, 3) with the same K, "
            f"got {tuple(dt.shape)} and {tuple(gt.shape)}"
        )
    if area.shape != (gt.shape[0],):
        raise ValueError(f"gt_areas must have shape (G,) = ({gt.shape[0]},), got {tuple(area.shape)}")
    k = gt.shape[1]
    var = (2 * _sigmas(sigmas, k, gt.device)) ** 2
    labelled = gt[..., 2] > 0  # (G, K)
    dx = dt[:, None, :, 0] - gt[None, :, :, 0]  # (D, G, K)
    dy = dt[:, None, :, 1] - gt[None, :, :, 1]
    no_labels = ~labelled.any(dim=1)
    if bool(no_labels.any()):
        if gt_bboxes is None:
            raise ValueError(
                "a ground truth has no labelled keypoints (all v = 0); pass gt_bboxes to score it"
            )
        bb, _ = _f64(gt_bboxes, "gt_bboxes")
        x0, x1 = bb[:, 0] - bb[:, 2], bb[:, 0] + 2 * bb[:, 2]
        y0, y1 = bb[:, 1] - bb[:, 3], bb[:, 1] + 2 * bb[:, 3]
        xd, yd = dt[:, None, :, 0], dt[:, None, :, 1]
        bx = (x0[None, :, None] - xd).clamp_min(0) + (xd - x1[None, :, None]).clamp_min(0)
        by = (y0[None, :, None] - yd).clamp_min(0) + (yd - y1[None, :, None]).clamp_min(0)
        nl = no_labels[None, :, None]
        dx, dy = torch.where(nl, bx, dx), torch.where(nl, by, dy)
    e = (dx**2 + dy**2) / var / (area[None, :, None] + _EPS) / 2
    counted = torch.where(no_labels[:, None], True, labelled)[None]  # (1, G, K)
    sim = torch.where(counted, torch.exp(-e), 0.0).sum(-1) / counted.sum(-1)
    return to_output(sim, as_np)


def oks(
    pred: ArrayLike,
    gt: ArrayLike,
    visible: ArrayLike,
    area: ArrayLike,
    sigmas: ArrayLike | Sequence[float] | None = None,
) -> ArrayLike:
    """OKS of each prediction against its own ground truth: ``(N, K, 2)``, ``(N, K, 2)``, ``visible (N, K)``,
    ``area (N,)`` -> ``(N,)`` (NaN where no keypoint is visible)."""
    p, as_np = _f64(pred, "pred")
    g, _ = _f64(gt, "gt")
    v, _ = _f64(visible, "visible")
    a, _ = _f64(area, "area")
    if p.ndim != 3 or p.shape[:2] != g.shape[:2] or v.shape != p.shape[:2] or a.shape != p.shape[:1]:
        raise ValueError(
            f"need pred, gt (N, K, 2), visible (N, K) and area (N,), got {tuple(p.shape)}, {tuple(g.shape)}, "
            f"{tuple(v.shape)}, {tuple(a.shape)}"
        )
    var = (2 * _sigmas(sigmas, p.shape[1], p.device)) ** 2
    d2 = ((p[..., :2] - g[..., :2]) ** 2).sum(-1)
    e = d2 / var / (a[:, None] + _EPS) / 2
    m = v > 0
    return to_output(torch.where(m, torch.exp(-e), 0.0).sum(-1) / m.sum(-1), as_np)


# ----------------------------------------------------------------------------------------------------------
# PCK / AUC / EPE
# ----------------------------------------------------------------------------------------------------------


def pck_accuracy(
    output: ArrayLike, target: ArrayLike, thr: float = 0.5, *, official_quirks: bool = True
) -> tuple[np.ndarray, float, int, ArrayLike]:
    """The official training-log PCK from heatmaps (HRNet ``core/evaluate.py::accuracy``).

    Both output and target are decoded by argmax (maxima ``<= 0`` give (0, 0)); distances are normalised by
    ``[H, W] / 10`` and counted below 0.5 — see the module docstring for the quirks and ``official_quirks``.

    Returns:
        ``acc (K + 1,)`` with the average in ``acc[0]`` and per-joint accuracy (``-1`` for joints with no valid
        target) after it; ``avg_acc``; ``cnt`` (joints with a valid target); ``pred (N, K, 2)`` argmax coords.
    """
    out, as_np = as_tensor(output, "output")
    tgt, _ = as_tensor(target, "target")
    check_heatmaps(out, "output")
    check_heatmaps(tgt, "target")
    if out.shape != tgt.shape:
        raise ValueError(
            f"output and target must have the same shape, got {tuple(out.shape)} and {tuple(tgt.shape)}"
        )
    n, k, h, w = out.shape
    pred, _ = get_heatmap_maximum(out)
    gt, gt_max = get_heatmap_maximum(tgt)
    pred64, gt64 = pred.double(), gt.double()
    if official_quirks:
        norm = torch.tensor((h / 10.0, w / 10.0), dtype=torch.float64)
        valid = (gt64[..., 0] > 1) & (gt64[..., 1] > 1)
        thr = 0.5
    else:
        norm = torch.tensor((w / 10.0, h / 10.0), dtype=torch.float64)
        valid = gt_max > 0
    norm = norm.to(pred64.device)
    dist = torch.linalg.vector_norm(pred64 / norm - gt64 / norm, dim=-1)  # (N, K)
    acc = np.zeros(k + 1)
    total, cnt = 0.0, 0
    for j in range(k):
        v = valid[:, j]
        nv = int(v.sum())
        if nv == 0:
            acc[j + 1] = -1
            continue
        acc[j + 1] = float((dist[:, j][v] < thr).sum()) / nv
        total += acc[j + 1]
        cnt += 1
    avg = total / cnt if cnt else 0.0
    if cnt:
        acc[0] = avg
    return acc, avg, cnt, to_output(pred, as_np)


def _norm_distances(pred: Tensor, gt: Tensor, mask: Tensor, norm: Tensor) -> Tensor:
    """mmpose ``_calc_distances`` as (N, K) with NaN where invalid."""
    valid = (mask > 0) & (norm > 0).all(dim=1, keepdim=True)
    safe = torch.where(norm > 0, norm, 1.0)
    d = torch.linalg.vector_norm((pred[..., :2] - gt[..., :2]) / safe[:, None, :], dim=-1)
    return torch.where(valid, d, torch.nan)


def _coords(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None) -> tuple[Tensor, Tensor, Tensor]:
    p, _ = _f64(pred, "pred")
    g, _ = _f64(gt, "gt")
    if p.ndim != 3 or p.shape[-1] < 2 or p.shape != g.shape:
        raise ValueError(f"pred and gt must both be (N, K, 2), got {tuple(p.shape)} and {tuple(g.shape)}")
    if mask is None:
        m = torch.ones(p.shape[:2], dtype=torch.bool)
    else:
        m, _ = as_tensor(mask, "mask")
        if m.shape != p.shape[:2]:
            raise ValueError(f"mask must be (N, K) = {tuple(p.shape[:2])}, got {tuple(m.shape)}")
        m = m > 0
    return p, g.to(p.device), m.to(p.device)


def _norm_factor(norm_factor: ArrayLike | float, n: int, device: torch.device) -> Tensor:
    nf, _ = _f64(norm_factor if not isinstance(norm_factor, (int, float)) else [norm_factor], "norm_factor")
    nf = nf.to(device)
    if nf.numel() == 1:
        return nf.reshape(1, 1).expand(n, 2)
    if nf.shape == (n,):
        return nf[:, None].expand(n, 2)
    if nf.shape != (n, 2):
        raise ValueError(f"norm_factor must be a number, (N,) or (N, 2) with N = {n}, got {tuple(nf.shape)}")
    return nf


def _pck_from_distances(d: Tensor, thr: float) -> tuple[np.ndarray, float, int]:
    valid = ~torch.isnan(d)
    counts = valid.sum(0)
    hits = ((d < thr) & valid).sum(0)
    acc = torch.where(counts > 0, hits / counts.clamp_min(1), -1.0).numpy()
    good = acc[acc >= 0]
    return acc, float(good.mean()) if good.size else 0.0, int(good.size)


def keypoint_pck_accuracy(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None, thr: float, norm_factor: ArrayLike | float
) -> tuple[np.ndarray, float, int]:
    """PCK on coordinates (mmpose ``keypoint_pck_accuracy``).

    Args:
        pred, gt: ``(N, K, 2)``.
        mask: ``(N, K)`` True/1 for keypoints to evaluate (None: all).
        thr: threshold on the normalised distance.
        norm_factor: ``(N, 2)`` per-axis normalisation (e.g. box ``(w, h)``), or ``(N,)`` / a number.

    Returns:
        ``acc (K,)`` (``-1`` where nothing is valid), the mean of the valid accuracies, their count.
    """
    p, g, m = _coords(pred, gt, mask)
    d = _norm_distances(p, g, m, _norm_factor(norm_factor, p.shape[0], p.device))
    return _pck_from_distances(d.cpu(), thr)


def keypoint_auc(
    pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None, norm_factor: float, num_thrs: int = 20
) -> float:
    """Area under the PCK curve for thresholds ``0, 1/num_thrs, ..., (num_thrs-1)/num_thrs`` of the distance
    normalised by ``norm_factor`` pixels (mmpose ``keypoint_auc``; 30 px for hand/panoptic benchmarks)."""
    p, g, m = _coords(pred, gt, mask)
    d = _norm_distances(p, g, m, _norm_factor(float(norm_factor), p.shape[0], p.device)).cpu()
    return sum(_pck_from_distances(d, i / num_thrs)[1] for i in range(num_thrs)) / num_thrs


def keypoint_epe(pred: ArrayLike, gt: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Mean end-point (Euclidean) error in pixels over the masked keypoints (mmpose ``keypoint_epe``)."""
    p, g, m = _coords(pred, gt, mask)
    d = _norm_distances(p, g, m, torch.ones(p.shape[0], 2, dtype=torch.float64, device=p.device))
    valid = ~torch.isnan(d)
    return float(d[valid].sum() / max(1, int(valid.sum())))


# ----------------------------------------------------------------------------------------------------------
# Facial landmarks: NME, failure rate, AUC
# ----------------------------------------------------------------------------------------------------------


def nme(
    pred: ArrayLike,
    gt: ArrayLike,
    mask: ArrayLike | None = None,
    *,
    layout: str | KeypointLayout | None = None,
    norm_factor: ArrayLike | None = None,
    reduction: Literal["mean", "none"] = "mean",
) -> float | ArrayLike:
    """Normalised mean error of facial landmarks.

    The normaliser is, per sample: ``norm_factor`` if given; otherwise the layout's inter-ocular distance (outer
    eye corners of the ground truth: WFLW-98 60/72, 300W-68 36/45, COFW-29 8/9). AFLW-19 is normalised by the
    face box size, which the data must supply (``norm_factor``; HRNet-Facial uses the annotation's
    ``box_size``, mmpose ``bbox_size``).

    Args:
        pred, gt: ``(N, L, 2)`` landmarks.
        mask: ``(N, L)`` landmarks to count (None: all).
        layout: ``"wflw"``, ``"300w"``, ``"cofw"``, ``"aflw"`` or a :class:`KeypointLayout` (checks ``L``).
        norm_factor: ``(N,)`` normalisers, overriding the layout's.
        reduction: ``"mean"`` — one number, the mean over all valid landmarks (mmpose ``keypoint_nme``);
            ``"none"`` — ``(N,)`` per-sample NME (HRNet-Facial ``compute_nme``; NaN for a sample with nothing
            valid), the input of :func:`failure_rate` and :func:`auc_nme`.

    Samples with a non-positive normaliser are left out.
    """
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    p, g, m = _coords(pred, gt, mask)
    as_np = isinstance(pred, np.ndarray)
    n, num = p.shape[:2]
    lay = get_layout(layout) if layout is not None else None
    if lay is not None and lay.num_keypoints != num:
        raise ValueError(f"layout {lay.name!r} has {lay.num_keypoints} landmarks, pred/gt have {num}")
    if norm_factor is not None:
        nf, _ = _f64(norm_factor, "norm_factor")
        if nf.shape != (n,):
            raise ValueError(f"norm_factor must have shape (N,) = ({n},), got {tuple(nf.shape)}")
        nf = nf.to(p.device)
    elif lay is None:
        raise ValueError("nme needs layout= (for its inter-ocular corners) or norm_factor= (N,)")
    elif lay.normalization != "interocular" or lay.norm_indices is None:
        raise ValueError(
            f"layout {lay.name!r} is normalised by the face box size; pass norm_factor= (N,) box sizes"
        )
    else:
        a, b = lay.norm_indices
        nf = torch.linalg.vector_norm(g[:, a, :2] - g[:, b, :2], dim=-1)
    d = _norm_distances(p, g, m, nf[:, None].expand(n, 2))
    valid = ~torch.isnan(d)
    if reduction == "mean":
        return float(d[valid].sum() / max(1, int(valid.sum())))
    per = torch.where(valid, d, 0.0).sum(1) / valid.sum(1)
    return to_output(per, as_np)


def _per_sample(nme_per_sample: ArrayLike, threshold: float) -> Tensor:
    e, _ = _f64(nme_per_sample, "nme_per_sample")
    if e.ndim != 1:
        raise ValueError(f"nme_per_sample must be (N,), got {tuple(e.shape)}")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    e = e[~torch.isnan(e)]
    if e.numel() == 0:
        raise ValueError("no finite per-sample NME to evaluate")
    return e


def failure_rate(nme_per_sample: ArrayLike, threshold: float = 0.10) -> float:
    """Fraction of samples whose NME exceeds ``threshold`` (0.10 for WFLW, 0.08 also reported for 300W/COFW;
    HRNet-Facial counts ``nme > threshold``). NaN samples are ignored."""
    e = _per_sample(nme_per_sample, threshold)
    return float((e > threshold).double().mean())


def auc_nme(nme_per_sample: ArrayLike, threshold: float = 0.10) -> float:
    """Area under the cumulative error distribution (fraction of samples with NME <= x) for x in
    ``[0, threshold]``, divided by ``threshold`` — the facial-landmark AUC@threshold.

    Computed exactly, ``mean(max(0, 1 - nme / threshold))``; the common Simpson-rule versions on a 1e-4 grid
    agree with it to about the grid step. NaN samples are ignored.
    """
    e = _per_sample(nme_per_sample, threshold)
    return float((1 - e / threshold).clamp(0, 1).mean())


# ----------------------------------------------------------------------------------------------------------
# COCO keypoint AP / AR from OKS
# ----------------------------------------------------------------------------------------------------------

COCO_STATS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_AREA_RANGES = {"all": (0.0, 1e10), "medium": (32.0**2, 96.0**2), "large": (96.0**2, 1e10)}


def _ids(ids: ArrayLike | Sequence[int] | None, count: int, name: str) -> np.ndarray:
    if ids is None:
        return np.zeros(count, dtype=np.int64)
    out = np.asarray(ids.detach().cpu().numpy() if isinstance(ids, Tensor) else ids).reshape(-1)
    if out.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), got {out.shape}")
    return out


def _match_image(
    oks_dg: np.ndarray, gt_ignore: np.ndarray, crowd: np.ndarray, dt_out_of_range: np.ndarray, thresholds
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy COCOeval matching for one image and one area range. Detections in score order, ground truths
    with the non-ignored ones first. Returns ``matched (T, D)`` and ``ignored (T, D)``."""
    d, g = oks_dg.shape
    matched = np.zeros((len(thresholds), d), dtype=bool)
    ignored = np.zeros((len(thresholds), d), dtype=bool)
    for t, thr in enumerate(thresholds):
        taken = np.zeros(g, dtype=bool)
        for i in range(d):
            best, m = min(thr, 1 - 1e-10), -1
            for j in range(g):
                if taken[j] and not crowd[j]:
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[j]:
                    break  # ground truths are sorted: only ignored ones are left
                if oks_dg[i, j] < best:
                    continue
                best, m = oks_dg[i, j], j
            if m > -1:
                matched[t, i], ignored[t, i], taken[m] = True, gt_ignore[m], True
        ignored[t] |= ~matched[t] & dt_out_of_range
    return matched, ignored


def coco_keypoint_stats(
    dt_keypoints: ArrayLike,
    dt_scores: ArrayLike,
    gt_keypoints: ArrayLike,
    gt_areas: ArrayLike,
    *,
    dt_image_ids: ArrayLike | Sequence[int] | None = None,
    gt_image_ids: ArrayLike | Sequence[int] | None = None,
    gt_bboxes: ArrayLike | None = None,
    gt_iscrowd: ArrayLike | Sequence[int] | None = None,
    sigmas: ArrayLike | Sequence[float] | None = None,
    max_dets: int = 20,
) -> dict[str, float]:
    """COCO keypoint AP / AR (``COCOeval(iouType='keypoints')`` ``evaluate``, ``accumulate``, ``summarize``)
    for one category, from arrays instead of JSON files.

    OKS thresholds 0.50:0.05:0.95, 101 recall points, ``max_dets`` detections per image by score, area ranges
    all / medium (32^2..96^2) / large; ground truths without labelled keypoints, crowds and those outside the
    area range are ignored, detections matched to them too. A detection's area is that of its keypoints' box,
    as ``COCO.loadRes`` computes it.

    Args:
        dt_keypoints: ``(D, K, 2|3)`` detections; dt_scores: ``(D,)``.
        gt_keypoints: ``(G, K, 3)`` ``(x, y, v)``; gt_areas: ``(G,)``.
        dt_image_ids, gt_image_ids: image of each detection / ground truth (default: one image).
        gt_bboxes: ``(G, 4)`` xywh, needed only for ground truths without labelled keypoints.
        gt_iscrowd: ``(G,)`` crowd flags (default none).

    Returns:
        ``{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}`` (``-1`` where undefined).
    """
    dt, _ = _f64(dt_keypoints, "dt_keypoints")
    gt, _ = _f64(gt_keypoints, "gt_keypoints")
    scores, _ = _f64(dt_scores, "dt_scores")
    areas, _ = _f64(gt_areas, "gt_areas")
    dt, gt, scores, areas = (t.cpu().numpy() for t in (dt, gt, scores, areas))
    if scores.shape != (dt.shape[0],):
        raise ValueError(f"dt_scores must have shape (D,) = ({dt.shape[0]},), got {scores.shape}")
    dt_img = _ids(dt_image_ids, dt.shape[0], "dt_image_ids")
    gt_img = _ids(gt_image_ids, gt.shape[0], "gt_image_ids")
    crowd_all = _ids(gt_iscrowd, gt.shape[0], "gt_iscrowd").astype(bool)
    bboxes = None if gt_bboxes is None else _f64(gt_bboxes, "gt_bboxes")[0].cpu().numpy()
    xy = dt[..., :2]
    dt_area = (xy[..., 0].max(1) - xy[..., 0].min(1)) * (xy[..., 1].max(1) - xy[..., 1].min(1))
    no_labels = ~(gt[..., 2] > 0).any(1)
    thresholds = np.linspace(0.5, 0.95, 10)
    rec_thrs = np.linspace(0.0, 1.0, 101)

    per_range: dict[str, list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = {r: [] for r in _AREA_RANGES}
    for img in np.unique(np.concatenate([dt_img, gt_img])):
        d_idx = np.flatnonzero(dt_img == img)
        d_idx = d_idx[np.argsort(-scores[d_idx], kind="mergesort")][:max_dets]
        g_idx = np.flatnonzero(gt_img == img)
        if len(d_idx) and len(g_idx):
            sim = oks_matrix(
                dt[d_idx], gt[g_idx], areas[g_idx], sigmas, None if bboxes is None else bboxes[g_idx]
            )
        else:
            sim = np.zeros((len(d_idx), len(g_idx)))
        for name, (lo, hi) in _AREA_RANGES.items():
            ignore = crowd_all[g_idx] | no_labels[g_idx] | (areas[g_idx] < lo) | (areas[g_idx] > hi)
            order = np.argsort(ignore, kind="mergesort")
            out_of_range = (dt_area[d_idx] < lo) | (dt_area[d_idx] > hi)
            matched, ignored = _match_image(
                sim[:, order], ignore[order], crowd_all[g_idx][order], out_of_range, thresholds
            )
            per_range[name].append((scores[d_idx], matched, ignored, int((~ignore).sum())))

    precision = {r: -np.ones((len(thresholds), len(rec_thrs))) for r in _AREA_RANGES}
    recall = {r: -np.ones(len(thresholds)) for r in _AREA_RANGES}
    for name, images in per_range.items():
        npig = sum(n for *_, n in images)
        if npig == 0:
            continue
        sc = np.concatenate([s for s, *_ in images])
        order = np.argsort(-sc, kind="mergesort")
        matched = np.concatenate([m for _, m, _, _ in images], axis=1)[:, order]
        ignored = np.concatenate([i for _, _, i, _ in images], axis=1)[:, order]
        tp = np.cumsum(matched & ~ignored, axis=1).astype(float)
        fp = np.cumsum(~matched & ~ignored, axis=1).astype(float)
        for t in range(len(thresholds)):
            nd = tp.shape[1]
            rc = tp[t] / npig
            pr = tp[t] / (fp[t] + tp[t] + np.spacing(1))
            recall[name][t] = rc[-1] if nd else 0
            pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr  # the precision envelope
            q = np.zeros(len(rec_thrs))
            idx = np.searchsorted(rc, rec_thrs, side="left")
            ok = idx < nd
            q[ok] = pr[idx[ok]]
            precision[name][t] = q

    def mean_valid(values: np.ndarray) -> float:
        valid = values[values > -1]
        return float(valid.mean()) if valid.size else -1.0

    i50, i75 = 0, 5
    return {
        "AP": mean_valid(precision["all"]),
        "AP50": mean_valid(precision["all"][i50]),
        "AP75": mean_valid(precision["all"][i75]),
        "APm": mean_valid(precision["medium"]),
        "APl": mean_valid(precision["large"]),
        "AR": mean_valid(recall["all"]),
        "AR50": mean_valid(recall["all"][i50 : i50 + 1]),
        "AR75": mean_valid(recall["all"][i75 : i75 + 1]),
        "ARm": mean_valid(recall["medium"]),
        "ARl": mean_valid(recall["large"]),
    }
