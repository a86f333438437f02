"""Synthetic keypoint data sets that need no download: articulated figures (COCO keypoints) and faces (landmarks).

``hrnet-backbones synth --out DIR --kind pose|face --images N --seed S`` writes real files in the formats the
official code and mmpose read, so the data pipeline, ``train`` and ``evaluate`` run on them as on the real thing:

- pose: ``DIR/images/{train,val}/*.jpg`` and ``DIR/annotations/person_keypoints_{train,val}.json`` (COCO keypoint
  format, the person category with COCO's 17 keypoint names and 1-based skeleton);
- face: ``DIR/images/{train,val}/*.jpg`` and ``DIR/annotations/face_landmarks_{train,val}.csv`` (HRNet-Facial's
  CSV layout: ``image_name, scale, center_w, center_h`` then ``original_{i}_x, original_{i}_y`` per landmark;
  AFLW adds ``box_size`` after ``scale`` as the official AFLW files do);

and ``DIR/synth.json`` describing the set. Everything is drawn with Pillow / NumPy and encoded by Pillow (JPEG,
quality 90); a seed gives byte-identical files (with the same Pillow and NumPy).

Pose images hold one to four annotated figures placed apart (their rough boxes overlap by at most
``PERSON_OVERLAP`` IoU; generator version 2, version 1 let them pile up), occluding objects, crowds and clutter.

Pose annotations: ``bbox`` and ``area`` are those of the figure's whole silhouette inside the image, parts hidden
behind other things included (so the box holds every labelled keypoint); ``v = 2`` where the keypoint's own limb
is on top, ``v = 1`` where something else covers it (another person, an object, the figure's own torso),
``v = 0`` with ``x = y = 0`` outside the image and for the nose and eyes of a figure turned away. Crowds of small
figures are one ``iscrowd = 1`` annotation each (silhouette box and area, no keypoints).

Pixel coordinates follow the package: pixel centres at integers, ``x`` right, ``y`` down; a horizontal flip of a
``W``-wide image maps ``x`` to ``W - 1 - x``.

Left and right. A person's left is on the viewer's right when the person faces the camera and on the viewer's
left when the person turns away; a horizontally mirrored photo shows a person facing the same way with the sides
exchanged. A drawing cue tied to one side (say, the left arm in a lighter shade) would survive a mirror
unchanged while the labels swap, so flip augmentation would teach the opposite of the data; the figures
therefore carry only mirror-symmetric cues, as people do: the face (eyes, nose, mouth, a collar on the chest)
says that a figure faces the camera, hair on the back of the head and no face say it faces away, and which side
is which follows from that and from the limbs' attachment. Face images use the landmark layouts' convention
(index order by image side), which flipping with the layouts' flip pairs keeps.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .cliutil import CLIError
from .fileio import atomic_folder, check_output_folder, make_parent_folders, only_these_entries
from .keypoints.datasets import COCO_KEYPOINTS, KeypointLayout, UnknownLayoutError, get_layout

__all__ = [
    "FACE_LAYOUTS",
    "GENERATOR_VERSION",
    "FacePose",
    "FigurePose",
    "SynthPaths",
    "face_landmarks",
    "make_face_dataset",
    "make_pose_dataset",
    "mean_pose_baseline_ap",
    "mean_shape_baseline_nme",
    "render_face",
    "render_figure",
    "synth_args",
    "synth_run",
]

GENERATOR_VERSION = 2
#: the most two annotated figures' rough boxes overlap (IoU), and the tries to place a figure within it
PERSON_OVERLAP = 0.15
PLACEMENT_TRIES = 8
DEFAULT_IMAGE_SIZE = (256, 256)
JPEG_QUALITY = 90
FACE_LAYOUTS = ("300w", "wflw", "cofw", "aflw")


@dataclass(frozen=True)
class SynthPaths:
    """Where a generated data set lies. For pose data the annotations are COCO JSON files, for faces CSV files;
    ``*_images`` are the folders the annotations' file names are relative to (COCO) or, for the CSV, whose
    parent ``images`` is (``image_name`` = ``train/000001.jpg``)."""

    root: Path
    train_ann: Path
    train_images: Path
    val_ann: Path
    val_images: Path


# ================================================================================================ shared parts
def _is_synth_folder(folder: Path) -> tuple[bool, str]:
    ours, why = only_these_entries(folder, ("images", "annotations", "synth.json"), "synth")
    if ours and not (folder / "synth.json").is_file():
        return False, "it has no synth.json"
    return ours, why


def _prepare_out(out: Path, force: bool) -> None:
    """Before any drawing: never the current folder, never a folder synth did not write (even with --force);
    then the missing parent folders are created, as ``convert`` and ``train`` do."""
    check_output_folder(out, force, command="synth", is_ours=_is_synth_folder)
    make_parent_folders(out)


def _check_common(images: int, seed: int, val_fraction: float, image_size: Sequence[int]) -> tuple[int, int]:
    if isinstance(images, bool) or not isinstance(images, int) or images < 1:
        raise ValueError(f"--images must be a positive integer, got {images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    h, w = _image_size(image_size)
    n_val = round(images * val_fraction)
    if val_fraction > 0 and n_val == 0:
        n_val = 1
    if images - n_val < 1:
        raise ValueError(
            f"{images} image(s) with --val-fraction {val_fraction} leave no training image; ask for more --images"
        )
    return images - n_val, n_val


def _image_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(image_size, int):
        image_size = (image_size, image_size)
    h, w = (int(v) for v in image_size)
    if min(h, w) < 32 or max(h, w) > 4096:
        raise ValueError(f"--image-size must be two integers (height width) in [32, 4096], got {h} {w}")
    return h, w


def _rng(seed: int, split: str, index: int) -> np.random.Generator:
    # One stream per image: an image does not change when more images are asked for.
    return np.random.default_rng([seed, 0 if split == "train" else 1, index])


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def _color(rng: np.random.Generator, lo: int = 0, hi: int = 256) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(lo, hi, 3))


def _shade(c: Sequence[int], f: float) -> tuple[int, int, int]:
    """Darker (f < 1) or lighter (f > 1) version of an RGB colour."""
    if f <= 1:
        return tuple(int(v * f) for v in c)
    return tuple(int(v + (255 - v) * (f - 1)) for v in c)


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """A textured background: a gradient, stripes or smooth noise, then clutter shapes (some limb-like)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0 = np.array(_color(rng), np.float32)
    c1 = np.array(_color(rng), np.float32)
    kind = rng.integers(0, 3)
    if kind == 0:  # linear gradient at a random angle
        a = rng.uniform(0, 2 * math.pi)
        t = (xx * math.cos(a) + yy * math.sin(a)) / (abs(w * math.cos(a)) + abs(h * math.sin(a)) + 1)
        t = t - t.min()
    elif kind == 1:  # stripes
        a = rng.uniform(0, math.pi)
        period = rng.uniform(6, 40)
        t = 0.5 + 0.5 * np.sin((xx * math.cos(a) + yy * math.sin(a)) * 2 * math.pi / period)
    else:  # smooth noise: a coarse random grid upsampled bilinearly by Pillow
        cells = int(rng.integers(3, 12))
        grid = (rng.random((cells, cells)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(grid).resize((w, h), Image.BILINEAR), np.float32) / 255.0
    t = np.clip(t, 0, 1)[..., None]
    arr = c0 * (1 - t) + c1 * t + rng.standard_normal((h, w, 3), dtype=np.float32) * 6
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(3, 12))):
        _clutter_shape(draw, rng, h, w)
    return img


