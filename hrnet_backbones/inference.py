"""Top-down keypoint inference: person boxes in an image -> keypoints in image pixels.

The model is any timm model whose forward returns stride-4 heatmaps (a converted pose or landmark folder, or
``timm.create_model("hrnet_w32", head="pose", num_classes=17)``). What the pipeline needs besides the weights
(input size, normalisation, keypoint names, flip pairs, skeleton, codec) is read from ``model.pretrained_cfg``,
where the converter writes it; :func:`keypoint_meta` fills gaps from the standard layouts by keypoint count.

Images go through :func:`to_image_tensor`, the one place that turns what users hold (a PIL image, an ``(H, W, 3)``
NumPy array, a ``(3, H, W)`` tensor) into the ``(3, H, W)`` float32 RGB in [0, 1] the pipeline works on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image
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

__all__ = [
    "KeypointMeta",
    "check_boxes",
    "decode_to_image",
    "keypoint_meta",
    "predict_keypoints",
    "to_image_tensor",
]

#: float images may overshoot [0, 1] by this much (bicubic resizing rings at sharp edges); further out they are
#: taken for 0-255 floats or for images already normalised with a mean and std, and refused
FLOAT_RANGE_SLACK = 0.1
#: a box must have at least this share of its area inside the image (see :func:`check_boxes`)
MIN_BOX_INSIDE = 0.5
#: Pillow modes that hold 8-bit channels and convert to RGB without losing range
_PIL_8BIT_MODES = {"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"}


@dataclass(frozen=True)
class KeypointMeta:
    """What top-down inference needs to know about a keypoint model."""

    input_size: tuple[int, int]  # (h, w) of the model input
    mean: tuple[float, ...]
    std: tuple[float, ...]
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]
    codec: str = "msra"  # "msra", "dark" (MSRA with DARK's sub-pixel Gaussian and decoding) or "udp"
    sigma: float = 2.0

    def make_codec(self, heatmap_size: tuple[int, int] | None = None) -> MSRAHeatmap | UDPHeatmap:
        """The model's codec for its input size; ``heatmap_size`` ``(w, h)`` defaults to a quarter of it."""
        h, w = self.input_size
        heatmap = tuple(heatmap_size or (w // 4, h // 4))
        if self.codec == "udp":
            return UDPHeatmap(input_size=(w, h), heatmap_size=heatmap, sigma=self.sigma)
        return MSRAHeatmap(
            input_size=(w, h), heatmap_size=heatmap, sigma=self.sigma, unbiased=self.codec == "dark"
        )


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
        codec="udp" if "udp" in codec_type else "dark" if codec.get("unbiased") else "msra",
        sigma=float(codec.get("sigma", 2.0)),
    )


ImageLike = Image.Image | np.ndarray | torch.Tensor


def _array_layout_fix(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return "a grayscale array: stack it to RGB with np.stack([a] * 3, axis=-1)"
    if len(shape) == 3 and shape[-1] == 4:
        return "drop the alpha channel with a[..., :3]"
    if len(shape) == 3 and shape[-1] == 1:
        return "repeat its one channel with np.repeat(a, 3, axis=-1)"
    if len(shape) == 3 and shape[0] == 3:
        return "NumPy images are (H, W, 3) as image libraries give them: pass a.transpose(1, 2, 0)"
    if len(shape) == 4:
        return "pass one image at a time (the boxes belong to one image)"
    return "give an (H, W, 3) RGB array"


def _tensor_layout_fix(shape: tuple[int, ...]) -> str:
    if len(shape) == 3 and shape[-1] == 3:
        return "it looks channels-last (H, W, 3): pass image.permute(2, 0, 1)"
    if len(shape) == 2:
        return "a grayscale image: pass image.expand(3, -1, -1)"
    if len(shape) == 3 and shape[0] == 4:
        return "drop the alpha channel with image[:3]"
    if len(shape) == 3 and shape[0] == 1:
        return "repeat its one channel with image.expand(3, -1, -1)"
    if len(shape) == 4 and shape[0] == 1:
        return "pass the single image of the batch, image[0]"
    if len(shape) == 4:
        return "pass one image at a time (the boxes belong to one image)"
    return "give a (3, H, W) RGB tensor"


def _dtype_error(dtype: object) -> TypeError:
    return TypeError(
        f"image values must be uint8 (0-255) or floats in [0, 1], got {dtype}; convert 8-bit values with "
        ".astype(np.uint8) / .to(torch.uint8), others to floats in [0, 1] (a 16-bit image: / 65535)"
    )


def to_image_tensor(image: ImageLike, device: torch.device | str | None = None) -> torch.Tensor:
    """One image as ``(3, H, W)`` float32 RGB in [0, 1], the form :func:`predict_keypoints` works on.

    The rule (layout from the type, values from the dtype):

    - a PIL image: converted to RGB (grayscale, palette and CMYK images; an alpha channel is dropped). 16-bit and
      float modes (``I``, ``I;16``, ``F``) are refused: their range is not 0-255.
    - a NumPy array: ``(H, W, 3)`` RGB, the layout of Pillow, imageio and OpenCV (whose ``cv2.imread`` gives BGR:
      ``cv2.cvtColor(a, cv2.COLOR_BGR2RGB)`` first).
    - a torch tensor: ``(3, H, W)`` RGB, torch's layout.
    - ``uint8`` values are 0-255 and divided by 255 (exactly ``image.float() / 255``); floating-point values (any
      precision) are taken as they are, in [0, 1] (up to :data:`FLOAT_RANGE_SLACK` beyond is resampling overshoot).

    Everything else is refused with the fix: another layout (channels-last tensors, ``(3, H, W)`` arrays,
    batches, grayscale, RGBA), other integer or boolean dtypes, floats outside [0, 1] (0-255 floats, images
    already normalised with a mean and std), NaN or infinity, images without pixels.

    Args:
        image: the image, in one of the forms above.
        device: where the result goes (default: where a tensor already is, else the CPU).

    Raises:
        TypeError: not an image type, or a dtype other than uint8 and floating point.
        ValueError: a layout other than the above, values outside [0, 1], non-finite values, no pixels.
    """
    if isinstance(image, Image.Image):
        if image.mode not in _PIL_8BIT_MODES:
            raise ValueError(
                f"a PIL image of mode {image.mode!r} is not 8-bit: scale it to floats in [0, 1] and pass an "
                "(H, W, 3) array, e.g. np.repeat(np.asarray(img, np.float32)[..., None] / 65535, 3, axis=-1) for 16-bit"
            )
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise ValueError(
                f"image array must be (H, W, 3) RGB, got shape {image.shape}; {_array_layout_fix(image.shape)}"
            )
        if image.dtype != np.uint8 and not np.issubdtype(image.dtype, np.floating):
            raise _dtype_error(image.dtype)
        # a copy: NumPy views may be read-only (np.asarray of a PIL image) or have negative strides (a[..., ::-1])
        tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        shape = tuple(image.shape)
        if image.ndim != 3 or shape[0] != 3:
            raise ValueError(
                f"image tensor must be (3, H, W) RGB, got shape {shape}; {_tensor_layout_fix(shape)}"
            )
        tensor = image
    else:
        raise TypeError(
            f"image must be a PIL image, an (H, W, 3) NumPy array or a (3, H, W) torch tensor, got "
            f"{type(image).__name__}"
        )
    if 0 in tensor.shape:
        raise ValueError(f"the image has no pixels (shape {tuple(tensor.shape)})")
    tensor = tensor.to(device if device is not None else tensor.device)
    if tensor.dtype == torch.uint8:
        return tensor.float() / 255
    if not tensor.is_floating_point():
        raise _dtype_error(tensor.dtype)
    tensor = tensor.float()
    if not torch.isfinite(tensor).all():
        raise ValueError("the image has NaN or infinite values; pass floats in [0, 1]")
    lo, hi = (float(v) for v in torch.aminmax(tensor))
    if lo < -FLOAT_RANGE_SLACK or hi > 1 + FLOAT_RANGE_SLACK:
        if lo < -FLOAT_RANGE_SLACK:
            fix = (
                "it looks normalised with a mean and std already; pass the image before normalisation "
                "(predict_keypoints normalises with the model's own mean and std)"
            )
        else:
            fix = "0-255 values: divide them by 255, or pass the uint8 image as it is"
        raise ValueError(f"float images must be in [0, 1], got values from {lo:.3g} to {hi:.3g}; {fix}")
    return tensor


def check_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> None:
    """Refuse boxes without a positive size and boxes mostly outside the image.

    Args:
        boxes: ``(B, 4)`` ``(x, y, w, h)`` in image pixels.
        image_size: ``(H, W)`` of the image.

    A box with less than :data:`MIN_BOX_INSIDE` of its area in the image would show the model mostly the crop's
    zero padding; it is nearly always a coordinate mistake (corners ``x1, y1, x2, y2`` instead of ``x, y, w, h``,
    boxes for a resized image). Boxes partly outside (a person at the border) are kept as they are, as the
    official top-down pipeline does: clipping them would move the crop and change the keypoints.
    """
    if (boxes[:, 2:] <= 0).any():
        raise ValueError(f"boxes need a positive width and height, got {boxes.tolist()}")
    h, w = image_size
    x0, y0, bw, bh = boxes.unbind(-1)
    inside_w = (torch.minimum(x0 + bw, boxes.new_tensor(w)) - x0.clamp(min=0)).clamp(min=0)
    inside_h = (torch.minimum(y0 + bh, boxes.new_tensor(h)) - y0.clamp(min=0)).clamp(min=0)
    inside = inside_w * inside_h / (bw * bh)
    outside = torch.nonzero(inside < MIN_BOX_INSIDE).flatten().tolist()
    if outside:
        i = outside[0]
        box = ",".join(f"{v:g}" for v in boxes[i].tolist())
        raise ValueError(
            f"box {i} ({box}) has {inside[i].item():.0%} of its area inside the {w}x{h} (WxH) image, under "
            f"{MIN_BOX_INSIDE:.0%}: boxes are x,y,w,h in the pixels of this image (x right, y down from the "
            "top-left corner)"
        )


def _model_device(model: nn.Module) -> torch.device | None:
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return None if tensor is None else tensor.device


def predict_keypoints(
    model: nn.Module,
    image: ImageLike,
    boxes: torch.Tensor | Sequence[Sequence[float]],
    *,
    meta: KeypointMeta | None = None,
    refine: str | None = "auto",
    flip: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keypoints of the people in ``boxes``.

    Args:
        model: returns ``(N, K, h/4, w/4)`` heatmaps for ``(N, 3, h, w)`` normalised crops (eval mode is set).
        image: a PIL image, an ``(H, W, 3)`` NumPy array or a ``(3, H, W)`` tensor, RGB; uint8 (0-255) or floats
            in [0, 1]. Anything else is refused with the fix; the rule is :func:`to_image_tensor`'s. It is moved
            to the model's device.
        boxes: ``(B, 4)`` person boxes ``(x, y, w, h)`` in image pixels; at least half of each box must lie in
            the image (:func:`check_boxes`).
        meta: defaults to :func:`keypoint_meta` of the model.
        refine: ``"auto"`` (the codec's own: quarter offset for MSRA, DARK for DARK, UDP's for UDP), ``"quarter"``, ``"dark"``,
            ``"udp"`` or ``None`` (argmax); see :mod:`hrnet_backbones.keypoints.codecs`.
        flip: average with the mirrored crop (official flip test), when flip pairs are known.

    Returns:
        ``keypoints (B, K, 2)`` ``(x, y)`` in image pixels and ``scores (B, K)`` (heatmap maxima; <= 0: not found).
    """
    meta = meta or keypoint_meta(model)
    image = to_image_tensor(image, device=_model_device(model))
    boxes = torch.as_tensor(boxes, dtype=torch.float32, device=image.device).reshape(-1, 4)
    check_boxes(boxes, tuple(image.shape[-2:]))
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
    return decode_to_image(meta.make_codec((hm_w, hm_h)), heatmaps, center, scale, refine=refine)


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
