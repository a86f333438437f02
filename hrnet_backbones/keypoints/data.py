"""Top-down keypoint data: COCO-format keypoint files, HRNet-Facial landmark CSVs and the training transform.

One sample is one person (or face) box in one image. :class:`TopDownTransform` turns ``(image, keypoints, box)``
into the model input and its targets, the way the official HRNet ``JointsDataset`` does:

1. box ``(x, y, w, h)`` -> ``center, scale`` with the input's aspect ratio and 1.25 padding
   (:func:`~hrnet_backbones.keypoints.box_to_center_scale`, ``pixel_std = 200``);
2. training only, in the official order and with the official distributions (``JointsDataset.__getitem__``;
   mmpose 1.x ``RandomBBoxTransform`` differs: truncated normals, ±80° rotation, a random shift):

   * half-body (p = 0.3, when more than 8 joints are labelled): the centre becomes the mean of the upper- or
     lower-body joints (upper when a standard normal draw is < 0.5, about 69 %, as the official code draws it;
     the other half when the chosen one has no more than 2 joints), the box their extent grown to the aspect
     ratio, times 1.5;
   * scale: ``scale *= clip(1 + 0.35 N(0, 1), 0.65, 1.35)``;
   * rotation: with probability 0.6, ``clip(45 N(0, 1), -90, 90)`` degrees, else 0;
   * horizontal flip (p = 0.5): the image is mirrored (``x' = W - 1 - x``, pixel centres), the joints are
     mirrored and each left/right pair swapped (:func:`~hrnet_backbones.keypoints.fliplr_joints`), the
     centre mirrored;

   ``jitter="uniform"`` draws scale and rotation uniformly instead, as HRNet-Facial does (see
   :func:`landmark_transform`);
3. the affine crop (:func:`~hrnet_backbones.keypoints.get_affine_transform`, bilinear
   :func:`~hrnet_backbones.keypoints.warp_affine`; its ``(size - 1)`` UDP variant for a UDP codec); the flip is
   folded into the same affine, so the full image is never copied;
4. targets from the codec (any :class:`~hrnet_backbones.keypoints.MSRAHeatmap` — DARK with ``unbiased=True``
   — or :class:`~hrnet_backbones.keypoints.UDPHeatmap`), per-joint weights ``min(v, 1)`` zeroed where the
   Gaussian lies off the map;
5. the image scaled to [0, 1] and normalised with the model's mean / std.

Randomness: every random number comes from the ``numpy.random.Generator`` passed in. The datasets seed it from
``(seed, epoch, index)`` (:meth:`CocoKeypointDataset.set_epoch`), so a sample is a pure function of those three:
the same in the main process and in any number of DataLoader workers, and the same after a resume.

Sizes follow the package's public API: ``input_size`` is ``(H, W)`` (as ``--input-size H W`` and
:class:`~hrnet_backbones.inference.KeypointMeta`); the codecs take ``(w, h)``. Points are ``(x, y)`` in pixels,
integer coordinates at pixel centres.

Images are decoded with Pillow and converted to RGB (grayscale, palette, RGBA ...). EXIF orientation is
ignored by default, as the official code (``cv2.IMREAD_IGNORE_ORIENTATION``) and pycocotools do: COCO's
annotations and ``width`` / ``height`` are in the stored pixel grid. Pass ``exif_transpose=True`` for data
annotated on the displayed (rotated) image; a decoded size that contradicts the JSON is an error either way.
"""

from __future__ import annotations

import csv
import functools
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from .codecs import MSRAHeatmap, UDPHeatmap
from .datasets import AFLW_19, COFW_29, LAYOUTS, W300_68, WFLW_98, KeypointLayout, get_layout
from .flip import flip_permutation
from .transforms import box_to_center_scale, get_affine_transform, warp_affine

__all__ = [
    "COCO_LOWER_BODY_IDS",
    "COCO_UPPER_BODY_IDS",
    "CocoKeypointDataset",
    "Instance",
    "LandmarkCsvDataset",
    "TopDownTransform",
    "landmark_transform",
    "load_image",
]

COCO_UPPER_BODY_IDS = tuple(range(11))  # nose, eyes, ears, shoulders, elbows, wrists
COCO_LOWER_BODY_IDS = tuple(range(11, 17))  # hips, knees, ankles
PIXEL_STD = 200.0
Codec = MSRAHeatmap | UDPHeatmap
ImageLike = np.ndarray | Image.Image


# ----------------------------------------------------------------------------------------------------------
# images
# ----------------------------------------------------------------------------------------------------------


def load_image(path: str | os.PathLike, *, exif_transpose: bool = False, context: str = "") -> np.ndarray:
    """Decode an image file with Pillow into ``(H, W, 3)`` uint8 RGB.

    ``context`` (e.g. ``"annotation 17 in ann.json"``) is added to the error raised for a missing or unreadable
    file, a ``ValueError`` naming the file.
    """
    where = f" ({context})" if context else ""
    try:
        with Image.open(path) as img:
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"))
    except FileNotFoundError:
        raise ValueError(f"image not found: {path}{where}") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read {path} as an image{where}: {e}") from None