def _clutter_shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, h: int, w: int) -> None:
    s = min(h, w)
    x, y = rng.uniform(-0.1, 1.1) * w, rng.uniform(-0.1, 1.1) * h
    r = rng.uniform(0.03, 0.2) * s
    col = _color(rng)
    kind = rng.integers(0, 4)
    if kind == 0:
        draw.ellipse([x - r, y - r * rng.uniform(0.3, 1), x + r, y + r * rng.uniform(0.3, 1)], fill=col)
    elif kind == 1:
        draw.rectangle([x - r, y - r * rng.uniform(0.2, 1.5), x + r, y + r], fill=col)
    elif kind == 2:  # limb-like distractor
        a = rng.uniform(0, 2 * math.pi)
        length = rng.uniform(0.1, 0.3) * s
        _capsule(draw, (x, y), (x + length * math.cos(a), y + length * math.sin(a)), r * 0.2, r * 0.15, col)
    else:
        n = int(rng.integers(3, 7))
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        pts = [(x + r * math.cos(t), y + r * math.sin(t)) for t in angles]
        draw.polygon(pts, fill=col)


def _occluder(draw: ImageDraw.ImageDraw, rng: np.random.Generator, x: float, y: float, s: float) -> None:
    """A solid object (box, disc or bar) of size ~``s`` around ``(x, y)``."""
    col = _color(rng)
    kind = rng.integers(0, 3)
    if kind == 0:
        draw.rectangle(
            [x - s * rng.uniform(0.2, 0.6), y - s * rng.uniform(0.2, 0.6), x + s * 0.4, y + s * 0.4], col
        )
    elif kind == 1:
        r = s * rng.uniform(0.25, 0.5)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=col)
    else:
        a = rng.uniform(0, math.pi)
        dx, dy = math.cos(a) * s, math.sin(a) * s
        _capsule(draw, (x - dx, y - dy), (x + dx, y + dy), s * 0.12, s * 0.12, col)


def _capsule(
    draw: ImageDraw.ImageDraw,
    a: Sequence[float],
    b: Sequence[float],
    ra: float,
    rb: float,
    fill: int | tuple[int, ...],
) -> None:
    """A tapered stroke from ``a`` (radius ``ra``) to ``b`` (radius ``rb``) with round ends."""
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    n = math.hypot(dx, dy)
    if n > 1e-6:
        px, py = -dy / n, dx / n
        draw.polygon(
            [(ax + px * ra, ay + py * ra), (bx + px * rb, by + py * rb), (bx - px * rb, by - py * rb)]
            + [(ax - px * ra, ay - py * ra)],
            fill=fill,
        )
    draw.ellipse([ax - ra, ay - ra, ax + ra, ay + ra], fill=fill)
    draw.ellipse([bx - rb, by - rb, bx + rb, by + rb], fill=fill)


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, angle: float, n: int = 36) -> list[tuple]:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    ca, sa = math.cos(angle), math.sin(angle)
    x, y = rx * np.cos(t), ry * np.sin(t)
    return list(zip((cx + ca * x - sa * y).tolist(), (cy + sa * x + ca * y).tolist()))


def _finish(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Camera effects: blur, a brightness / contrast change and sensor noise."""
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 1.2))))
    arr = np.asarray(img, np.float32)
    arr = (arr - 128) * rng.uniform(0.75, 1.2) + 128 + rng.uniform(-25, 25)
    arr += rng.standard_normal(arr.shape, dtype=np.float32) * rng.uniform(1, 8)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=1) + "\n", encoding="utf-8")


# ============================================================================================= pose: figures
# Parts of a figure (the ids in the ownership map are 1 + 32 * figure + part).
_PARTS = (
    "torso",
    "head",
    "l_upperarm",
    "l_forearm",
    "r_upperarm",
    "r_forearm",
    "l_thigh",
    "l_shin",
    "r_thigh",
    "r_shin",
    "l_ear",
    "r_ear",
    "l_hand",
    "r_hand",
    "l_foot",
    "r_foot",
)
_P = {name: i for i, name in enumerate(_PARTS)}
# The parts on which each COCO keypoint may be seen: a keypoint covered by anything else is occluded (v = 1).
_KEYPOINT_PARTS = (
    ("head",),
    ("head",),
    ("head",),
    ("l_ear",),
    ("r_ear",),
    ("torso", "l_upperarm"),
    ("torso", "r_upperarm"),
    ("l_upperarm", "l_forearm"),
    ("r_upperarm", "r_forearm"),
    ("l_forearm", "l_hand"),
    ("r_forearm", "r_hand"),
    ("torso", "l_thigh"),
    ("torso", "r_thigh"),
    ("l_thigh", "l_shin"),
    ("r_thigh", "r_shin"),
    ("l_shin", "l_foot"),
    ("r_shin", "r_foot"),
)
_FACE_KEYPOINTS = (0, 1, 2)  # nose and eyes: not labelled on a figure that faces away


@dataclass(frozen=True)
class _Side:
    """One side's limb parameters. Angles in radians, measured from straight down, positive outwards (away from
    the body's midline), so that a mirror image is the same numbers on the other side."""

    arm: float
    elbow: float
    leg: float
    knee: float
    upper_arm: float  # lengths as fractions of the figure height (shorter = foreshortened)
    forearm: float
    thigh: float
    shin: float
    arm_z: float  # drawing order: < 2 behind the torso, > 2 in front
    leg_z: float


@dataclass(frozen=True)
class FigurePose:
    """Everything that places and draws one figure. ``center`` is the hip centre in image pixels, ``height`` the
    figure's height in pixels, ``rotation`` the in-plane rotation (radians, positive turns clockwise on screen),
    ``facing`` +1 towards the camera (the figure's left on the viewer's right when upright) or -1 away."""

    center: tuple[float, float]
    height: float
    rotation: float
    facing: int
    lean: float
    head_tilt: float
    yaw: float
    shoulder_width: float
    hip_width: float
    left: _Side
    right: _Side
    shirt: tuple[int, int, int]
    pants: tuple[int, int, int]
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    short_sleeves: bool
    shorts: bool

    def mirrored(self, width: int) -> FigurePose:
        """The figure seen in a mirror of an image ``width`` pixels wide: its keypoints are the mirrored ones with
        the flip pairs swapped, and it is drawn as the mirrored drawing."""
        return replace(
            self,
            center=(width - 1 - self.center[0], self.center[1]),
            rotation=-self.rotation,
            lean=-self.lean,
            head_tilt=-self.head_tilt,
            yaw=-self.yaw,
            left=self.right,
            right=self.left,
        )


def _random_side(rng: np.random.Generator) -> _Side:
    fore = rng.uniform(0.6, 1.0) if rng.random() < 0.25 else 1.0
    arm = rng.uniform(-0.6, 2.8) if rng.random() < 0.8 else rng.uniform(-1.2, 3.1)
    elbow = rng.uniform(-0.3, 2.4) * (1 if rng.random() < 0.7 else -1)
    leg = rng.uniform(-0.35, 0.9) if rng.random() < 0.85 else rng.uniform(-0.5, 1.6)
    knee = rng.uniform(-0.2, 1.8) * (1 if rng.random() < 0.5 else -1)
    leg_fore = rng.uniform(0.55, 1.0) if rng.random() < 0.2 else 1.0
    return _Side(
        arm=arm,
        elbow=elbow,
        leg=leg,
        knee=knee,
        upper_arm=0.16 * fore * rng.uniform(0.9, 1.1),
        forearm=0.15 * rng.uniform(0.85, 1.1),
        thigh=0.23 * leg_fore * rng.uniform(0.92, 1.08),
        shin=0.23 * rng.uniform(0.92, 1.08),
        arm_z=rng.uniform(1.0, 1.9) if rng.random() < 0.25 else rng.uniform(3.0, 3.9),
        leg_z=rng.uniform(0.0, 0.9),
    )


def _random_figure(rng: np.random.Generator, center: tuple[float, float], height: float) -> FigurePose:
    rot = (
        rng.normal(0, 0.3) if rng.random() < 0.95 else rng.uniform(-math.pi, math.pi)
    )  # now and then any angle
    skin_base = rng.uniform(0.3, 1.0)
    return FigurePose(
        center=center,
        height=height,
        rotation=float(rot),
        facing=1 if rng.random() < 0.75 else -1,
        lean=float(rng.normal(0, 0.15)),
        head_tilt=float(rng.normal(0, 0.2)),
        yaw=float(rng.uniform(-0.7, 0.7)),
        shoulder_width=float(rng.uniform(0.1, 0.13)),
        hip_width=float(rng.uniform(0.06, 0.085)),
        left=_random_side(rng),
        right=_random_side(rng),
        shirt=_color(rng),
        pants=_color(rng, 0, 200),
        skin=(int(255 * skin_base), int(200 * skin_base), int(160 * skin_base)),
        hair=_color(rng, 0, 120),
        short_sleeves=bool(rng.random() < 0.4),
        shorts=bool(rng.random() < 0.3),
    )


def _direction(angle: float, sign: float) -> np.ndarray:
    # straight down rotated outwards by ``angle`` on a side whose outward direction is ``sign`` * x
    return np.array([sign * math.sin(angle), math.cos(angle)])


def _rot(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s], [s, c]])


