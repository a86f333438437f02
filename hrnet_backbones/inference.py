"""Top-down keypoint inference: person boxes in an image -> keypoints in image pixels.

The model is any timm model whose forward returns stride-4 heatmaps (a converted pose or landmark folder, or
``timm.create_model("hrnet_w32", head="pose", num_classes=17)``). What the pipeline needs besides the weights
(input size, normalisation, keypoint names, flip pairs, skeleton, codec) is read from ``model.pretrained_cfg``,
where the converter writes it; :func:`keypoint_meta` fills gaps from the standard layouts by keypoint count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .keypoints import (
    LAYOUTS,
    MSRAHeatmap,
    UDPHeatmap,
    box_to_center_scale,
    crop_image,
    flip_test,
    transform_preds,
)

__all__ = ["KeypointMeta", "decode_to_image", "keypoint_meta", "predict_keypoints"]


@dataclass(frozen=True)
class KeypointMeta:
    """What top-down inference needs to know about a keypoint model."""

    input_size: tuple[int, int]  # (h, w) of the model input
    mean: tuple[float, ...]
    std: tuple[float, ...]
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    codec: str = "msra"  # or "udp"
    sigma: float = 2.0


def _pairs(value: Any) -> tuple[tuple[int, int], ...]:
    return tuple((int(a), int(b)) for a, b in (value or ()))


def keypoint_meta(model: nn.Module, num_keypoints: int | None = None) -> KeypointMeta:
    """Read :class:`KeypointMeta` from ``model.pretrained_cfg``; standard layouts fill what it lacks.

    ``num_keypoints`` defaults to the model's ``num_classes``. A layout (COCO-17, MPII-16, WFLW-98, ...) of that
    count supplies names, flip pairs and skeleton when the config has none; otherwise keypoints are numbered and
    flip test is off (no pairs known).
    """
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    k = num_keypoints or getattr(model, "num_classes", 0)
    if not k:
        raise ValueError(
            "the model has no keypoint head (num_classes is 0); build it with head='pose' or load a "
            "converted pose / landmark folder"
        )
    layout = next((lay for lay in LAYOUTS.values() if lay.num_keypoints == k), None)
    names = tuple(
        cfg.get("keypoint_names") or (layout.keypoint_names if layout else (str(i) for i in range(k)))
    )
    if len(names) != k:
        raise ValueError(f"pretrained_cfg lists {len(names)} keypoint names for a model with {k} outputs")
    codec = cfg.get("codec") or {}
    codec_type = str(codec.get("type", "msra")).lower()
    _, h, w = cfg.get("input_size", (3, 256, 192))
    return KeypointMeta(
        input_size=(int(h), int(w)),
        mean=tuple(cfg.get("mean", (0.485, 0.456, 0.406))),
        std=tuple(cfg.get("std", (0.229, 0.224, 0.225))),
        keypoint_names=names,
        flip_pairs=_pairs(cfg["flip_pairs"])
        if "flip_pairs" in cfg
        else (layout.flip_pairs if layout else ()),
        skeleton=_pairs(cfg["skeleton"]) if "skeleton" in cfg else (layout.skeleton if layout else ()),
        codec="udp" if "udp" in codec_type else "msra",
        sigma=float(codec.get("sigma", 2.0)),
    )


def predict_keypoints(
    model: nn.Module,
    image: torch.Tensor,
    boxes: torch.Tensor | Sequence[Sequence[float]],
    *,
    meta: KeypointMeta | None = None,
    refine: str | None = "auto",
    flip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of the people in ``boxes``.

    Args:
        model: returns ``(N, K, h/4, w/4)`` heatmaps for ``(N, 3, h, w)`` normalised crops (eval mode is set).
        image: ``(3, H, W)`` RGB floats in [0, 1], on the model's device.
        boxes: ``(B, 4)`` person boxes ``(x, y, w, h)`` in image pixels.
        meta: defaults to :func:`keypoint_meta` of the model.
        refine: ``"auto"`` (the codec's own: quarter offset for MSRA, UDP's for UDP), ``"quarter"``, ``"dark"``,
            ``"udp"`` or ``None`` (argmax); see :mod:`hrnet_backbones.keypoints.codecs`.
        flip: average with the mirrored crop (official flip test), when flip pairs are known.

    Returns:
        ``keypoints (B, K, 2)`` ``(x, y)`` in image pixels and ``scores (B, K)`` (heatmap maxima; <= 0: not found).
    """
    meta = meta or keypoint_meta(model)
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"image must be (3, H, W) RGB, got shape {tuple(image.shape)}")
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=image.device).reshape(-1, 4)
    if (boxes[:, 2:] <= 0).any():
        raise ValueError(f"boxes need a positive width and height, got {boxes.tolist()}")
    h, w = meta.input_size
    center, scale = box_to_center_scale(boxes, aspect_ratio=w / h)
    udp = meta.codec == "udp"
    crops = crop_image(image.expand(len(boxes), -1, -1, -1), center, scale, (w, h), udp=udp)
    mean = torch.tensor(meta.mean, device=image.device).view(1, -1, 1, 1)
    std = torch.tensor(meta.std, device=image.device).view(1, -1, 1, 1)
    crops = (crops - mean) / std
    model.eval()
    with torch.no_grad():
        heatmaps = flip_test(model, crops, meta.flip_pairs) if flip and meta.flip_pairs else model(crops)
    hm_h, hm_w = heatmaps.shape[-2:]
    codec_cls = UDPHeatmap if udp else MSRAHeatmap
    codec = codec_cls(input_size=(w, h), heatmap_size=(hm_w, hm_h), sigma=meta.sigma)
    return decode_to_image(codec, heatmaps, center, scale, refine=refine)


def decode_to_image(
    codec: MSRAHeatmap | UDPHeatmap,
    heatmaps: torch.Tensor,
    center: torch.Tensor,
    scale: torch.Tensor,
    *,
    refine: str | None = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Heatmaps of top-down crops to keypoints in image pixels: the codec's decoding, then the inverse of the crop
    affine (``transform_preds``; the UDP affine for a :class:`UDPHeatmap`).

    Args:
        codec: the codec of the crops (its ``input_size`` is the crop's ``(w, h)``).
        heatmaps: ``(N, K, H, W)`` model output (any float dtype; decoded in float32).
        center, scale: ``(N, 2)`` of the crops (``scale`` in units of 200 px, see ``box_to_center_scale``).
        refine: ``"auto"`` (the codec's own), ``"quarter"``, ``"dark"``, ``"udp"`` or ``None`` (argmax).

    Returns:
        ``keypoints (N, K, 2)`` ``(x, y)`` in image pixels and ``scores (N, K)``.
    """
    kwargs = {} if refine == "auto" else {"refine": refine}
    keypoints, scores = codec.decode(heatmaps.float(), **kwargs)
    udp = isinstance(codec, UDPHeatmap)
    return transform_preds(keypoints, center, scale, codec.input_size, udp=udp), scores
