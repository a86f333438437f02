"""Evaluate a keypoint model on a data set: batched top-down prediction, COCO AP / AR (with the official
rescoring and OKS NMS), PCKh, and NME / FR / AUC for facial landmarks; the ``hrnet-backbones evaluate`` command.

Predictions are a list of dicts in COCO's keypoint results format, which ``pycocotools``' ``COCO.loadRes``
reads as they are: ``image_id``, ``category_id``, ``keypoints`` (``[x1, y1, s1, ..., xK, yK, sK]`` in image
pixels, ``s`` the heatmap maximum), ``score``. :func:`predict_dataset` adds ``index`` (the instance's index in
the data set) so that lists predicted on parts of a data set (DDP ranks, a ``Subset``) merge with
:func:`merge_predictions`; its ``score`` is the box score (1 for ground-truth boxes), which
:func:`evaluate_coco` rescoring replaces.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .cliutil import CLIError, format_table
from .inference import KeypointMeta, decode_to_image
from .keypoints import (
    COCO_KEYPOINTS,
    aligned_flip_shift,
    auc_nme,
    coco_keypoint_stats,
    failure_rate,
    flip_test,
    nme,
)
from .keypoints.codecs import MSRAHeatmap, UDPHeatmap
from .keypoints.data import CocoKeypointDataset, LandmarkCsvDataset

__all__ = [
    "evaluate_coco",
    "evaluate_landmarks",
    "evaluate_pckh",
    "merge_predictions",
    "oks_nms",
    "predict_dataset",
]

Predictions = list[dict[str, Any]]
# OKS sigma for the keypoints of layouts without published ones: the mean of COCO's.
DEFAULT_SIGMA = float(np.mean(COCO_KEYPOINTS.sigmas))


#: ``predict_dataset(flip_align=...)`` / ``evaluate --flip-align``
FLIP_ALIGNMENTS = ("official", "exact")


def _base(dataset: Dataset) -> CocoKeypointDataset | LandmarkCsvDataset:
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    if not isinstance(dataset, (CocoKeypointDataset, LandmarkCsvDataset)):
        raise TypeError(
            f"need a CocoKeypointDataset or LandmarkCsvDataset (or a Subset of one), got {type(dataset).__name__}"
        )
    return dataset


def predict_dataset(
    model: nn.Module,
    dataset: Dataset,
    *,
    flip: bool = True,
    flip_align: str = "official",
    refine: str | None = "auto",
    batch_size: int = 32,
    device: torch.device | str | None = None,
    num_workers: int = 0,
    sampler: Iterable[int] | None = None,
) -> Predictions:
    """Run a keypoint model over a data set's top-down crops.

    Args:
        model: returns ``(N, K, H/4, W/4)`` heatmaps (or a list whose last element is that) for the crops.
        dataset: a :class:`~hrnet_backbones.keypoints.data.CocoKeypointDataset` or
            :class:`~hrnet_backbones.keypoints.data.LandmarkCsvDataset` with an evaluation transform
            (``train=False``), or a ``Subset`` of one; ``sampler`` (e.g. a ``DistributedSampler``) restricts it
            further.
        flip: flip test (average with the mirrored crop's heatmaps, flipped back with the layout's flip pairs).
        flip_align: how the flipped-back heatmaps of an MSRA / DARK model are aligned: ``"official"`` shifts them
            one pixel (``TEST.SHIFT_HEATMAP``, as the official code and mmpose do), ``"exact"`` by the exact
            misalignment (:func:`~hrnet_backbones.keypoints.aligned_flip_shift`, 0.75 px at stride 4). UDP
            models are aligned already and are never shifted.
        refine: heatmap decoding: ``"auto"`` (the codec's own: quarter offset for MSRA, DARK for MSRA
            ``unbiased``, UDP's for UDP), ``"quarter"``, ``"dark"``, ``"udp"`` or ``None`` (plain argmax).
        device: where the model runs (default: where its parameters are).

    Returns:
        One prediction per instance (see the module docstring), in the order the loader visits them.
    """
    base = _base(dataset)
    transform = base.transform
    codec = getattr(transform, "codec", None)
    if codec is None or getattr(transform, "train", False):
        raise ValueError(
            "predict_dataset needs the data set's evaluation transform: TopDownTransform(..., train=False)"
        )
    if flip_align not in FLIP_ALIGNMENTS:
        raise ValueError(f"flip_align must be one of {FLIP_ALIGNMENTS}, got {flip_align!r}")
    pairs = base.layout.flip_pairs
    if isinstance(codec, UDPHeatmap):
        shift: bool | float = False
    elif flip_align == "exact":
        shift = aligned_flip_shift(codec.input_size[0], codec.heatmap_size[0])
    else:
        shift = True
    category_id = getattr(base, "category_id", 1)
    if device is None:
        device = next(model.parameters()).device
    model.eval().to(device)
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers, shuffle=False
    )
    out: Predictions = []
    with torch.no_grad():
        for batch in loader:
            images = batch["image"].to(device)
            if flip:
                heatmaps = flip_test(model, images, pairs, shift=shift)
            else:
                heatmaps = model(images)
                heatmaps = heatmaps[-1] if isinstance(heatmaps, (list, tuple)) else heatmaps
            if tuple(heatmaps.shape[1:]) != (base.num_keypoints, *codec.heatmap_size[::-1]):
                raise ValueError(
                    f"the model returns heatmaps {tuple(heatmaps.shape[1:])} but the data set has "
                    f"{base.num_keypoints} keypoints and the codec a heatmap of (H, W) = {codec.heatmap_size[::-1]}"
                )
            # decoded where the model ran (the codecs are batched torch code), then brought to the CPU
            center, scale = batch["center"].to(device), batch["scale"].to(device)
            keypoints, scores = decode_to_image(codec, heatmaps.float(), center, scale, refine=refine)
            flat = torch.cat((keypoints.cpu().double(), scores.cpu().double()[..., None]), dim=-1)
            flat = flat.reshape(len(images), -1)
            for row, image_id, score, index in zip(
                flat.tolist(), batch["image_id"].tolist(), batch["score"].tolist(), batch["index"].tolist()
            ):
                out.append(
                    {
                        "image_id": int(image_id),
                        "category_id": int(category_id),
                        "keypoints": row,
                        "score": float(score),
                        "index": int(index),
                    }
                )
    return out


def merge_predictions(*lists: Iterable[dict[str, Any]]) -> Predictions:
    """Predictions from several parts (e.g. gathered from DDP ranks) as one list ordered by ``index``, each
    instance once (a ``DistributedSampler`` repeats some to even out the ranks)."""
    by_index: dict[int, dict[str, Any]] = {}
    for part in lists:
        for p in part:
            by_index.setdefault(int(p["index"]), p)
    return [by_index[i] for i in sorted(by_index)]


# ----------------------------------------------------------------------------------------------------- COCO
def _sigmas(base: CocoKeypointDataset) -> np.ndarray:
    s = base.layout.sigmas
    return np.asarray(s if s is not None else [DEFAULT_SIGMA] * base.num_keypoints, dtype=np.float64)


def oks_nms(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: np.ndarray, threshold: float = 0.9
) -> list[int]:
    """Official ``oks_nms``: keep the best-scored instance, drop the others whose OKS with it exceeds
    ``threshold``, repeat. OKS here uses every keypoint and the mean of the two areas.

    Args:
        keypoints: ``(N, K, 2|3)``; scores: ``(N,)``; areas: ``(N,)`` (official: the padded box area,
            ``prod(scale * 200)``); sigmas: ``(K,)``.

    Returns:
        Kept indices, best first.
    """
    xy = np.asarray(keypoints, dtype=np.float64)[..., :2]
    var = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    keep: list[int] = []
    while order.size:
        i, rest = order[0], order[1:]
        keep.append(int(i))
        d2 = ((xy[rest] - xy[i]) ** 2).sum(-1)
        e = d2 / var / ((areas[i] + areas[rest])[:, None] / 2 + np.spacing(1)) / 2
        overlap = np.exp(-e).mean(-1) if e.shape[-1] else np.zeros(len(rest))
        order = rest[overlap <= threshold]
    return keep


def evaluate_coco(
    predictions: Sequence[dict[str, Any]],
    dataset: Dataset,
    *,
    rescore: bool = True,
    in_vis_thre: float = 0.2,
    nms: bool | None = None,
    oks_thre: float = 0.9,
) -> tuple[dict[str, float], Predictions]:
    """COCO keypoint AP / AR of predictions on a :class:`CocoKeypointDataset`, as the official ``evaluate``.

    Rescoring (``rescore``): an instance's score becomes its box score times the mean of its keypoint scores
    above ``in_vis_thre`` (0 if none is). OKS NMS (``oks_thre``) per image follows; ``nms=None`` applies it when
    the instances come from detections (the official code applies it to ground-truth boxes too: pass
    ``nms=True``). AP / AR are :func:`~hrnet_backbones.keypoints.coco_keypoint_stats` over every image and
    annotation of the file (pycocotools' numbers), with the layout's OKS sigmas (COCO's mean sigma for layouts
    without).

    Returns:
        ``(stats, results)``: the ten COCO numbers (``AP``, ``AP50``, ``AP75``, ``APm``, ``APl``, ``AR``, ...) and
        the rescored, NMS-filtered predictions in COCO results format (what pycocotools would be given).
    """
    base = _base(dataset)
    if not isinstance(base, CocoKeypointDataset):
        raise TypeError("evaluate_coco needs a CocoKeypointDataset; use evaluate_landmarks for landmark CSVs")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    k = base.num_keypoints
    sigmas = _sigmas(base)
    nms = base.detections is not None if nms is None else nms
    by_image: dict[int, list[dict[str, Any]]] = {}
    for p in predictions:
        kp = np.asarray(p["keypoints"], dtype=np.float64)
        if kp.size != 3 * k:
            raise ValueError(f"a prediction has {kp.size // 3} keypoints, the data set {k}")
        kp = kp.reshape(k, 3)
        score = float(p["score"])
        if rescore:
            s = kp[:, 2]
            valid = s > in_vis_thre
            score *= float(s[valid].mean()) if valid.any() else 0.0
        rec = {
            "image_id": int(p["image_id"]),
            "category_id": base.category_id,
            "keypoints": kp,
            "score": score,
        }
        rec["area"] = _padded_area(base, p)
        by_image.setdefault(rec["image_id"], []).append(rec)
    results: Predictions = []
    for image_id in sorted(by_image):
        recs = by_image[image_id]
        if nms and len(recs) > 1:
            keep = oks_nms(
                np.stack([r["keypoints"] for r in recs]),
                np.array([r["score"] for r in recs]),
                np.array([r["area"] for r in recs]),
                sigmas,
                oks_thre,
            )
            recs = [recs[i] for i in keep]
        for r in recs:
            results.append(
                {
                    "image_id": r["image_id"],
                    "category_id": r["category_id"],
                    "keypoints": [float(v) for v in r["keypoints"].reshape(-1)],
                    "score": r["score"],
                }
            )
    dt = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(-1, k, 3)
    stats = coco_keypoint_stats(
        dt,
        np.asarray([r["score"] for r in results]),
        dt_image_ids=[r["image_id"] for r in results],
        sigmas=sigmas,
        **_gt_arrays(base),
    )
    return stats, results


def _gt_arrays(base: CocoKeypointDataset) -> dict[str, np.ndarray]:
    gt = base.ground_truth()
    return {
        "gt_keypoints": gt["gt_keypoints"],
        "gt_areas": gt["gt_areas"],
        "gt_image_ids": gt["gt_image_ids"],
        "gt_bboxes": gt["gt_bboxes"],
        "gt_iscrowd": gt["gt_iscrowd"],
    }


def _padded_area(base: CocoKeypointDataset, prediction: dict[str, Any]) -> float:
    """The official NMS area of a prediction's instance: its padded box, ``prod(scale * 200)``."""
    index = prediction.get("index")
    if index is None or not hasattr(base.transform, "center_scale"):
        xy = np.asarray(prediction["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        return float(np.prod(xy.max(0) - xy.min(0)))
    _, scale = base.transform.center_scale(base.instances[int(index)].box)
    return float(np.prod(np.asarray(scale) * 200.0))


# ---------------------------------------------------------------------------------------------------- PCKh
def evaluate_pckh(
    predictions: Sequence[dict[str, Any]], dataset: Dataset, thresholds: Sequence[float] = (0.5, 0.1)
) -> dict[str, float]:
    """PCKh of predictions on ground-truth boxes of a :class:`CocoKeypointDataset` whose annotations carry a
    head box ``"head_bbox": [x, y, w, h]`` (MPII-style data in COCO format).

    As the official MPII evaluation: a labelled joint is correct when its distance to the ground truth is at
    most ``threshold * 0.6 * head box diagonal``; the score is the mean over all labelled joints (the MPII
    layout's pelvis and thorax left out, as the official ``Mean``).

    Returns:
        ``{"PCKh@0.5": ..., "PCKh@0.1": ...}`` in [0, 1].
    """
    base = _base(dataset)
    if not isinstance(base, CocoKeypointDataset) or base.detections is not None:
        raise ValueError("PCKh needs ground-truth boxes of a COCO-format data set (no detections)")
    preds, gts, heads = [], [], []
    for p in predictions:
        inst = base.instances[int(p["index"])]
        head = inst.extra.get("head_bbox")
        if head is None:
            raise ValueError(
                f"{base.ann_file}: {inst.label} has no 'head_bbox' [x, y, w, h]; PCKh needs head boxes"
            )
        preds.append(np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2])
        gts.append(inst.keypoints)
        heads.append(0.6 * math.hypot(float(head[2]), float(head[3])))
    if not preds:
        raise ValueError("no predictions to evaluate")
    pred, gt, head = np.stack(preds), np.stack(gts), np.asarray(heads)
    labelled = gt[..., 2] > 0
    if base.layout.name == "mpii":
        labelled[:, [6, 7]] = False  # pelvis, thorax
    dist = np.linalg.norm(pred - gt[..., :2], axis=-1) / head[:, None]
    return {f"PCKh@{t:g}": float((dist[labelled] <= t).mean()) for t in thresholds}


# ----------------------------------------------------------------------------------------------- landmarks
def evaluate_landmarks(
    predictions: Sequence[dict[str, Any]], dataset: Dataset, thresholds: Sequence[float] = (0.10, 0.08)
) -> dict[str, float]:
    """NME, failure rate and AUC of landmark predictions on a :class:`LandmarkCsvDataset` (HRNet-Facial
    ``compute_nme``: every landmark, normalised per face by the layout's outer-eye-corner distance — WFLW 60/72,
    300W 36/45, COFW 8/9 — or, for AFLW, the CSV's ``box_size``).

    Returns:
        ``{"NME": mean per-face NME, "FR@0.1": ..., "AUC@0.1": ..., "FR@0.08": ..., "AUC@0.08": ...}``.
    """
    base = _base(dataset)
    if not isinstance(base, LandmarkCsvDataset):
        raise TypeError("evaluate_landmarks needs a LandmarkCsvDataset")
    if not predictions:
        raise ValueError("no predictions to evaluate")
    index = np.asarray([int(p["index"]) for p in predictions])
    pred = np.stack([np.asarray(p["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2] for p in predictions])
    gt = base.landmarks[index]
    if base.layout.normalization == "interocular":
        per_face = nme(pred, gt, layout=base.layout, reduction="none")
    else:
        if base.box_sizes is None:
            raise ValueError(
                f"{base.csv_file}: layout {base.layout.name!r} is normalised by box_size, the CSV has none"
            )
        per_face = nme(pred, gt, norm_factor=base.box_sizes[index], reduction="none")
    out = {"NME": float(np.nanmean(per_face))}
    for t in thresholds:
        out[f"FR@{t:g}"] = failure_rate(per_face, t)
        out[f"AUC@{t:g}"] = auc_nme(per_face, t)
    return out


# ----------------------------------------------------------------------------------------------------- CLI
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_DIR", help="a model folder, 'local-dir:DIR' or 'hf-hub:ORG/NAME'")
    p.add_argument("--ann", required=True, help="COCO-format keypoint JSON, or an HRNet-Facial landmark CSV")
    p.add_argument("--images", required=True, help="the folder the annotation's image names are relative to")
    p.add_argument(
        "--kind",
        choices=["auto", "coco", "landmarks"],
        default="auto",
        help="data format (default: by the --ann extension, .csv = landmarks)",
    )
    p.add_argument(
        "--detections", help="COCO detection results JSON: evaluate on these boxes (COCO data only)"
    )
    p.add_argument("--score-threshold", type=float, default=0.0, help="skip detections below this score")
    p.add_argument(
        "--flip", action=argparse.BooleanOptionalAction, default=True, help="flip test (default: on)"
    )
    p.add_argument(
        "--flip-align",
        choices=FLIP_ALIGNMENTS,
        default="official",
        help="alignment of the flipped-back heatmaps of MSRA / DARK models: official (a 1-pixel shift, as the "
        "official code) or exact (0.75 px at stride 4; +0.007 AP on the learning benchmark's model) (default: "
        "official)",
    )
    p.add_argument(
        "--refine",
        default="auto",
        choices=["auto", "quarter", "dark", "udp", "none"],
        help="heatmap decoding (default: the model's codec)",
    )
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--json", dest="json_out", help="write the stats here as JSON")
    p.add_argument("--predictions", help="write the predictions here (COCO keypoint results format)")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _model_codec(model: nn.Module, meta: KeypointMeta) -> MSRAHeatmap | UDPHeatmap:
    """The codec of a keypoint model's ``pretrained_cfg`` (type, sigma, DARK's ``unbiased``, heatmap size)."""
    spec = (getattr(model, "pretrained_cfg", None) or {}).get("codec") or {}
    return meta.make_codec(spec.get("heatmap_size"))


def _worker_message(error: BaseException) -> str:
    """The original one-line message of an error re-raised from a DataLoader worker (PyTorch prefixes it with
    "Caught ValueError in DataLoader worker process 0" and the worker's traceback)."""
    text = str(error)
    if "DataLoader worker" not in text:
        return text
    last = text.strip().splitlines()[-1]
    prefix = f"{type(error).__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


def run_cli(args: argparse.Namespace) -> int:
    from .cliutil import load_keypoint_model
    from .fileio import atomic_write_text, refuse_existing
    from .inference import keypoint_meta
    from .keypoints.data import TopDownTransform

    outputs = [p for p in (args.json_out, args.predictions) if p]
    refuse_existing(outputs, args.force)
    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be positive, got {args.batch_size}")
    kind = args.kind
    if kind == "auto":
        kind = "landmarks" if Path(args.ann).suffix.lower() == ".csv" else "coco"
    if kind == "landmarks" and args.detections:
        raise CLIError("--detections goes with COCO-format data, not with a landmark CSV")
    if not Path(args.images).is_dir():
        raise CLIError(f"image folder not found: {args.images}")
    model = load_keypoint_model(args.model)
    meta = keypoint_meta(model)
    codec = _model_codec(model, meta)
    transform = TopDownTransform(
        meta.input_size, codec, mean=meta.mean, std=meta.std, flip_pairs=meta.flip_pairs, train=False
    )
    if kind == "landmarks":
        dataset = LandmarkCsvDataset(args.ann, args.images, transform)
    else:
        dataset = CocoKeypointDataset(
            args.ann, args.images, transform, detections=args.detections, score_threshold=args.score_threshold
        )
    k_model = getattr(model, "num_classes", 0)
    if k_model != dataset.num_keypoints:
        raise CLIError(
            f"{args.ann} has {dataset.num_keypoints} keypoints but the model {args.model} predicts {k_model}; "
            "evaluate a model trained on this layout"
        )
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    refine = None if args.refine == "none" else args.refine
    if refine == "auto":  # a decoding recorded with the codec (trained folders) wins over the codec's default
        refine = ((getattr(model, "pretrained_cfg", None) or {}).get("codec") or {}).get("refine", "auto")
    try:
        predictions = predict_dataset(
            model,
            dataset,
            flip=args.flip,
            flip_align=args.flip_align,
            refine=refine,
            batch_size=args.batch_size,
            device=device,
            num_workers=args.workers,
        )
    except (ValueError, OSError) as e:
        raise CLIError(_worker_message(e)) from None
    if kind == "landmarks":
        stats = evaluate_landmarks(predictions, dataset)
        results = [{k: v for k, v in p.items() if k != "index"} for p in predictions]
    else:
        stats, results = evaluate_coco(predictions, dataset)
        if any("head_bbox" in inst.extra for inst in dataset.instances) and args.detections is None:
            stats.update(evaluate_pckh(predictions, dataset))
    source = f"{len(dataset)} {'faces' if kind == 'landmarks' else 'instances'}"
    source += f" from {'detections' if args.detections else 'ground-truth boxes'}" if kind == "coco" else ""
    flip = f"on, {args.flip_align} alignment" if args.flip else "off"
    print(f"{args.model} on {args.ann} ({source}, flip test {flip}):")
    print(format_table(["metric", "value"], [[name, f"{value:.4f}"] for name, value in stats.items()]))
    if args.predictions:
        atomic_write_text(args.predictions, json.dumps(results))
        print(f"predictions -> {args.predictions}")
    if args.json_out:
        record = {
            "model": args.model,
            "ann": args.ann,
            "images": args.images,
            "detections": args.detections,
            "flip_test": args.flip,
            "flip_align": args.flip_align if args.flip else None,
            "refine": args.refine,
            "instances": len(dataset),
            "stats": stats,
        }
        atomic_write_text(args.json_out, json.dumps(record, indent=2))
        print(f"stats -> {args.json_out}")
    return 0