def _figure_geometry(f: FigurePose) -> dict[str, np.ndarray]:
    """Named 2D points of a figure: the 17 COCO keypoints (``"kp"``, (17, 2), image pixels) and the shapes'
    anchor points (in Pillow's drawing coordinates, half a pixel off). The body frame has its origin at the hip centre, ``y`` down, unit the figure height."""
    sl = float(f.facing)  # x sign of the figure's left side
    upper = _rot(f.lean)  # the upper body leans about the hip centre
    neck = upper @ np.array([0.0, -0.3])
    sw, hw = f.shoulder_width, f.hip_width
    pts: dict[str, np.ndarray] = {"neck": neck, "hip_c": np.zeros(2)}
    for side, s, p in (("l", sl, f.left), ("r", -sl, f.right)):
        sh = neck + upper @ np.array([s * sw, 0.02])
        el = sh + upper @ (_direction(p.arm, s) * p.upper_arm)
        wr = el + upper @ (_direction(p.arm + p.elbow, s) * p.forearm)
        hp = np.array([s * hw, 0.0])
        kn = hp + _direction(p.leg, s) * p.thigh
        an = kn + _direction(p.leg + p.knee, s) * p.shin
        pts |= {f"{side}_sh": sh, f"{side}_el": el, f"{side}_wr": wr, f"{side}_hip": hp}
        # the torso's corners lie a little outside the shoulder and hip joints
        pts[f"{side}_torso_top"] = neck + upper @ np.array([s * (sw + 0.025), 0.0])
        pts[f"{side}_torso_bottom"] = np.array([s * (hw + 0.035), 0.04])
        pts |= {f"{side}_kn": kn, f"{side}_an": an}
        pts[f"{side}_hand"] = wr + upper @ (_direction(p.arm + p.elbow, s) * 0.03)
        pts[f"{side}_toe"] = an + _direction(p.leg + p.knee - s * sl * 1.2, s) * 0.05
    head_frame = upper @ _rot(f.head_tilt)
    head = neck + head_frame @ np.array([0.0, -0.12])
    pts["head"] = head
    cy = math.cos(f.yaw)
    face_dx = math.sin(f.yaw) * 0.045  # features move towards the side the head turns to
    pts["nose"] = head + head_frame @ np.array([face_dx * 1.2, 0.012])
    pts["mouth"] = head + head_frame @ np.array([face_dx * 1.1, 0.04])
    for side, s in (("l", sl), ("r", -sl)):
        pts[f"{side}_eye"] = head + head_frame @ np.array([s * 0.026 * cy + face_dx, -0.012])
        # the ear sits just outside the head's outline and swings behind it as the head turns
        pts[f"{side}_ear"] = head + head_frame @ np.array([s * 0.078 * cy - face_dx * 0.9, 0.0])
    pts["collar_l"] = neck + upper @ np.array([-0.035, 0.0])
    pts["collar_r"] = neck + upper @ np.array([0.035, 0.0])
    pts["collar_c"] = neck + upper @ np.array([0.0, 0.05])
    order = ("nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_sh", "r_sh", "l_el", "r_el", "l_wr", "r_wr")
    order += ("l_hip", "r_hip", "l_kn", "r_kn", "l_an", "r_an")
    to_image = _rot(f.rotation) * f.height
    # Pillow's pixel i spans [i, i + 1): its centre is at i + 0.5 where ours is at i, so shapes are placed at
    # our coordinates + 0.5 and the keypoints reported in ours.
    c = np.asarray(f.center, np.float64) + 0.5
    out = {k: c + to_image @ v for k, v in pts.items()}
    out["kp"] = np.stack([out[k] for k in order]) - 0.5
    out["head_angle"] = np.array(f.rotation + f.lean + f.head_tilt)
    return out


class _Canvas:
    """An RGB image with an ownership map: which figure part (or other object) is on top at each pixel."""

    def __init__(self, img: Image.Image):
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self.owner = Image.new("I", img.size, 0)
        self.owner_draw = ImageDraw.Draw(self.owner)

    def capsule(self, a, b, ra, rb, color, owner: int, outline: tuple | None = None) -> None:
        if outline is not None:
            _capsule(self.draw, a, b, ra + 1.2, rb + 1.2, outline)
        _capsule(self.draw, a, b, ra, rb, color)
        _capsule(self.owner_draw, a, b, ra, rb, owner)

    def polygon(self, pts, color, owner: int) -> None:
        self.draw.polygon(pts, fill=color)
        self.owner_draw.polygon(pts, fill=owner)

    def mark(self, pts, color) -> None:
        """Paint without changing ownership (features drawn on a part)."""
        self.draw.polygon(pts, fill=color)


_OTHER = 1  # the ownership id of occluders and crowds


def _draw_figure(canvas: _Canvas, f: FigurePose, owner_base: int, mask: ImageDraw.ImageDraw | None) -> dict:
    """Draw a figure (back to front) on ``canvas``; also its full silhouette (ignoring occlusion) on ``mask``."""
    g = _figure_geometry(f)
    h = f.height
    outline = _shade(f.shirt, 0.55)
    pant_line = _shade(f.pants, 0.55)
    items: list[tuple[float, object]] = []

    def limb(z, a, b, ra, rb, col, line, part):
        items.append((z, ("capsule", g[a], g[b], ra * h, rb * h, col, line, part)))

    for side, p in (("l", f.left), ("r", f.right)):
        fore_col = f.skin if f.short_sleeves else f.shirt
        limb(p.arm_z, f"{side}_sh", f"{side}_el", 0.05, 0.043, f.shirt, outline, f"{side}_upperarm")
        limb(p.arm_z + 0.01, f"{side}_el", f"{side}_wr", 0.041, 0.032, fore_col, outline, f"{side}_forearm")
        limb(p.arm_z + 0.02, f"{side}_wr", f"{side}_hand", 0.034, 0.03, f.skin, None, f"{side}_hand")
        shin_col = f.skin if f.shorts else f.pants
        limb(p.leg_z, f"{side}_hip", f"{side}_kn", 0.07, 0.055, f.pants, pant_line, f"{side}_thigh")
        limb(p.leg_z + 0.01, f"{side}_kn", f"{side}_an", 0.053, 0.04, shin_col, pant_line, f"{side}_shin")
        limb(
            p.leg_z + 0.02,
            f"{side}_an",
            f"{side}_toe",
            0.03,
            0.025,
            _shade(f.pants, 0.4),
            None,
            f"{side}_foot",
        )
    torso = [tuple(g[k]) for k in ("l_torso_top", "r_torso_top", "r_torso_bottom", "l_torso_bottom")]
    items.append((2.0, ("torso", torso)))
    items.append((2.5, ("neck",)))
    items.append((4.0, ("ears",)))
    items.append((4.1, ("head",)))
    items.sort(key=lambda t: t[0])

    def own(part: str) -> int:
        return owner_base + _P[part]

    for _, it in items:
        kind = it[0]
        if kind == "capsule":
            _, a, b, ra, rb, col, line, part = it
            canvas.capsule(a, b, ra, rb, col, own(part), line)
            if mask is not None:
                _capsule(mask, a, b, ra, rb, 255)
        elif kind == "torso":
            canvas.draw.polygon([tuple(p) for p in _grow(it[1], 1.2)], fill=outline)
            canvas.polygon(it[1], f.shirt, own("torso"))
            if mask is not None:
                mask.polygon(it[1], fill=255)
            if f.facing > 0:  # a collar: the chest faces the camera
                canvas.mark([tuple(g["collar_l"]), tuple(g["collar_r"]), tuple(g["collar_c"])], outline)
        elif kind == "neck":
            r = 0.03 * h
            canvas.capsule(g["neck"], g["head"], r, r, f.skin, own("torso"))
            if mask is not None:
                _capsule(mask, g["neck"], g["head"], r, r, 255)
        elif kind == "ears":
            for side in ("l", "r"):
                e = g[f"{side}_ear"]
                r = 0.022 * h
                canvas.capsule(e, e, r, r, _shade(f.skin, 0.85), own(f"{side}_ear"))
                if mask is not None:
                    _capsule(mask, e, e, r, r, 255)
        else:
            head = _ellipse_points(*g["head"], 0.068 * h, 0.085 * h, float(g["head_angle"]))
            canvas.polygon(head, f.skin, own("head"))
            if mask is not None:
                mask.polygon(head, fill=255)
            ang = float(g["head_angle"])
            if f.facing > 0:
                hair = _ellipse_points(
                    *(g["head"] + _rot(ang) @ np.array([0, -0.06 * h])), 0.06 * h, 0.03 * h, ang
                )
                canvas.mark(hair, f.hair)
                for side in ("l", "r"):
                    e = g[f"{side}_eye"]
                    r = max(1.0, 0.011 * h)
                    canvas.mark(_ellipse_points(*e, r * 1.3, r, ang, 12), (245, 245, 245))
                    canvas.mark(_ellipse_points(*e, r * 0.6, r * 0.6, ang, 8), (20, 20, 20))
                nose = g["nose"]
                r = max(1.0, 0.01 * h)
                canvas.mark(_ellipse_points(*nose, r, r * 1.2, ang, 10), _shade(f.skin, 0.6))
                canvas.mark(_ellipse_points(*g["mouth"], 0.02 * h, 0.006 * h + 0.5, ang, 12), (150, 40, 40))
            else:
                canvas.mark(head, f.hair)
    return g