def _to_rgb_array(image: ImageLike) -> np.ndarray:
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image must be (H, W, 3) RGB (or a PIL image), got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


# ----------------------------------------------------------------------------------------------------------
# the transform
# ----------------------------------------------------------------------------------------------------------


class TopDownTransform:
    """The official HRNet top-down pipeline for one instance; see the module docstring for the steps.

    Args:
        input_size: ``(H, W)`` of the model input (e.g. ``(256, 192)``).
        codec: the target codec; its ``input_size`` must be ``(W, H)`` of the same input.
        mean, std: per-channel normalisation of images scaled to [0, 1] (the model's ``pretrained_cfg``).
        flip_pairs: left/right index pairs swapped by a horizontal flip; ``None`` turns flip augmentation off
            (use ``()`` for a layout without left/right keypoints).
        train: apply the random augmentation; ``False`` gives the plain crop of the evaluation pipeline.
        upper_body_ids: keypoints of the upper body for half-body augmentation; ``None`` means COCO's
            (0..10) when there are 17 keypoints and no half-body augmentation otherwise; ``()`` turns it off.
        scale_factor: scale jitter (0.35 official COCO; 0.25 HRNet-Facial).
        rotation_factor: rotation in degrees (45 official COCO, clipped at twice that; 30 HRNet-Facial).
        rotation_prob: probability of a rotation (0.6).
        flip_prob: probability of a flip (0.5).
        half_body_prob: probability of half-body augmentation (0.3), applied only when more than
            ``num_joints_half_body`` joints are labelled.
        padding: box context factor (1.25).
        use_udp: use the ``(size - 1)`` UDP affine; ``None`` follows the codec (``True`` for ``UDPHeatmap``).
        jitter: ``"normal"`` (official pose: clipped normals) or ``"uniform"`` (HRNet-Facial:
            ``scale *= U(1 - sf, 1 + sf)``, rotation ``U(-rf, rf)``).
        joint_weights: optional ``(K,)`` per-joint weights multiplied into the target weights (the official
            ``USE_DIFFERENT_JOINTS_WEIGHT``; do not give them to the loss as well).

    Calling it: ``transform(image, keypoints, box, rng)`` with ``image`` ``(H, W, 3)`` uint8 RGB (or a PIL
    image), ``keypoints`` ``(K, 3)`` ``(x, y, v)`` in image pixels (``v > 0``: labelled), ``box`` ``(x, y, w, h)``
    and ``rng`` a :class:`numpy.random.Generator` (only used when ``train``). Returns a dict:

    * ``image`` ``(3, H, W)`` float32, normalised;
    * ``heatmaps`` ``(K, H/4, W/4)`` float32 (the codec's heatmap size), ``weights`` ``(K,)`` float32;
    * ``keypoints`` ``(K, 3)`` float32: ``(x, y)`` in input-crop pixels and the visibility ``min(v, 1)``
      (unlabelled joints carry no meaning in ``x, y``);
    * ``center`` ``(2,)``, ``scale`` ``(2,)`` (box ``w, h`` / 200, after augmentation, in the flipped image's
      frame when ``flipped``), ``rotation`` (degrees), ``flipped`` (bool). An input point ``p`` maps back to the
      image with ``transform_preds(p, center, scale, (W, H), rot=rotation, udp=...)``, then ``x -> width-1-x``
      if ``flipped``.
    """

    def __init__(
        self,
        input_size: Sequence[int],
        codec: Codec,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        flip_pairs: Sequence[Sequence[int]] | None,
        train: bool,
        upper_body_ids: Sequence[int] | None = None,
        scale_factor: float = 0.35,
        rotation_factor: float = 45.0,
        rotation_prob: float = 0.6,
        flip_prob: float = 0.5,
        half_body_prob: float = 0.3,
        num_joints_half_body: int = 8,
        padding: float = 1.25,
        use_udp: bool | None = None,
        jitter: Literal["normal", "uniform"] = "normal",
        joint_weights: Sequence[float] | None = None,
    ) -> None:
        h, w = (int(v) for v in input_size)
        if h < 1 or w < 1:
            raise ValueError(f"input_size must be (H, W) of positive integers, got {tuple(input_size)}")
        if tuple(codec.input_size) != (w, h):
            raise ValueError(
                f"the codec's input_size (w, h) = {tuple(codec.input_size)} does not match input_size (H, W) = "
                f"{(h, w)}; build the codec with input_size=({w}, {h})"
            )
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(f"mean and std need 3 values (std positive), got {tuple(mean)} and {tuple(std)}")
        if jitter not in ("normal", "uniform"):
            raise ValueError(f"jitter must be 'normal' or 'uniform', got {jitter!r}")
        self.input_size = (h, w)
        self.codec = codec
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.flip_pairs = None if flip_pairs is None else tuple((int(a), int(b)) for a, b in flip_pairs)
        self.train = bool(train)
        self.upper_body_ids = None if upper_body_ids is None else tuple(int(i) for i in upper_body_ids)
        self.scale_factor = float(scale_factor)
        self.rotation_factor = float(rotation_factor)
        self.rotation_prob = float(rotation_prob)
        self.flip_prob = float(flip_prob)
        self.half_body_prob = float(half_body_prob)
        self.num_joints_half_body = int(num_joints_half_body)
        self.padding = float(padding)
        self.use_udp = isinstance(codec, UDPHeatmap) if use_udp is None else bool(use_udp)
        self.jitter = jitter
        self.joint_weights = None if joint_weights is None else tuple(float(v) for v in joint_weights)
        # the normalisation (x / 255 - mean) / std as x * gain + shift
        mean, std = np.array(self.mean), np.array(self.std)
        self._gain = torch.tensor(1 / (255 * std), dtype=torch.float32).view(3, 1, 1)
        self._shift = torch.tensor(-mean / std, dtype=torch.float32).view(3, 1, 1)

    @property
    def aspect_ratio(self) -> float:
        h, w = self.input_size
        return w / h

    def __repr__(self) -> str:
        return (
            f"TopDownTransform(input_size={self.input_size}, codec={self.codec!r}, train={self.train}, "
            f"jitter={self.jitter!r}, use_udp={self.use_udp})"
        )

    # -- the random parameters --------------------------------------------------------------------------
    def center_scale(self, box_xywh: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """``center (2,)`` and ``scale (2,)`` of a box with this input's aspect ratio and padding (float64)."""
        center, scale = box_to_center_scale(
            np.asarray(box_xywh, dtype=np.float64), self.aspect_ratio, self.padding, PIXEL_STD
        )
        return center, scale

    def _half_body(
        self, joints: np.ndarray, visible: np.ndarray, upper_ids: Sequence[int], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """Official ``half_body_transform``: centre and scale of the upper or lower body, or ``None``."""
        is_upper = np.zeros(len(joints), dtype=bool)
        is_upper[[i for i in upper_ids if i < len(joints)]] = True
        upper = joints[visible & is_upper]
        lower = joints[visible & ~is_upper]
        # The official code draws a standard normal here (randn() < 0.5): the upper body wins ~69 % of the time.
        if rng.standard_normal() < 0.5 and len(upper) > 2:
            selected = upper
        else:
            selected = lower if len(lower) > 2 else upper
        if len(selected) < 2:
            return None
        center = selected.mean(axis=0)
        w, h = selected.max(axis=0) - selected.min(axis=0)
        if w > self.aspect_ratio * h:
            h = w / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio
        return center, np.array((w, h)) / PIXEL_STD * 1.5

    def _augment(
        self, joints: np.ndarray, visible: np.ndarray, center: np.ndarray, scale: np.ndarray, rng
    ) -> tuple[np.ndarray, np.ndarray, float, bool]:
        upper_ids = self.upper_body_ids
        if upper_ids is None:
            upper_ids = COCO_UPPER_BODY_IDS if len(joints) == 17 else ()
        if (
            upper_ids
            and int(visible.sum()) > self.num_joints_half_body
            and rng.random() < self.half_body_prob
        ):
            half = self._half_body(joints, visible, upper_ids, rng)
            if half is not None:
                center, scale = half
        sf, rf = self.scale_factor, self.rotation_factor
        if self.jitter == "normal":  # np.clip's clipping, on Python floats (np.clip costs µs per call)
            scale = scale * min(max(rng.standard_normal() * sf + 1, 1 - sf), 1 + sf)
            rot = (
                min(max(rng.standard_normal() * rf, -2 * rf), 2 * rf)
                if rng.random() <= self.rotation_prob
                else 0.0
            )
        else:
            scale = scale * float(rng.uniform(1 - sf, 1 + sf))
            rot = float(rng.uniform(-rf, rf)) if rng.random() <= self.rotation_prob else 0.0
        flipped = self.flip_pairs is not None and self.flip_prob > 0 and rng.random() <= self.flip_prob
        return center, scale, rot, bool(flipped)

    # -- the call ----------------------------------------------------------------------------------------
    def __call__(
        self,
        image: ImageLike,
        keypoints: np.ndarray | Sequence[Sequence[float]],
        box: Sequence[float],
        rng: np.random.Generator | None = None,
    ) -> dict[str, Any]:
        img = _to_rgb_array(image)
        kp = np.asarray(keypoints, dtype=np.float64)
        k = self.codec_keypoints(kp)
        joints = kp[:, :2].copy()
        visible = np.minimum(kp[:, 2], 1.0) > 0 if kp.shape[1] > 2 else np.ones(k, dtype=bool)
        finite = np.isfinite(joints).all(axis=1)
        joints[~finite] = 0.0
        visible &= finite
        center, scale = self.center_scale(box)
        rot, flipped = 0.0, False
        if self.train:
            if rng is None:
                raise ValueError("a training transform needs rng, a numpy.random.Generator")
            center, scale, rot, flipped = self._augment(joints, visible, center, scale, rng)
        width = img.shape[1]
        if flipped:
            perm = _flip_index(self.flip_pairs, k)
            joints = joints[perm]
            joints[:, 0] = width - 1 - joints[:, 0]
            visible = visible[perm]
            center = np.array((width - 1 - center[0], center[1]))
        h, w = self.input_size
        trans = get_affine_transform(
            center, scale, rot, (w, h), udp=self.use_udp, pixel_std=PIXEL_STD
        )  # (2, 3) float64, in the (possibly flipped) image's frame
        full = trans
        if flipped:  # sample the unflipped image: x_flipped = width - 1 - x
            mirror = np.array(((-1.0, 0.0, width - 1.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)))
            full = trans @ mirror
        # NumPy in: warp_affine copies only the sampled region of the (read-only) photo
        crop = warp_affine(img.transpose(2, 0, 1), full, (w, h), dtype=torch.float32)
        crop = torch.from_numpy(crop).mul_(self._gain).add_(self._shift)  # (crop / 255 - mean) / std
        crop_joints = joints @ trans[:, :2].T + trans[:, 2]
        vis = visible.astype(np.float32)
        heatmaps, weights = self.codec.encode(
            torch.from_numpy(crop_joints[None].astype(np.float32)),
            torch.from_numpy(vis[None]),
            joint_weights=self.joint_weights,
        )
        return {
            "image": crop.contiguous(),
            "heatmaps": heatmaps[0],
            "weights": weights[0],
            "keypoints": torch.from_numpy(
                np.concatenate((crop_joints, vis[:, None]), axis=1).astype(np.float32)
            ),
            "center": torch.from_numpy(center.astype(np.float32)),
            "scale": torch.from_numpy(np.asarray(scale, dtype=np.float32)),
            "rotation": float(rot),
            "flipped": bool(flipped),
        }

    def codec_keypoints(self, kp: np.ndarray) -> int:
        """Check a ``(K, 2|3)`` keypoint array; return ``K``."""
        if kp.ndim != 2 or kp.shape[1] not in (2, 3):
            raise ValueError(f"keypoints must be (K, 3) (x, y, v) or (K, 2), got shape {kp.shape}")
        k = kp.shape[0]
        if self.joint_weights is not None and len(self.joint_weights) != k:
            raise ValueError(f"joint_weights has {len(self.joint_weights)} entries for {k} keypoints")
        return k


@functools.lru_cache(maxsize=16)
def _flip_index(flip_pairs: tuple[tuple[int, int], ...], num_keypoints: int) -> np.ndarray:
    """:func:`flip_permutation` as an index array, made once per layout instead of checked for every sample."""
    perm = np.array(flip_permutation(flip_pairs, num_keypoints))
    perm.flags.writeable = False  # shared by every sample
    return perm


def landmark_transform(
    input_size: Sequence[int],
    codec: Codec,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    flip_pairs: Sequence[Sequence[int]] | None,
    train: bool,
) -> TopDownTransform:
    """The HRNet-Facial augmentation: scale ``U(0.75, 1.25)``, rotation ``U(-30, 30)`` with p = 0.6, flip with
    p = 0.5, no half-body; the box (``scale * 200``, square) padded by 1.25 as HRNet-Facial does at load."""
    return TopDownTransform(
        input_size,
        codec,
        mean=mean,
        std=std,
        flip_pairs=flip_pairs,
        train=train,
        upper_body_ids=(),
        scale_factor=0.25,
        rotation_factor=30.0,
        half_body_prob=0.0,
        jitter="uniform",
    )


# ----------------------------------------------------------------------------------------------------------
# datasets
# ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """One top-down sample.

    ``box`` is ``(x, y, w, h)`` in image pixels (cleaned ground truth, or a detection); ``keypoints`` ``(K, 3)``
    ``(x, y, v)`` (zeros for detections); ``ann_id`` the annotation id (``None`` for a detection, whose index in
    the detection file is ``det_index``); ``area`` the annotation's segment area (the box area for a
    detection); ``score`` 1 for ground truth, the detector's score otherwise.
    """

    image_path: Path
    image_id: int
    box: tuple[float, float, float, float]
    keypoints: np.ndarray = field(repr=False)
    score: float = 1.0
    area: float = 0.0
    ann_id: int | None = None
    det_index: int | None = None
    image_size: tuple[int, int] | None = None  # (w, h) from the annotation file
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        return f"annotation {self.ann_id}" if self.ann_id is not None else f"detection #{self.det_index}"


class _TopDownDataset(Dataset):
    """Shared ``__getitem__`` / seeding of the two datasets."""

    instances: list[Instance]
    transform: Callable[..., dict[str, Any]]
    source: str
    seed: int
    epoch: int
    exif_transpose: bool

    def _setup(self, source: Path, image_dir, transform, seed: int, exif_transpose: bool) -> None:
        """The fields both datasets set the same way."""
        self.image_dir = Path(image_dir)
        self.transform = transform
        self.source = str(source)
        self.seed = int(seed)
        self.epoch = 0
        self.exif_transpose = bool(exif_transpose)

    def __len__(self) -> int:
        return len(self.instances)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation of this epoch: sample ``i`` is drawn from ``default_rng([seed, epoch, i])``."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def load(self, inst: Instance) -> np.ndarray:
        context = f"{inst.label} in {self.source}"
        img = load_image(inst.image_path, exif_transpose=self.exif_transpose, context=context)
        if inst.image_size is not None and (img.shape[1], img.shape[0]) != inst.image_size:
            w, h = inst.image_size
            raise ValueError(
                f"{inst.image_path} is {img.shape[1]}x{img.shape[0]} pixels but {self.source} gives {w}x{h} "
                f"({context}); check the file (EXIF rotation? pass exif_transpose=True)"
            )
        return img

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} instances")
        index = index % len(self)
        inst = self.instances[index]
        out = self.transform(self.load(inst), inst.keypoints, inst.box, self.rng(index))
        out.update(image_id=int(inst.image_id), index=index, score=float(inst.score), area=float(inst.area))
        return out


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{what} not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {what} {path}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON ({e}); give a COCO-format {what}") from None


def _known_layout(names: Sequence[str]) -> KeypointLayout | None:
    return next((lay for lay in LAYOUTS.values() if tuple(lay.keypoint_names) == tuple(names)), None)


def _pairs_from_names(names: Sequence[str]) -> tuple[tuple[int, int], ...]:
    """Left/right pairs of a layout this package does not know, from names such as ``left_paw`` /
    ``right_paw`` or ``l_ear`` / ``r_ear``."""
    index = {n.lower(): i for i, n in enumerate(names)}
    pairs = []
    for name, i in index.items():
        if "left" in name:
            other = name.replace("left", "right")
        elif name.startswith("l_"):
            other = "r_" + name[2:]
        else:
            continue
        if other in index:
            pairs.append((i, index[other]))
    return tuple(pairs)


def _clean_box(box: Sequence[float], width: float, height: float) -> tuple[float, float, float, float] | None:
    """Official ``_load_coco_keypoint_annotation_kernal`` box sanitising: clip into the image, ``w - 1``."""
    x, y, w, h = (float(v) for v in box)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2 = min(width - 1.0, x1 + max(0.0, w - 1.0))
    y2 = min(height - 1.0, y1 + max(0.0, h - 1.0))
    if x2 < x1 or y2 < y1:
        return None
    return x1, y1, x2 - x1, y2 - y1


class CocoKeypointDataset(_TopDownDataset):
    """Top-down instances of a COCO-format keypoint file.

    Args:
        ann_file: COCO keypoint JSON (``images``, ``annotations``, ``categories`` with ``keypoints`` names
            and optionally ``skeleton``, 1-based as in COCO). ``K`` comes from the file.
        image_dir: folder the images' ``file_name`` are relative to.
        transform: a :class:`TopDownTransform` (or any callable with its signature).
        detections: a COCO detection-results JSON (a list of ``image_id``, ``category_id``, ``bbox``,
            ``score``): instances from these boxes instead of the ground truth (official
            ``TEST.USE_GT_BBOX = False``); detections of other categories are skipped.
        score_threshold: detections with a lower score are skipped (official ``TEST.IMAGE_THRE``, 0.0).
        seed: augmentation seed (see :meth:`set_epoch`).
        category_id: the keypoint category to use when the file has several.
        exif_transpose: apply EXIF orientation when decoding (off: COCO's annotations ignore it).

    Ground-truth instances follow the official filters: crowd annotations and annotations without labelled
    keypoints (``max(keypoints) == 0`` officially; also all ``v == 0``, as mmpose) are skipped, and so are
    annotations with a non-positive ``area``; boxes are clipped to the image as the official code does
    (``x1 = max(0, x)``, ``x2 = min(W - 1, x1 + max(0, w - 1))``, likewise ``y``). A box entirely outside its
    image, a keypoint list of the wrong length, an unknown image id or a set empty after filtering are errors
    that name the file and the annotation.

    Items (``ds[i]``): the transform's dict (see :class:`TopDownTransform`) plus ``image_id``, ``index`` (``i``),
    ``score`` (box score) and ``area`` (:attr:`Instance.area`); the default ``collate`` batches them. The
    transform is only used by ``__getitem__``: it may be assigned after construction (e.g. once ``layout`` is
    known).

    Attributes:
        layout: :class:`KeypointLayout` — names from the file; flip pairs, OKS sigmas and joint weights from a
            known layout with the same names (COCO, MPII), else flip pairs from ``left_*`` / ``right_*`` names
            and the category's ``sigmas`` if it has them; skeleton from the file.
        num_keypoints, category_id, instances, image_ids (all image ids of the file, sorted).
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        transform: Callable[..., dict[str, Any]],
        *,
        detections: str | os.PathLike | None = None,
        score_threshold: float = 0.0,
        seed: int = 0,
        category_id: int | None = None,
        exif_transpose: bool = False,
    ) -> None:
        self.ann_file = Path(ann_file)
        self._setup(self.ann_file, image_dir, transform, seed, exif_transpose)
        self.detections = None if detections is None else Path(detections)
        self.score_threshold = float(score_threshold)
        data = _read_json(self.ann_file, "keypoint annotation file")
        if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
            raise ValueError(
                f"{self.ann_file} is not a COCO keypoint file: need a JSON object with 'images', 'annotations' "
                "and 'categories'"
            )
        self.category = self._category(data, category_id)
        self.category_id = int(self.category["id"])
        names = tuple(str(n) for n in self.category["keypoints"])
        self.num_keypoints = len(names)
        self.layout = self._layout(names)
        self.images = self._images(data)
        self.image_ids = sorted(self.images)
        self.annotations = [
            a for a in data["annotations"] if isinstance(a, dict) and a.get("category_id") == self.category_id
        ]
        for a in self.annotations:
            self._check_annotation(a)
        if self.detections is None:
            self.instances = self._gt_instances()
        else:
            self.instances = self._det_instances()

    # -- parsing ----------------------------------------------------------------------------------------
    def _category(self, data: dict, category_id: int | None) -> dict:
        cats = [c for c in data.get("categories") or [] if isinstance(c, dict) and c.get("keypoints")]
        if category_id is not None:
            cats = [c for c in cats if c.get("id") == category_id]
        if not cats:
            which = f" with id {category_id}" if category_id is not None else ""
            raise ValueError(
                f"{self.ann_file} has no keypoint category{which} (a 'categories' entry with a 'keypoints' list "
                "of names)"
            )
        if len(cats) > 1:
            ids = [c.get("id") for c in cats]
            raise ValueError(
                f"{self.ann_file} has several keypoint categories {ids}; choose one with category_id"
            )
        return cats[0]

    def _layout(self, names: tuple[str, ...]) -> KeypointLayout:
        known = _known_layout(names)
        skeleton = self.category.get("skeleton") or []
        try:
            skel = tuple((int(a) - 1, int(b) - 1) for a, b in skeleton)
        except (TypeError, ValueError):
            raise ValueError(
                f"{self.ann_file}: the category's skeleton must be pairs of 1-based indices"
            ) from None
        sigmas = self.category.get("sigmas")
        try:
            return KeypointLayout(
                name=known.name if known else str(self.category.get("name", "custom")),
                keypoint_names=names,
                flip_pairs=known.flip_pairs if known else _pairs_from_names(names),
                skeleton=skel or (known.skeleton if known else ()),
                sigmas=known.sigmas if known else (tuple(float(s) for s in sigmas) if sigmas else None),
                joint_weights=known.joint_weights if known else None,
            )
        except ValueError as e:
            raise ValueError(f"{self.ann_file}: {e}") from None

    def _images(self, data: dict) -> dict[int, dict]:
        images = {}
        for img in data.get("images") or []:
            try:
                images[int(img["id"])] = {
                    "path": self.image_dir / str(img["file_name"]),
                    "size": (int(img["width"]), int(img["height"]))
                    if "width" in img and "height" in img
                    else None,
                }
            except (KeyError, TypeError, ValueError):
                raise ValueError(
                    f"{self.ann_file}: an image entry needs 'id' and 'file_name' (and 'width', 'height'), got {img!r}"
                ) from None
        return images

    def _check_annotation(self, a: dict) -> None:
        ann_id = a.get("id")
        kp = a.get("keypoints")
        if not isinstance(kp, list) or len(kp) != 3 * self.num_keypoints:
            got = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise ValueError(
                f"{self.ann_file}: annotation {ann_id} has {got} keypoint values; the category has "
                f"{self.num_keypoints} keypoints, so 3 * {self.num_keypoints} = {3 * self.num_keypoints} are needed"
            )
        box = a.get("bbox")
        if not isinstance(box, list) or len(box) != 4:
            raise ValueError(f"{self.ann_file}: annotation {ann_id} needs a 'bbox' [x, y, w, h], got {box!r}")
        if a.get("image_id") not in self.images:
            raise ValueError(
                f"{self.ann_file}: annotation {ann_id} refers to image {a.get('image_id')!r}, which is not in 'images'"
            )

    def _gt_instances(self) -> list[Instance]:
        out, skipped = [], {"crowd": 0, "no labelled keypoints": 0, "zero area": 0}
        by_image: dict[int, list[dict]] = {}
        for a in self.annotations:
            by_image.setdefault(int(a["image_id"]), []).append(a)
        for image_id in self.image_ids:
            image = self.images[image_id]
            for a in by_image.get(image_id, []):
                if a.get("iscrowd", 0):
                    skipped["crowd"] += 1
                    continue
                kp = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
                if kp.max() == 0 or not (kp[:, 2] > 0).any():
                    skipped["no labelled keypoints"] += 1
                    continue
                x, y, w, h = (float(v) for v in a["bbox"])
                area = float(a.get("area", w * h))
                if image["size"] is None:
                    raise ValueError(
                        f"{self.ann_file}: image {image_id} has no 'width'/'height' (annotation {a.get('id')})"
                    )
                box = _clean_box((x, y, w, h), *image["size"])
                if box is None or x + w <= 0 or y + h <= 0:
                    iw, ih = image["size"]
                    raise ValueError(
                        f"{self.ann_file}: annotation {a.get('id')} has bbox {[x, y, w, h]} entirely outside its "
                        f"{iw}x{ih} image {image['path'].name}; fix or remove the annotation"
                    )
                if area <= 0:
                    skipped["zero area"] += 1
                    continue
                extra = {"head_bbox": a["head_bbox"]} if "head_bbox" in a else {}
                out.append(
                    Instance(
                        image["path"],
                        image_id,
                        box,
                        kp,
                        1.0,
                        area,
                        ann_id=a.get("id"),
                        image_size=image["size"],
                        extra=extra,
                    )
                )
        if not out:
            details = ", ".join(f"{n} {what}" for what, n in skipped.items() if n)
            raise ValueError(
                f"{self.ann_file}: no instances left after filtering {len(self.annotations)} annotation(s) of "
                f"category {self.category_id}" + (f" ({details} skipped)" if details else "")
            )
        return out

    def _det_instances(self) -> list[Instance]:
        dets = _read_json(self.detections, "detection results file")
        if not isinstance(dets, list):
            raise ValueError(f"{self.detections} must be a JSON list of detections (COCO results format)")
        zeros = np.zeros((self.num_keypoints, 3))
        out, low = [], 0
        for i, d in enumerate(dets):
            if not isinstance(d, dict) or "bbox" not in d or "image_id" not in d:
                raise ValueError(
                    f"{self.detections}: detection #{i} needs 'image_id', 'bbox' and 'score', got {d!r}"
                )
            if d.get("category_id", self.category_id) != self.category_id:
                continue
            score = float(d.get("score", 1.0))
            if score < self.score_threshold:
                low += 1
                continue
            image = self.images.get(d["image_id"])
            if image is None:
                raise ValueError(
                    f"{self.detections}: detection #{i} refers to image {d['image_id']!r}, not in {self.ann_file}"
                )
            try:
                x, y, w, h = (float(v) for v in d["bbox"])
            except (TypeError, ValueError):
                raise ValueError(
                    f"{self.detections}: detection #{i} has bbox {d['bbox']!r}; need [x, y, w, h]"
                ) from None
            if not (w > 0 and h > 0):
                raise ValueError(
                    f"{self.detections}: detection #{i} has bbox {[x, y, w, h]} without a positive size"
                )
            if image["size"] is not None:
                iw, ih = image["size"]
                if x >= iw or y >= ih or x + w <= 0 or y + h <= 0:
                    raise ValueError(
                        f"{self.detections}: detection #{i} has bbox {[x, y, w, h]} entirely outside its {iw}x{ih} "
                        f"image {image['path'].name}"
                    )
            out.append(
                Instance(
                    image["path"],
                    int(d["image_id"]),
                    (x, y, w, h),
                    zeros,
                    score,
                    w * h,
                    det_index=i,
                    image_size=image["size"],
                )
            )
        if not out:
            raise ValueError(
                f"{self.detections}: no detections of category {self.category_id} with score >= "
                f"{self.score_threshold} ({low} below the threshold)"
            )
        return out

    # -- evaluation ------------------------------------------------------------------------------------------
    def ground_truth(self) -> dict[str, np.ndarray]:
        """Every annotation of the category (crowds and unlabelled ones included, as COCOeval uses them), as the
        arrays :func:`~hrnet_backbones.keypoints.coco_keypoint_stats` takes: ``gt_keypoints (G, K, 3)``,
        ``gt_areas (G,)``, ``gt_image_ids (G,)``, ``gt_bboxes (G, 4)``, ``gt_iscrowd (G,)``."""
        anns = self.annotations
        k = self.num_keypoints
        return {
            "gt_keypoints": np.asarray([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, k, 3),
            "gt_areas": np.asarray([float(a.get("area", a["bbox"][2] * a["bbox"][3])) for a in anns]),
            "gt_image_ids": np.asarray([int(a["image_id"]) for a in anns], dtype=np.int64),
            "gt_bboxes": np.asarray([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4),
            "gt_iscrowd": np.asarray([int(a.get("iscrowd", 0)) for a in anns], dtype=np.int64),
        }


# ----------------------------------------------------------------------------------------------------------
# HRNet-Facial landmark CSVs
# ----------------------------------------------------------------------------------------------------------

_FACE_LAYOUTS = {lay.num_keypoints: lay for lay in (WFLW_98, W300_68, COFW_29, AFLW_19)}


class LandmarkCsvDataset(_TopDownDataset):
    """Faces of an HRNet-Facial landmark CSV (WFLW, 300W, COFW, AFLW).

    The CSV has a header row and one face per row: ``image_name, scale, center_w, center_h, x1, y1, ...,
    xN, yN`` — AFLW's adds ``box_size`` after ``scale`` (found by the header name, else by an odd number of
    coordinate columns). ``image_name`` is relative to ``image_dir``. As in HRNet-Facial, the face box is the
    square of side ``scale * 200`` around the centre, enlarged by 1.25 (the transform's ``padding``: use
    :func:`landmark_transform`); landmarks with ``y <= 0`` count as missing (HRNet-Facial's ``tpts[i, 1] > 0``).
    Unlike HRNet-Facial, coordinates keep this package's pixel-centre convention (its ``+1`` / ``-1`` shifts and
    ``x' = W - x`` flip are not reproduced).

    Args:
        csv_file, image_dir, transform: as above.
        layout: a layout or its name; default: the face layout with that many landmarks (98 WFLW, 68 300W,
            29 COFW, 19 AFLW).
        seed, exif_transpose: as :class:`CocoKeypointDataset`.

    Attributes:
        layout, num_keypoints, instances; ``landmarks (N, L, 2)`` ground truth in image pixels and
        ``box_sizes (N,)`` (AFLW's NME normaliser; ``None`` without the column). ``image_id`` is the row index.
    """

    def __init__(
        self,
        csv_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        transform: Callable[..., dict[str, Any]],
        layout: str | KeypointLayout | None = None,
        *,
        seed: int = 0,
        exif_transpose: bool = False,
    ) -> None:
        self.csv_file = Path(csv_file)
        self._setup(self.csv_file, image_dir, transform, seed, exif_transpose)
        rows = self._read_rows()
        header, body = rows[0], rows[1:]
        if not body:
            raise ValueError(f"{self.csv_file} has no data rows after the header")
        has_box = len(header) > 2 and header[2].strip().lower() == "box_size" or (len(header) - 4) % 2 == 1
        first = 5 if has_box else 4
        if (len(header) - first) % 2 or len(header) - first < 2:
            raise ValueError(
                f"{self.csv_file}: {len(header)} columns do not make image_name, scale, [box_size,] center_w, "
                "center_h and x, y pairs"
            )
        n = (len(header) - first) // 2
        if layout is None:
            if n not in _FACE_LAYOUTS:
                raise ValueError(
                    f"{self.csv_file} has {n} landmarks, not a known face layout ({sorted(_FACE_LAYOUTS)}); pass layout="
                )
            self.layout = _FACE_LAYOUTS[n]
        else:
            self.layout = get_layout(layout)
            if self.layout.num_keypoints != n:
                raise ValueError(
                    f"{self.csv_file} has {n} landmarks but layout {self.layout.name!r} has {self.layout.num_keypoints}"
                )
        self.num_keypoints = n
        self.instances, marks, boxes = [], [], []
        for r, row in enumerate(body):
            line = r + 2
            if len(row) != len(header):
                raise ValueError(
                    f"{self.csv_file}, line {line}: {len(row)} columns, the header has {len(header)}"
                )
            try:
                values = np.asarray([float(v) for v in row[1:]], dtype=np.float64)
            except ValueError:
                raise ValueError(f"{self.csv_file}, line {line}: a column is not a number") from None
            scale = values[0]
            cx, cy = values[first - 3], values[first - 2]
            if not scale > 0:
                raise ValueError(f"{self.csv_file}, line {line}: scale must be positive, got {scale}")
            pts = values[first - 1 :].reshape(n, 2)
            vis = (pts[:, 1] > 0).astype(np.float64)
            side = scale * PIXEL_STD
            box = (cx - side / 2, cy - side / 2, side, side)
            kp = np.concatenate((pts, vis[:, None]), axis=1)
            self.instances.append(
                Instance(
                    self.image_dir / row[0].strip(),
                    r,
                    box,
                    kp,
                    1.0,
                    side * side,
                    ann_id=None,
                    det_index=None,
                    extra={"line": line},
                )
            )
            marks.append(pts)
            if has_box:
                boxes.append(values[1])
        self.landmarks = np.stack(marks)
        self.box_sizes = np.asarray(boxes) if has_box else None
        self.image_ids = list(range(len(self.instances)))

    def _read_rows(self) -> list[list[str]]:
        try:
            with open(self.csv_file, newline="", encoding="utf-8") as fh:
                rows = [row for row in csv.reader(fh) if row]
        except FileNotFoundError:
            raise ValueError(f"landmark CSV not found: {self.csv_file}") from None
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise ValueError(f"cannot read {self.csv_file} as a CSV: {e}") from None
        if not rows:
            raise ValueError(f"{self.csv_file} is empty; need a header and one row per face")
        return rows

    def load(self, inst: Instance) -> np.ndarray:
        context = f"line {inst.extra['line']} of {self.csv_file}"
        return load_image(inst.image_path, exif_transpose=self.exif_transpose, context=context)
