"""Keypoint layouts as data: names, flip pairs, skeletons, OKS sigmas, joint weights and NME normalisation.

Indices are 0-based. Sources: the COCO keypoint annotations and ``cocoeval`` (names, skeleton, sigmas); the
official HRNet code (flip pairs, COCO/MPII joint weights); MPII (Andriluka et al. 2014) joint order; the
HRNet-Facial-Landmark-Detection ``MATCHED_PARTS`` (face flip pairs) and ``compute_nme`` (normalisation:
outer eye corners, or the face box for AFLW-19). The MPII OKS sigmas are mmpose's adaptation of COCO's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "AFLW_19",
    "COCO_KEYPOINTS",
    "COFW_29",
    "LAYOUTS",
    "MPII_KEYPOINTS",
    "W300_68",
    "WFLW_98",
    "KeypointLayout",
    "UnknownLayoutError",
    "get_layout",
]


@dataclass(frozen=True)
class KeypointLayout:
    """A keypoint / landmark layout.

    Attributes:
        name: canonical name (``get_layout`` key).
        keypoint_names: ``K`` names in model channel order.
        flip_pairs: left/right index pairs swapped by a horizontal flip.
        skeleton: index pairs to draw as limbs (empty for face layouts).
        sigmas: per-keypoint OKS sigmas, if the layout has them.
        joint_weights: per-keypoint loss weights used by the official training recipes, if any.
        normalization: ``"interocular"`` (NME over the distance between ``norm_indices``), ``"box_size"``
            (NME over a face-box size given with the data) or ``None`` (body layouts).
        norm_indices: the two keypoints whose distance normalises the NME (outer eye corners).
    """

    name: str
    keypoint_names: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] | None = None
    joint_weights: tuple[float, ...] | None = None
    normalization: Literal["interocular", "box_size"] | None = None
    norm_indices: tuple[int, int] | None = None
    aliases: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        k = len(self.keypoint_names)
        used = [i for pair in self.flip_pairs for i in pair]
        if len(set(used)) != len(used) or any(not 0 <= i < k for i in used):
            raise ValueError(f"{self.name}: flip pairs must use distinct indices in [0, {k})")
        if any(not 0 <= i < k for pair in self.skeleton for i in pair):
            raise ValueError(f"{self.name}: skeleton index out of range")
        for attr in ("sigmas", "joint_weights"):
            values = getattr(self, attr)
            if values is not None and len(values) != k:
                raise ValueError(f"{self.name}: {attr} has {len(values)} entries for {k} keypoints")
        if (self.normalization == "interocular") != (self.norm_indices is not None):
            raise ValueError(f"{self.name}: norm_indices go with normalization='interocular'")

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def flip_indices(self) -> tuple[int, ...]:
        """``flipped[k] = original[flip_indices[k]]``."""
        perm = list(range(self.num_keypoints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return tuple(perm)


def _one_based(pairs: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    return tuple((a - 1, b - 1) for a, b in pairs)


_COCO_SIGMAS_X10 = (0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07)
_COCO_SIGMAS_X10 += (0.87, 0.87, 0.89, 0.89)

COCO_KEYPOINTS = KeypointLayout(
    name="coco",
    keypoint_names=(
        "nose",
        "left_eye",
        "right_eye",
        "left_ear",
        "right_ear",
        "left_shoulder",
        "right_shoulder",
        "left_elbow",
        "right_elbow",
        "left_wrist",
        "right_wrist",
        "left_hip",
        "right_hip",
        "left_knee",
        "right_knee",
        "left_ankle",
        "right_ankle",
    ),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # The COCO annotation file's skeleton (1-based there).
    skeleton=_one_based(
        (
            (16, 14),
            (14, 12),
            (17, 15),
            (15, 13),
            (12, 13),
            (6, 12),
            (7, 13),
            (6, 7),
            (6, 8),
            (7, 9),
            (8, 10),
            (9, 11),
            (2, 3),
            (1, 2),
            (1, 3),
            (2, 4),
            (3, 5),
            (4, 6),
            (5, 7),
        )
    ),
    # pycocotools: np.array([.26, .25, ...]) / 10.0
    sigmas=tuple(s / 10.0 for s in _COCO_SIGMAS_X10),
    joint_weights=(1.0,) * 7 + (1.2, 1.2, 1.5, 1.5, 1.0, 1.0, 1.2, 1.2, 1.5, 1.5),
    aliases=("coco17", "coco_17", "coco-17"),
)

MPII_KEYPOINTS = KeypointLayout(
    name="mpii",
    keypoint_names=(
        "right_ankle",
        "right_knee",
        "right_hip",
        "left_hip",
        "left_knee",
        "left_ankle",
        "pelvis",
        "thorax",
        "upper_neck",
        "head_top",
        "right_wrist",
        "right_elbow",
        "right_shoulder",
        "left_shoulder",
        "left_elbow",
        "left_wrist",
    ),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    skeleton=(
        (0, 1),
        (1, 2),
        (2, 6),
        (6, 3),
        (3, 4),
        (4, 5),
        (6, 7),
        (7, 8),
        (8, 9),
        (8, 12),
        (12, 11),
        (11, 10),
        (8, 13),
        (13, 14),
        (14, 15),
    ),
    sigmas=(
        0.089,
        0.083,
        0.107,
        0.107,
        0.083,
        0.089,
        0.026,
        0.026,
        0.026,
        0.026,
        0.062,
        0.072,
        0.179,
        0.179,
        0.072,
        0.062,
    ),
    joint_weights=(1.5, 1.2, 1.0, 1.0, 1.2, 1.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.2, 1.0, 1.0, 1.2, 1.5),
    aliases=("mpii16", "mpii_16", "mpii-16"),
)


def _face_names(count: int) -> tuple[str, ...]:
    return tuple(f"landmark_{i}" for i in range(count))


WFLW_98 = KeypointLayout(
    name="wflw",
    keypoint_names=_face_names(98),
    flip_pairs=(
        *((i, 32 - i) for i in range(16)),  # face contour 0..32, 16 is the chin
        (33, 46),
        (34, 45),
        (35, 44),
        (36, 43),
        (37, 42),
        (38, 50),
        (39, 49),
        (40, 48),
        (41, 47),
        (60, 72),
        (61, 71),
        (62, 70),
        (63, 69),
        (64, 68),
        (65, 75),
        (66, 74),
        (67, 73),
        (55, 59),
        (56, 58),
        (76, 82),
        (77, 81),
        (78, 80),
        (87, 83),
        (86, 84),
        (88, 92),
        (89, 91),
        (95, 93),
        (96, 97),
    ),
    normalization="interocular",
    norm_indices=(60, 72),
    aliases=("wflw98", "wflw_98", "wflw-98"),
)

W300_68 = KeypointLayout(
    name="300w",
    keypoint_names=_face_names(68),
    flip_pairs=_one_based(
        (
            *((i, 18 - i) for i in range(1, 9)),  # jaw 1..17, 9 is the chin
            (18, 27),
            (19, 26),
            (20, 25),
            (21, 24),
            (22, 23),
            (32, 36),
            (33, 35),
            (37, 46),
            (38, 45),
            (39, 44),
            (40, 43),
            (41, 48),
            (42, 47),
            (49, 55),
            (50, 54),
            (51, 53),
            (62, 64),
            (61, 65),
            (68, 66),
            (59, 57),
            (60, 56),
        )
    ),
    normalization="interocular",
    norm_indices=(36, 45),
    aliases=("300w68", "300w_68", "300w-68", "w300", "w300_68", "ibug"),
)

COFW_29 = KeypointLayout(
    name="cofw",
    keypoint_names=_face_names(29),
    flip_pairs=_one_based(
        ((1, 2), (5, 7), (3, 4), (6, 8), (9, 10), (11, 12), (13, 15), (17, 18), (14, 16), (19, 20), (23, 24))
    ),
    normalization="interocular",
    norm_indices=(8, 9),
    aliases=("cofw29", "cofw_29", "cofw-29"),
)

AFLW_19 = KeypointLayout(
    name="aflw",
    keypoint_names=_face_names(19),
    flip_pairs=_one_based(((1, 6), (2, 5), (3, 4), (7, 12), (8, 11), (9, 10), (13, 15), (16, 18))),
    normalization="box_size",
    aliases=("aflw19", "aflw_19", "aflw-19"),
)

LAYOUTS: dict[str, KeypointLayout] = {
    layout.name: layout for layout in (COCO_KEYPOINTS, MPII_KEYPOINTS, WFLW_98, W300_68, COFW_29, AFLW_19)
}
_ALIASES = {alias: layout for layout in LAYOUTS.values() for alias in (layout.name, *layout.aliases)}


class UnknownLayoutError(KeyError):
    """Raised by :func:`get_layout` for a name it does not know."""

    def __str__(self) -> str:  # KeyError would print the message with quotes
        return str(self.args[0])


def get_layout(name: str | KeypointLayout) -> KeypointLayout:
    """Look a layout up by name (case-insensitive): ``coco``, ``mpii``, ``wflw``, ``300w``, ``cofw``, ``aflw``
    (and aliases such as ``coco17``, ``wflw98``, ``300w68``, ``aflw19``). A layout passes through."""
    if isinstance(name, KeypointLayout):
        return name
    key = str(name).strip().lower()
    if key not in _ALIASES:
        raise UnknownLayoutError(
            f"unknown keypoint layout {name!r}; known layouts: {', '.join(sorted(LAYOUTS))}"
        )
    return _ALIASES[key]