def _grow(poly, pixels: float) -> list[np.ndarray]:
    c = np.mean(poly, axis=0)
    return [
        c + (np.asarray(p) - c) * (1 + pixels / max(1e-6, np.linalg.norm(np.asarray(p) - c))) for p in poly
    ]


def _visibility(owner: np.ndarray, kp: np.ndarray, owner_base: int, facing: int) -> np.ndarray:
    """COCO visibility of each keypoint: 0 outside the image (or a face point of a figure facing away), 2 where
    the keypoint's own parts cover most of its 3x3 neighbourhood, else 1 (occluded but labelled)."""
    h, w = owner.shape
    v = np.zeros(len(kp), np.int64)
    for k, (x, y) in enumerate(kp):
        if not (0 <= x <= w - 1 and 0 <= y <= h - 1):
            continue
        if facing < 0 and k in _FACE_KEYPOINTS:
            continue
        xi, yi = int(round(x)), int(round(y))
        patch = owner[max(0, yi - 1) : yi + 2, max(0, xi - 1) : xi + 2]
        allowed = [owner_base + _P[p] for p in _KEYPOINT_PARTS[k]]
        v[k] = 2 if np.isin(patch, allowed).mean() >= 0.5 else 1
    return v


def render_figure(
    pose: FigurePose,
    image_size: Sequence[int] = DEFAULT_IMAGE_SIZE,
    background: Sequence[int] = (128, 128, 128),
) -> tuple[Image.Image, np.ndarray]:
    """One figure on a plain background: the image and its ``(17, 3)`` keypoints ``(x, y, v)`` (COCO order).

    With ``pose.mirrored(W)`` the image is the horizontal mirror of this one and the keypoints are this one's
    mirrored (``x -> W - 1 - x``) with the COCO flip pairs swapped.
    """
    h, w = _image_size(image_size)
    canvas = _Canvas(Image.new("RGB", (w, h), tuple(background)))
    g = _draw_figure(canvas, pose, 32, None)
    v = _visibility(np.asarray(canvas.owner), g["kp"], 32, pose.facing)
    kp = np.concatenate([g["kp"], v[:, None]], 1)
    return canvas.img, kp


def _pose_image(rng: np.random.Generator, h: int, w: int) -> tuple[Image.Image, list[dict]]:
    """One image and its annotations (without ids): ``bbox``, ``area``, ``iscrowd``, ``keypoints`` (17, 3)."""
    s = min(h, w)
    img = _background(rng, h, w)
    canvas = _Canvas(img)
    anns: list[dict] = []

    if rng.random() < 0.15:  # a crowd: many small figures in a region, annotated as one crowd region
        mask = Image.new("L", (w, h), 0)
        mdraw = ImageDraw.Draw(mask)
        x0, y0 = rng.uniform(-0.1, 0.6) * w, rng.uniform(-0.1, 0.7) * h
        rw, rh = rng.uniform(0.3, 0.55) * w, rng.uniform(0.15, 0.3) * h
        for _ in range(int(rng.integers(6, 14))):
            fh = rng.uniform(0.1, 0.18) * s
            c = (x0 + rng.uniform(0, 1) * rw, y0 + rng.uniform(0, 1) * rh)
            f = _random_figure(rng, c, fh)
            _draw_figure(canvas, replace(f, rotation=f.rotation * 0.3), _OTHER, mdraw)
        m = np.asarray(mask) > 0
        canvas.owner.paste(_OTHER, mask=mask)
        if m.any():
            anns.append(_annotation_from_mask(m, np.zeros((17, 3)), iscrowd=1))

    n = int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.25, 0.1]))
    figures = []
    placed: list[tuple[float, float, float, float]] = []
    for i in range(n):
        # People stand apart as in most photos: a figure whose rough box overlaps one already placed by more than
        # PERSON_OVERLAP (IoU) is placed again (a few tries, else left out); partial overlap and occlusion remain.
        for _ in range(PLACEMENT_TRIES):
            fh = rng.uniform(0.4, 0.95) * s if n == 1 else rng.uniform(0.35, 0.8) * s
            c = (rng.uniform(0.08, 0.92) * w, rng.uniform(0.25, 0.8) * h)
            box = (c[0] - 0.3 * fh, c[1] - 0.55 * fh, c[0] + 0.3 * fh, c[1] + 0.5 * fh)
            if all(_iou(box, other) <= PERSON_OVERLAP for other in placed):
                break
        else:
            continue
        placed.append(box)
        f = _random_figure(rng, c, fh)
        mask = Image.new("L", (w, h), 0)
        base = 32 * (i + 1)
        g = _draw_figure(canvas, f, base, ImageDraw.Draw(mask))
        figures.append((f, g, base, mask))

    for _ in range(int(rng.choice([0, 1, 2], p=[0.55, 0.3, 0.15]))):  # occluders, placed over a figure
        f, g, _, _ = figures[int(rng.integers(0, len(figures)))]
        x, y = g["kp"][int(rng.integers(0, 17))]
        before = canvas.img.copy()
        _occluder(canvas.draw, rng, x, y, f.height * rng.uniform(0.15, 0.4))
        changed = np.any(np.asarray(canvas.img) != np.asarray(before), axis=2)
        canvas.owner.paste(_OTHER, mask=Image.fromarray((changed * 255).astype(np.uint8)))

    owner = np.asarray(canvas.owner)
    for f, g, base, mask in figures:
        m = np.asarray(mask) > 0
        if not m.any() or not ((owner >= base) & (owner < base + 32)).any():
            continue  # entirely outside the image or hidden: not annotated
        v = _visibility(owner, g["kp"], base, f.facing)
        kp = np.concatenate([g["kp"], v[:, None]], 1)
        anns.append(_annotation_from_mask(m, kp, iscrowd=0))
    return _finish(canvas.img, rng), anns


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _annotation_from_mask(m: np.ndarray, kp: np.ndarray, iscrowd: int) -> dict:
    ys, xs = np.nonzero(m)
    x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
    kp = kp.copy()
    kp[kp[:, 2] == 0, :2] = 0  # unlabelled keypoints are (0, 0, 0), as in COCO
    flat = []
    for x, y, v in kp:
        flat += [round(float(x), 2), round(float(y), 2), int(v)]
    return {
        "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
        "area": float(m.sum()),
        "iscrowd": iscrowd,
        "num_keypoints": int((kp[:, 2] > 0).sum()),
        "keypoints": flat,
        "segmentation": [],
    }


def _coco_category() -> dict:
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(COCO_KEYPOINTS.keypoint_names),
        "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton],
    }


def make_pose_dataset(
    out: str | Path,
    images: int,
    seed: int,
    val_fraction: float = 0.2,
    image_size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
    force: bool = False,
) -> SynthPaths:
    """Write a synthetic COCO keypoint data set of ``images`` images to ``out`` (see the module docstring).

    ``image_size`` is ``(height, width)`` in pixels (an int for a square). ``out`` must not exist or be an empty
    folder unless ``force``; the folder is written in a temporary sibling and renamed into place when complete.
    """
    n_train, n_val = _check_common(images, seed, val_fraction, image_size)
    h, w = _image_size(image_size)
    out = Path(out)
    counts: dict[str, dict[str, int]] = {}
    _prepare_out(out, force)
    with atomic_folder(out, replace=force) as tmp:
        image_id, ann_id = 1, 1
        for split, count in (("train", n_train), ("val", n_val)):
            (tmp / "images" / split).mkdir(parents=True)
            coco: dict = {
                "info": {"description": f"hrnet-backbones synthetic pose data ({split})", "version": "1"},
                "licenses": [],
                "images": [],
                "annotations": [],
                "categories": [_coco_category()],
            }
            for index in range(count):
                img, anns = _pose_image(_rng(seed, split, index), h, w)
                name = f"{image_id:06d}.jpg"
                (tmp / "images" / split / name).write_bytes(_jpeg(img))
                coco["images"].append({"id": image_id, "file_name": name, "width": w, "height": h})
                for a in anns:
                    coco["annotations"].append({"id": ann_id, "image_id": image_id, "category_id": 1, **a})
                    ann_id += 1
                image_id += 1
            (tmp / "annotations").mkdir(exist_ok=True)
            _write_json(tmp / "annotations" / f"person_keypoints_{split}.json", coco)
            people = [a for a in coco["annotations"] if not a["iscrowd"]]
            counts[split] = {
                "images": count,
                "people": len(people),
                "crowds": len(coco["annotations"]) - len(people),
                "labelled_keypoints": sum(a["num_keypoints"] for a in people),
            }
        _write_json(
            tmp / "synth.json",
            {
                "kind": "pose",
                "generator_version": GENERATOR_VERSION,
                "seed": seed,
                "image_size": [h, w],
                "val_fraction": val_fraction,
                "layout": "coco",
                "counts": counts,
            },
        )
    return _paths(out, "person_keypoints_{}.json")


def _paths(out: Path, ann: str) -> SynthPaths:
    return SynthPaths(
        root=out,
        train_ann=out / "annotations" / ann.format("train"),
        train_images=out / "images" / "train",
        val_ann=out / "annotations" / ann.format("val"),
        val_images=out / "images" / "val",
    )


# ==================================================================================== mean-pose baseline
def _load_people(ann_file: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = json.loads(Path(ann_file).read_text(encoding="utf-8"))
    anns = data["annotations"]
    kp = np.array([a["keypoints"] for a in anns], np.float64).reshape(len(anns), -1, 3)
    boxes = np.array([a["bbox"] for a in anns], np.float64).reshape(len(anns), 4)
    areas = np.array([a["area"] for a in anns], np.float64)
    crowd = np.array([a.get("iscrowd", 0) for a in anns], np.int64)
    img_ids = np.array([a["image_id"] for a in anns], np.int64)
    return kp, boxes, areas, crowd, img_ids


def mean_pose_baseline_ap(train_ann: str | Path, val_ann: str | Path) -> float:
    """COCO keypoint AP of a constant predictor: the training set's mean pose, normalised to the person box
    (each labelled keypoint's ``((x - x0) / w, (y - y0) / h)``), placed in every validation ground-truth box with
    score 1, scored by :func:`hrnet_backbones.keypoints.coco_keypoint_stats`. A data set on which this scores
    well does not test a keypoint model."""
    from .keypoints.metrics import coco_keypoint_stats

    kp, boxes, _, crowd, _ = _load_people(train_ann)
    keep = (crowd == 0) & (kp[..., 2] > 0).any(1)
    if not keep.any():
        raise ValueError(f"{train_ann} has no labelled person to average")
    kp, boxes = kp[keep], boxes[keep]
    wh = np.maximum(boxes[:, None, 2:], 1e-6)
    norm = (kp[..., :2] - boxes[:, None, :2]) / wh
    labelled = kp[..., 2:] > 0
    mean = (norm * labelled).sum(0) / np.maximum(labelled.sum(0), 1)  # (K, 2)

    gt_kp, gt_boxes, gt_areas, gt_crowd, gt_img = _load_people(val_ann)
    people = gt_crowd == 0
    dt = gt_boxes[people, None, :2] + mean[None] * gt_boxes[people, None, 2:]
    stats = coco_keypoint_stats(
        dt,
        np.ones(len(dt)),
        gt_kp,
        gt_areas,
        dt_image_ids=gt_img[people],
        gt_image_ids=gt_img,
        gt_bboxes=gt_boxes,
        gt_iscrowd=gt_crowd,
    )
    return float(stats["AP"])


# ================================================================================================ faces
@dataclass(frozen=True)
class FacePose:
    """Shape, expression and placement of one synthetic face.

    The face model lives in a canonical frame: origin between the eyes, ``x`` to the image's right, ``y`` down,
    unit about half the face width, with a depth ``z`` towards the camera used by the head turn (``yaw``, radians).
    ``roll`` turns the face in the image plane (radians, positive clockwise on screen), ``center`` is the image
    position of the canonical origin and ``size`` the pixels per canonical unit. Every shape parameter applies to
    both sides alike, so a mirror image is a face of the same parameters with ``yaw``, ``roll`` and the gaze negated.
    """

    center: tuple[float, float]
    size: float
    roll: float
    yaw: float
    jaw_w: float
    jaw_h: float
    temple: float
    eye_x: float
    eye_w: float
    eye_up: float
    eye_low: float
    gaze: tuple[float, float]
    brow_y: float
    brow_arch: float
    brow_outer: float
    brow_inner: float
    brow_thick: float
    nose_tip: float
    nose_w: float
    mouth_y: float
    mouth_w: float
    lip_up: float
    lip_low: float
    mouth_open: float
    smile: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    lips: tuple[int, int, int]
    iris: tuple[int, int, int]
    brows: tuple[int, int, int]

    def mirrored(self, width: int) -> FacePose:
        """The face seen in a mirror of an image ``width`` pixels wide (see :meth:`FigurePose.mirrored`)."""
        return replace(
            self,
            center=(width - 1 - self.center[0], self.center[1]),
            roll=-self.roll,
            yaw=-self.yaw,
            gaze=(-self.gaze[0], self.gaze[1]),
        )


def _random_face(rng: np.random.Generator) -> FacePose:
    u = rng.uniform
    eye_open = float(np.clip(u(0.35, 1.3), 0.35, 1.0))
    skin_base = u(0.3, 1.0)
    return FacePose(
        center=(0.0, 0.0),
        size=1.0,
        roll=float(rng.normal(0, 0.25)),
        yaw=float(u(-0.45, 0.45)),
        jaw_w=u(0.9, 1.1),
        jaw_h=u(1.2, 1.55),
        temple=u(1.6, 1.8),
        eye_x=u(0.36, 0.46),
        eye_w=u(0.16, 0.22),
        eye_up=u(0.07, 0.11) * eye_open,
        eye_low=u(0.04, 0.07) * eye_open,
        gaze=(u(-0.06, 0.06), u(-0.02, 0.02)),
        brow_y=-u(0.2, 0.32),
        brow_arch=u(0.02, 0.1),
        brow_outer=u(0.62, 0.78),
        brow_inner=u(0.08, 0.18),
        brow_thick=u(0.04, 0.08),
        nose_tip=u(0.5, 0.68),
        nose_w=u(0.13, 0.2),
        mouth_y=u(0.92, 1.05),
        mouth_w=u(0.28, 0.42),
        lip_up=u(0.05, 0.09),
        lip_low=u(0.06, 0.11),
        mouth_open=u(0.02, 0.18) if rng.random() < 0.4 else 0.0,
        smile=u(-0.04, 0.08),
        skin=(int(255 * skin_base), int(205 * skin_base), int(170 * skin_base)),
        hair=_color(rng, 0, 140),
        lips=(int(u(140, 220)), int(u(40, 90)), int(u(50, 100))),
        iris=_color(rng, 20, 160),
        brows=_color(rng, 0, 90),
    )


class _FaceModel:
    """Named points of a face in the canonical frame, as ``(N, 3)`` arrays ``(x, y, z)``.

    ``side`` is -1 for the feature on the image's left (the subject's right) and +1 for the image's right. Curves
    run as the 300W / WFLW annotations do: contour from the left temple over the chin to the right temple, brows
    from the image's left to right along the top, eyes and lips clockwise from their left corner.
    """

    def __init__(self, f: FacePose):
        self.f = f

    def _z(self, x, extra=0.0) -> np.ndarray:
        # a rounded face: depth falls off towards the sides
        return 0.7 * np.sqrt(np.clip(1 - (np.asarray(x, np.float64) / 1.15) ** 2, 0, None)) + extra

    def _pts(self, x, y, extra=0.0) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
        return np.stack([x, y, self._z(x, extra) + 0 * y], -1).reshape(-1, 3)

    def contour(self, t) -> np.ndarray:
        f = self.f
        phi = (2 * np.asarray(t, np.float64) - 1) * f.temple
        narrow = 1 - 0.18 * np.clip(np.cos(phi), 0, None) ** 2
        return self._pts(f.jaw_w * np.sin(phi) * narrow, 0.08 + f.jaw_h * np.cos(phi), -0.25)

    def brow(self, side: int, t, lower: bool = False) -> np.ndarray:
        """``t`` from the brow's outer end (0) to its inner end (1)."""
        f = self.f
        t = np.asarray(t, np.float64)
        x = side * (f.brow_outer + (f.brow_inner - f.brow_outer) * t)
        arch = f.brow_arch * np.sin(np.pi * np.clip(0.2 + 0.8 * t, 0, 1))
        y = f.brow_y - arch + (f.brow_thick / 2 if lower else -f.brow_thick / 2) * (1 - 0.3 * (1 - t))
        return self._pts(x, y)

    def eye(self, side: int, theta) -> np.ndarray:
        """``theta`` = pi at the eye's left corner, pi/2 the top, 0 the right corner, -pi/2 the bottom."""
        f = self.f
        th = np.asarray(theta, np.float64)
        s = np.sin(th)
        y = -np.where(s > 0, f.eye_up, f.eye_low) * s
        return self._pts(side * f.eye_x + f.eye_w * np.cos(th), y)

    def pupil(self, side: int) -> np.ndarray:
        f = self.f
        return self._pts(side * f.eye_x + f.gaze[0], f.gaze[1], 0.02)

    def bridge(self, t) -> np.ndarray:
        t = np.asarray(t, np.float64)
        return self._pts(0 * t, 0.05 + (self.f.nose_tip - 0.05) * t, 0.3 * t)

    def nose_tip(self) -> np.ndarray:
        return self._pts(0.0, self.f.nose_tip, 0.35)

    def nose_base(self, u) -> np.ndarray:
        """``u`` from the left wing (-1) through the base's centre (0) to the right wing (1)."""
        f = self.f
        u = np.asarray(u, np.float64)
        return self._pts(u * f.nose_w, f.nose_tip + 0.08 - 0.05 * u**2, 0.2 * (1 - u**2))

    def lips(self, theta, inner: bool) -> np.ndarray:
        """Lip contour point at ``theta`` (pi the left corner, pi/2 the top centre, 0 the right corner)."""
        f = self.f
        th = np.asarray(theta, np.float64)
        c, s = np.cos(th), np.sin(th)
        half = f.mouth_open / 2
        if inner:
            x = 0.85 * f.mouth_w * c
            y = f.mouth_y - f.smile * c**2 - half * s
        else:
            x = f.mouth_w * c
            bow = 0.02 * np.exp(-((c / 0.2) ** 2)) * (s > 0)  # the dip at the upper lip's centre
            y = f.mouth_y - f.smile * c**2 - (half + np.where(s > 0, f.lip_up, f.lip_low)) * s + bow
        return self._pts(x, y, 0.05)

    def mouth_center(self) -> np.ndarray:
        return self._pts(0.0, self.f.mouth_y, 0.05)

    def chin(self) -> np.ndarray:
        return self.contour(0.5)


def _ring(n: int) -> np.ndarray:
    # n angles clockwise on screen from the left corner (pi) over the top: pi, pi - 2pi/n, ...
    return np.pi - 2 * np.pi * np.arange(n) / n


def _face_landmarks(m: _FaceModel, layout: str) -> np.ndarray:
    """``(K, 3)`` canonical landmarks of ``layout`` in its index order."""
    L, R = -1, 1
    if layout == "300w":
        parts = [
            m.contour(np.linspace(0, 1, 17)),
            m.brow(L, np.linspace(0, 1, 5)),
            m.brow(R, np.linspace(1, 0, 5)),
            m.bridge(np.linspace(0, 1, 4)),
            m.nose_base(np.linspace(-1, 1, 5)),
            m.eye(L, _ring(6)),
            m.eye(R, _ring(6)),
            m.lips(_ring(12), inner=False),
            m.lips(_ring(8), inner=True),
        ]
    elif layout == "wflw":
        lower = np.array([0.8, 0.6, 0.4, 0.2])
        parts = [
            m.contour(np.linspace(0, 1, 33)),
            m.brow(L, np.linspace(0, 1, 5)),
            m.brow(L, lower, lower=True),
            m.brow(R, np.linspace(1, 0, 5)),
            m.brow(R, lower[::-1], lower=True),
            m.bridge(np.linspace(0, 1, 4)),
            m.nose_base(np.linspace(-1, 1, 5)),
            m.eye(L, _ring(8)),
            m.eye(R, _ring(8)),
            m.lips(_ring(12), inner=False),
            m.lips(_ring(8), inner=True),
            m.pupil(L),
            m.pupil(R),
        ]
    elif layout == "cofw":
        top, bottom = np.pi / 2, -np.pi / 2
        parts = [
            m.brow(L, 0.0),
            m.brow(R, 0.0),
            m.brow(L, 1.0),
            m.brow(R, 1.0),
            m.brow(L, 0.5),
            m.brow(L, 0.5, lower=True),
            m.brow(R, 0.5),
            m.brow(R, 0.5, lower=True),
            m.eye(L, np.pi),  # outer corners
            m.eye(R, 0.0),
            m.eye(L, 0.0),  # inner corners
            m.eye(R, np.pi),
            m.eye(L, top),
            m.eye(L, bottom),
            m.eye(R, top),
            m.eye(R, bottom),
            m.pupil(L),
            m.pupil(R),
            m.nose_base(-1.0),
            m.nose_base(1.0),
            m.nose_tip(),
            m.nose_base(0.0),
            m.lips(np.pi, inner=False),
            m.lips(0.0, inner=False),
            m.lips(top, inner=False),
            m.lips(top, inner=True),
            m.lips(bottom, inner=True),
            m.lips(bottom, inner=False),
            m.chin(),
        ]
    elif layout == "aflw":
        parts = [
            m.brow(L, np.array([0.0, 0.5, 1.0])),
            m.brow(R, np.array([1.0, 0.5, 0.0])),
            m.eye(L, np.pi),
            m.pupil(L),
            m.eye(L, 0.0),
            m.eye(R, np.pi),
            m.pupil(R),
            m.eye(R, 0.0),
            m.nose_base(-1.0),
            m.nose_tip(),
            m.nose_base(1.0),
            m.lips(np.pi, inner=False),
            m.mouth_center(),
            m.lips(0.0, inner=False),
            m.chin(),
        ]
    else:
        raise ValueError(f"unknown face layout {layout!r}; choose one of {', '.join(FACE_LAYOUTS)}")
    return np.concatenate(parts, 0)


def _face_layout(name: str | KeypointLayout) -> KeypointLayout:
    try:
        layout = get_layout(name)
    except UnknownLayoutError as e:  # a KeyError: the CLI reports ValueErrors as one line
        raise ValueError(str(e)) from None
    if layout.name not in FACE_LAYOUTS:
        raise ValueError(
            f"--layout {layout.name!r} is not a face layout; choose one of {', '.join(FACE_LAYOUTS)}"
        )
    return layout


def _project(f: FacePose, pts: np.ndarray) -> np.ndarray:
    """Canonical ``(N, 3)`` points to image ``(N, 2)`` pixels: turn by ``yaw``, roll, scale, translate."""
    cy, sy = math.cos(f.yaw), math.sin(f.yaw)
    xy = np.stack([pts[:, 0] * cy + pts[:, 2] * sy, pts[:, 1]], -1)
    return np.asarray(f.center) + (xy @ _rot(f.roll).T) * f.size


def face_landmarks(pose: FacePose, layout: str | KeypointLayout = "300w") -> np.ndarray:
    """The ``(K, 2)`` image positions of ``layout``'s landmarks on a face."""
    return _project(pose, _face_landmarks(_FaceModel(pose), _face_layout(layout).name))


def _draw_face(img: Image.Image, f: FacePose) -> None:
    draw = ImageDraw.Draw(img)
    m = _FaceModel(f)

    def proj(pts3: np.ndarray) -> np.ndarray:
        return _project(f, pts3) + 0.5  # Pillow's drawing coordinates (see _figure_geometry)

    def poly(pts3: np.ndarray) -> list[tuple[float, float]]:
        return [tuple(p) for p in proj(pts3).tolist()]

    dense = np.linspace(0, 1, 48)
    contour = m.contour(dense)
    top = np.linspace(f.temple, 2 * math.pi - f.temple, 24)  # the forehead: right temple, over the top, left
    forehead = m._pts(f.jaw_w * np.sin(top), 0.08 + f.jaw_h * 0.75 * np.cos(top), -0.25)
    head = np.concatenate([contour, forehead], 0)
    hair = head * np.array([1.12, 1.0, 1.0]) + np.array([0, -0.12, 0])
    draw.polygon(poly(hair), fill=f.hair)
    neck_top = proj(m.contour(np.array([0.3, 0.7])))
    neck_w = np.linalg.norm(neck_top[1] - neck_top[0]) / 2
    chin = proj(m.chin())[0]
    down = _rot(f.roll) @ np.array([0, 1.6 * f.size])
    _capsule(draw, tuple(chin - down * 0.3), tuple(chin + down), neck_w, neck_w * 1.1, _shade(f.skin, 0.8))
    for t in (0.06, 0.94):
        e = proj(m.contour(t))[0]
        r = 0.13 * f.size
        draw.ellipse([e[0] - r, e[1] - r * 1.6, e[0] + r, e[1] + r * 1.6], fill=_shade(f.skin, 0.85))
    draw.polygon(poly(head), fill=f.skin)
    fringe = np.linspace(0, 1, 12)
    fy = f.brow_y - 0.35 - 0.1 * np.sin(np.pi * fringe)
    band = m._pts(
        np.concatenate([np.linspace(-1.05, 1.05, 12), np.linspace(1.05, -1.05, 12)]),
        np.concatenate([fy, np.full(12, -1.6)]),
    )
    draw.polygon(poly(band), fill=f.hair)
    t = np.linspace(0, 1, 12)
    for side in (-1, 1):
        brow = np.concatenate([m.brow(side, t), m.brow(side, t[::-1], lower=True)], 0)
        draw.polygon(poly(brow), fill=f.brows)
        eye = poly(m.eye(side, np.linspace(math.pi, -math.pi, 32, endpoint=False)))
        draw.polygon(eye, fill=(240, 240, 236))
        mask = Image.new("L", img.size, 0)
        mdraw = ImageDraw.Draw(mask)
        mdraw.polygon(eye, fill=255)
        p = proj(m.pupil(side))[0]
        r = max(1.0, 0.085 * f.size)
        inside = Image.fromarray(np.minimum(np.asarray(mask), np.asarray(_disc(img.size, p, r))))
        img.paste(f.iris, mask=inside)
        pupil = np.minimum(np.asarray(inside), np.asarray(_disc(img.size, p, r * 0.45)))
        img.paste((10, 10, 10), mask=Image.fromarray(pupil))
        draw.line(poly(m.eye(side, np.linspace(math.pi, 0, 12))), fill=_shade(f.skin, 0.35), width=2)
    draw.line(
        poly(m.bridge(np.linspace(0.2, 1, 6)) + np.array([0.04, 0, 0])), fill=_shade(f.skin, 0.7), width=1
    )
    draw.line(poly(m.nose_base(np.linspace(-1, 1, 12))), fill=_shade(f.skin, 0.5), width=2)
    for u in (-0.5, 0.5):
        n = proj(m.nose_base(u))[0]
        r = max(1.0, 0.03 * f.size)
        draw.ellipse([n[0] - r * 1.5, n[1] - r, n[0] + r * 1.5, n[1] + r], fill=_shade(f.skin, 0.35))
    ring = np.linspace(math.pi, -math.pi, 40, endpoint=False)
    draw.polygon(poly(m.lips(ring, inner=False)), fill=f.lips)
    if f.mouth_open > 0.01:
        draw.polygon(poly(m.lips(ring, inner=True)), fill=(50, 15, 20))
    else:
        draw.line(poly(m.lips(np.linspace(math.pi, 0, 16), inner=True)), fill=_shade(f.lips, 0.5), width=1)


def _disc(size: tuple[int, int], p: np.ndarray, r: float) -> Image.Image:
    m = Image.new("L", size, 0)
    ImageDraw.Draw(m).ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=255)
    return m


def render_face(
    pose: FacePose,
    layout: str | KeypointLayout = "300w",
    image_size: Sequence[int] = DEFAULT_IMAGE_SIZE,
    background: Sequence[int] = (128, 128, 128),
) -> tuple[Image.Image, np.ndarray]:
    """One face on a plain background: the image and its ``(K, 2)`` landmarks in ``layout``'s order.

    With ``pose.mirrored(W)`` the image is the horizontal mirror of this one and the landmarks are these mirrored
    (``x -> W - 1 - x``) with the layout's flip pairs swapped.
    """
    h, w = _image_size(image_size)
    img = Image.new("RGB", (w, h), tuple(background))
    _draw_face(img, pose)
    return img, face_landmarks(pose, layout)


def _face_image(rng: np.random.Generator, h: int, w: int, layout: str) -> tuple[Image.Image, np.ndarray]:
    """One face image and its landmarks ``(K, 2)``, all inside the image."""
    f = _random_face(rng)
    canon = _project(replace(f, center=(0.0, 0.0), size=1.0), _face_landmarks(_FaceModel(f), layout))
    lo, hi = canon.min(0), canon.max(0)
    extent = hi - lo
    size = rng.uniform(0.4, 0.75) * min(h / extent[1], w / extent[0])
    margin = 2.0
    cx = rng.uniform(margin - lo[0] * size, w - 1 - margin - hi[0] * size)
    cy = rng.uniform(margin - lo[1] * size, h - 1 - margin - hi[1] * size)
    f = replace(f, center=(float(cx), float(cy)), size=float(size))
    img = _background(rng, h, w)
    _draw_face(img, f)
    pts = face_landmarks(f, layout)
    draw = ImageDraw.Draw(img)
    if rng.random() < 0.25:  # something in front of the face: the landmarks stay labelled
        x, y = pts[int(rng.integers(0, len(pts)))]
        _occluder(draw, rng, x, y, size * rng.uniform(0.3, 0.7))
    if rng.random() < 0.15:  # glasses
        col = _color(rng, 0, 100)
        for side in (-1, 1):
            p = _project(f, _FaceModel(f).pupil(side))[0] + 0.5
            r = f.eye_w * size * 1.3
            draw.ellipse([p[0] - r, p[1] - r * 0.8, p[0] + r, p[1] + r * 0.8], outline=col, width=2)
    return _finish(img, rng), pts


def make_face_dataset(
    out: str | Path,
    images: int,
    seed: int,
    val_fraction: float = 0.2,
    image_size: int | Sequence[int] = DEFAULT_IMAGE_SIZE,
    layout: str = "300w",
    force: bool = False,
) -> SynthPaths:
    """Write a synthetic face landmark data set of ``images`` images to ``out`` in HRNet-Facial's CSV layout.

    One face per image, all landmarks inside the image. CSV columns: ``image_name`` (relative to
    ``out/images``, e.g. ``train/000001.jpg``), ``scale`` (the landmarks' box size / 200, the box size being its
    longer side), for ``aflw`` ``box_size`` (that box size, the AFLW NME's normaliser), ``center_w``,
    ``center_h`` (the box centre), then ``original_{i}_x, original_{i}_y`` per landmark (the column names of
    HRNet-Facial's 300W files; readers go by position, as the official code does; pixels, centres at integers).
    ``layout`` is ``300w`` (68), ``wflw`` (98), ``cofw`` (29) or ``aflw`` (19).
    """
    n_train, n_val = _check_common(images, seed, val_fraction, image_size)
    h, w = _image_size(image_size)
    lay = _face_layout(layout)
    out = Path(out)
    k = lay.num_keypoints
    header = ["image_name", "scale"] + (["box_size"] if lay.name == "aflw" else []) + ["center_w", "center_h"]
    header += [c for i in range(k) for c in (f"original_{i}_x", f"original_{i}_y")]
    _prepare_out(out, force)
    with atomic_folder(out, replace=force) as tmp:
        (tmp / "annotations").mkdir()
        image_id = 1
        for split, count in (("train", n_train), ("val", n_val)):
            (tmp / "images" / split).mkdir(parents=True)
            rows = []
            for index in range(count):
                img, pts = _face_image(_rng(seed, split, index), h, w, lay.name)
                name = f"{split}/{image_id:06d}.jpg"
                (tmp / "images" / name).write_bytes(_jpeg(img))
                lo, hi = pts.min(0), pts.max(0)
                box = float(max(hi - lo))
                center = (lo + hi) / 2
                row = [name, f"{box / 200:.6f}"] + ([f"{box:.2f}"] if lay.name == "aflw" else [])
                row += [f"{center[0]:.2f}", f"{center[1]:.2f}"] + [f"{v:.2f}" for v in pts.reshape(-1)]
                rows.append(row)
                image_id += 1
            with open(
                tmp / "annotations" / f"face_landmarks_{split}.csv", "w", newline="", encoding="utf-8"
            ) as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(header)
                writer.writerows(rows)
        _write_json(
            tmp / "synth.json",
            {
                "kind": "face",
                "generator_version": GENERATOR_VERSION,
                "seed": seed,
                "image_size": [h, w],
                "val_fraction": val_fraction,
                "layout": lay.name,
                "num_landmarks": k,
                "counts": {"train": {"images": n_train}, "val": {"images": n_val}},
            },
        )
    return _paths(out, "face_landmarks_{}.csv")


def _read_face_csv(
    path: str | Path,
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(header, centres (N, 2), scales (N,), landmarks (N, K, 2), box sizes (N,) or None)`` of a face CSV."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0][:2] != ["image_name", "scale"]:
        raise ValueError(f"{path} is not a face landmark CSV (header image_name, scale, ...)")
    header, body = rows[0], rows[1:]
    first = 5 if "box_size" in header else 4
    values = np.array([r[1:] for r in body], np.float64).reshape(len(body), len(header) - 1)
    box = values[:, 1] if first == 5 else None
    return (
        header,
        values[:, first - 3 : first - 1],
        values[:, 0],
        values[:, first - 1 :].reshape(len(body), -1, 2),
        box,
    )


def mean_shape_baseline_nme(
    train_csv: str | Path, val_csv: str | Path, layout: str | KeypointLayout
) -> float:
    """NME of a constant predictor on a face CSV: the training set's mean landmarks, relative to the face box
    (``(xy - centre) / (scale * 200)``), placed in every validation box; scored by
    :func:`hrnet_backbones.keypoints.nme` (the layout's normaliser; ``box_size`` for AFLW)."""
    from .keypoints.metrics import nme

    lay = _face_layout(layout)
    _, centres, scales, pts, _ = _read_face_csv(train_csv)
    if pts.shape[1] != lay.num_keypoints:
        raise ValueError(f"{train_csv} has {pts.shape[1]} landmarks, layout {lay.name} {lay.num_keypoints}")
    mean = ((pts - centres[:, None]) / (scales[:, None, None] * 200)).mean(0)
    _, v_centres, v_scales, v_pts, box = _read_face_csv(val_csv)
    pred = v_centres[:, None] + mean[None] * v_scales[:, None, None] * 200
    return float(nme(pred, v_pts, layout=lay, norm_factor=box))


# ============================================================================================ CLI
def synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder (must not exist or be empty, unless --force)")
    p.add_argument(
        "--kind", required=True, choices=["pose", "face"], help="figures with COCO keypoints, or faces"
    )
    p.add_argument("--images", type=int, required=True, help="number of images (train + val)")
    p.add_argument(
        "--seed", type=int, default=0, help="random seed (default: 0); the same seed gives the same files"
    )
    p.add_argument(
        "--val-fraction", type=float, default=0.2, help="share of images in the val split (default: 0.2)"
    )
    p.add_argument(
        "--layout",
        help=f"landmark layout for --kind face: {', '.join(FACE_LAYOUTS)} (default: 300w)",
    )
    p.add_argument(
        "--image-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=list(DEFAULT_IMAGE_SIZE),
        help=f"image height and width (default: {DEFAULT_IMAGE_SIZE[0]} {DEFAULT_IMAGE_SIZE[1]})",
    )
    p.add_argument("--force", action="store_true", help="replace an existing non-empty --out folder")


def synth_run(args: argparse.Namespace) -> int:
    common = dict(
        images=args.images,
        seed=args.seed,
        val_fraction=args.val_fraction,
        image_size=tuple(args.image_size),
        force=args.force,
    )
    if args.kind == "pose":
        if args.layout is not None:
            raise CLIError("--layout applies to --kind face only (pose data uses the COCO keypoints)")
        paths = make_pose_dataset(args.out, **common)
    else:
        paths = make_face_dataset(args.out, layout=args.layout or "300w", **common)
    info = json.loads((paths.root / "synth.json").read_text(encoding="utf-8"))
    counts = info["counts"]
    print(
        f"{args.kind} data ({info['layout']}): {counts['train']['images']} train / {counts['val']['images']} val "
        f"images -> {paths.root}"
    )
    print(f"  train: {paths.train_ann}  images: {paths.train_images}")
    print(f"  val:   {paths.val_ann}  images: {paths.val_images}")
    if args.kind == "pose" and counts["val"]["people"]:
        ap = mean_pose_baseline_ap(paths.train_ann, paths.val_ann)
        print(f"  a constant mean pose in the val boxes scores AP {ap:.3f} (a keypoint model must beat it)")
    if args.kind == "face" and counts["val"]["images"]:
        err = mean_shape_baseline_nme(paths.train_ann, paths.val_ann, info["layout"])
        print(
            f"  a constant mean shape in the val boxes scores NME {err:.4f} (a landmark model must beat it)"
        )
    return 0
