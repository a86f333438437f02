"""The key layouts of every HRNet code base that published checkpoints, and their mapping onto ours.

All of them name the trunk the same way (``conv1`` ... ``stage4.{m}.fuse_layers``), behind a prefix: none (pose,
ImageNet, facial landmarks), ``model.`` (segmentation) or ``backbone.`` (detection and OpenMMLab). They differ in
the prefix, in the head or neck names, and in what else the file carries (loss buffers, detector heads). A
:class:`Layout` records exactly that; :func:`match_layout` finds the layout a set of keys fits and maps the keys to
this package's names (those of ``hrnet_backbones.model.HRNet``), reporting what it dropped on purpose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from .errors import LayoutError

__all__ = ["FAMILIES", "LAYOUTS", "KeyMapping", "Layout", "match_layout", "TRUNK_ROOTS"]

#: First key component of every trunk parameter (official names, shared by all layouts).
TRUNK_ROOTS = (
    "conv1",
    "bn1",
    "conv2",
    "bn2",
    "layer1",
    "transition1",
    "transition2",
    "transition3",
    "stage2",
    "stage3",
    "stage4",
)

_DETECTOR_PARTS = (
    r"(?:rpn_head|roi_head|bbox_head|mask_head|semantic_head|mask_iou_head|grid_head|"
    r"bbox_roi_extractor|mask_roi_extractor|shared_head|data_preprocessor)\.",
    "the detector's heads (only the HRNetV2p backbone and its HRFPN neck are converted)",
)
_PREPROCESSOR = (
    r"data_preprocessor\.",
    "OpenMMLab's input normalisation buffers (kept in pretrained_cfg mean/std)",
)


@dataclass(frozen=True)
class Layout:
    """How one code base names an HRNet checkpoint.

    Attributes:
        family: the name ``--family`` takes (``pose``, ``cls``, ``seg``, ``face``, ``det``, ``mmpose``, ...).
        task: ``pose``, ``classification``, ``segmentation``, ``landmark``, ``detection`` or ``backbone``.
        description: where such files come from.
        trunk_prefix: what precedes the shared trunk names.
        signature: a key pattern only this layout's files contain (``None``: the trunk-only fallback).
        renames: ``(pattern, replacement)`` applied with ``re.sub`` to head/neck keys matching at the start.
        drops: ``(pattern, reason)`` for keys deliberately left out (loss buffers, detector heads).
        zero_biases: our convolutions whose bias the source does not have (a zero bias is the same function).
        fusion_upsample: how this code base's fusion upsamples (the file cannot say; see ``FUSION_UPSAMPLE_MODES``).
        origin: ``official`` or ``openmmlab``.
    """

    family: str
    task: str
    description: str
    trunk_prefix: str
    signature: str | None
    renames: tuple[tuple[str, str], ...] = ()
    drops: tuple[tuple[str, str], ...] = ()
    zero_biases: tuple[str, ...] = ()
    fusion_upsample: str = "nearest"
    origin: str = "official"

    def map_key(self, key: str) -> tuple[str | None, str | None]:
        """``(our_key, None)``, ``(None, reason)`` for a deliberate drop, or ``(None, None)`` if it does not fit."""
        for pattern, reason in self.drops:
            if re.match(pattern, key):
                return None, reason
        for pattern, repl in self.renames:
            if re.match(pattern, key):
                return re.sub(pattern, repl, key, count=1), None
        if key.startswith(self.trunk_prefix):
            rest = key[len(self.trunk_prefix) :]
            if rest.split(".", 1)[0] in TRUNK_ROOTS:
                return rest, None
        return None, None


_CLS_HEAD = (r"(incre_modules|downsamp_modules|final_layer|classifier)\.", r"\1.")

LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "pose",
        "pose",
        "official HRNet pose estimation (leoxiaobin/deep-high-resolution-net.pytorch, pose_hrnet_*.pth)",
        "",
        r"final_layer\.weight$",
        renames=((r"final_layer\.", "head.final_layer."),),
    ),
    Layout(
        "cls",
        "classification",
        "official HRNet ImageNet classification (HRNet/HRNet-Image-Classification; also timm's hrnet_w* files)",
        "",
        r"classifier\.weight$",
        renames=(_CLS_HEAD,),
    ),
    Layout(
        "seg",
        "segmentation",
        "official HRNetV2 semantic segmentation (HRNet/HRNet-Semantic-Segmentation, FullModel 'model.' keys)",
        "model.",
        r"model\.last_layer\.3\.weight$",
        renames=((r"model\.last_layer\.", "head."),),
        drops=((r"loss\.", "the training loss' class-weight buffer"),),
        fusion_upsample="bilinear",
    ),
    Layout(
        "face",
        "landmark",
        "official HRNetV2 facial landmarks (HRNet/HRNet-Facial-Landmark-Detection, HR18-*.pth)",
        "",
        r"head\.3\.weight$",
        renames=((r"head\.", "head."),),
        fusion_upsample="bilinear",
    ),
    Layout(
        "det",
        "detection",
        "official HRNetV2p detection backbone + HRFPN (HRNet/HRNet-Object-Detection, on mmdetection 0.x)",
        "backbone.",
        r"neck\.reduction_conv\.0\.weight$",
        renames=((r"neck\.(reduction_conv\.0|fpn_conv\.\d+)\.", r"neck.\1."),),
        drops=(_DETECTOR_PARTS,),
    ),
    Layout(
        "mmpose",
        "pose",
        "mmpose top-down heatmap HRNet (backbone.* + head.* in 1.x, keypoint_head.* in 0.x)",
        "backbone.",
        r"(?:head|keypoint_head)\.final_layer\.weight$",
        renames=((r"(?:head|keypoint_head)\.final_layer\.", "head.final_layer."),),
        drops=(_PREPROCESSOR,),
        origin="openmmlab",
    ),
    Layout(
        "mmseg",
        "segmentation",
        "mmsegmentation FCN-HRNet (backbone.* + decode_head.* FCNHead)",
        "backbone.",
        r"decode_head\.conv_seg\.weight$",
        renames=(
            (r"decode_head\.convs\.0\.conv\.", "head.0."),
            (r"decode_head\.convs\.0\.bn\.", "head.1."),
            (r"decode_head\.conv_seg\.", "head.3."),
        ),
        drops=(_PREPROCESSOR,),
        # mmseg's ConvModule has no conv bias (a BN follows); ours has one, so it is set to zero
        zero_biases=("head.0",),
        fusion_upsample="bilinear_scale",
        origin="openmmlab",
    ),
    Layout(
        "mmdet",
        "detection",
        "mmdetection 2.x/3.x HRNetV2p backbone + HRFPN (backbone.* + neck.* ConvModules)",
        "backbone.",
        r"neck\.reduction_conv\.conv\.weight$",
        renames=(
            (r"neck\.reduction_conv\.conv\.", "neck.reduction_conv.0."),
            (r"neck\.fpn_convs\.(\d+)\.conv\.", r"neck.fpn_conv.\1."),
        ),
        drops=(_DETECTOR_PARTS,),
        origin="openmmlab",
    ),
    Layout(
        "backbone",
        "backbone",
        "an HRNet trunk without a head (bare, or under 'backbone.')",
        "",
        None,
    ),
)

FAMILIES = tuple(layout.family for layout in LAYOUTS)
_BY_FAMILY = {layout.family: layout for layout in LAYOUTS}


@dataclass
class KeyMapping:
    """The result of fitting a checkpoint's keys to one layout.

    ``mapping`` is source key -> our key; ``dropped`` source key -> why it was left out on purpose; ``unplaced``
    lists the keys this layout cannot place (empty when it fits).
    """

    layout: Layout
    mapping: dict[str, str] = field(default_factory=dict)
    dropped: dict[str, str] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.unplaced and bool(self.mapping)


def _fit(layout: Layout, keys: Iterable[str], trunk_prefix: str | None = None) -> KeyMapping:
    if trunk_prefix is not None and trunk_prefix != layout.trunk_prefix:
        layout = replace(layout, trunk_prefix=trunk_prefix)
    result = KeyMapping(layout)
    for key in keys:
        ours, reason = layout.map_key(key)
        if ours is not None:
            result.mapping[key] = ours
        elif reason is not None:
            result.dropped[key] = reason
        else:
            result.unplaced.append(key)
    return result


def _has_signature(layout: Layout, keys: list[str]) -> bool:
    return layout.signature is not None and any(re.match(layout.signature, k) for k in keys)


def _fit_backbone(keys: list[str], keep_trunk_only: bool) -> KeyMapping:
    """The trunk-only layout, with whichever trunk prefix places the most keys ('' / 'backbone.' / 'model.').

    With ``keep_trunk_only`` every other key is dropped, and the fusion mode is that of the layout whose
    signature the keys carry (the trunk of a segmentation file fuses bilinearly, ...).
    """
    fits = [_fit(_BY_FAMILY["backbone"], keys, prefix) for prefix in ("", "backbone.", "model.")]
    best = max(fits, key=lambda m: len(m.mapping))
    if keep_trunk_only:
        for key in best.unplaced:
            best.dropped[key] = "not part of the trunk (--family backbone keeps the trunk only)"
        best.unplaced = []
        natural = next((lay for lay in LAYOUTS if _has_signature(lay, keys)), None)
        if natural is not None:
            best.layout = replace(
                best.layout,
                fusion_upsample=natural.fusion_upsample,
                description=f"the trunk of a '{natural.family}' checkpoint ({natural.description})",
            )
    return best


def _shown(keys: list[str], limit: int = 5) -> str:
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def match_layout(keys: Iterable[str], family: str | None = None) -> KeyMapping:
    """Fit ``keys`` (a state dict's names, containers already unwrapped) to a known layout.

    Without ``family`` the layout whose signature key is present and which places every key is chosen; a trunk
    with no other keys is the ``backbone`` layout. With ``family`` that layout must fit; ``family="backbone"``
    keeps the trunk of any layout and drops the rest. Raises :class:`LayoutError` naming the closest layout and
    the keys that could not be placed.
    """
    keys = list(keys)
    if family is not None and family not in _BY_FAMILY:
        raise LayoutError(f"unknown --family {family!r}; expected one of {', '.join(FAMILIES)}")
    if family == "backbone":
        result = _fit_backbone(keys, keep_trunk_only=True)
        if not result.mapping:
            raise LayoutError(
                "--family backbone: no HRNet trunk keys (conv1, layer1, stage2, ...) in the checkpoint"
            )
        return result

    fits = [_fit(layout, keys) for layout in LAYOUTS if layout.signature is not None]
    candidates = [m for m in fits if _has_signature(m.layout, keys) and m.fits]
    trunk_only = _fit_backbone(keys, keep_trunk_only=False)
    if trunk_only.fits:
        candidates.append(trunk_only)
    if family is not None:
        wanted = next((m for m in fits + [trunk_only] if m.layout.family == family), None)
        if wanted in candidates:
            return wanted
        detected = (
            f"its keys fit the '{candidates[0].layout.family}' layout"
            if candidates
            else "its layout is unknown"
        )
        missing = (
            ""
            if _has_signature(_BY_FAMILY[family], keys)
            else f"; no key matches {_BY_FAMILY[family].signature}"
        )
        raise LayoutError(
            f"--family {family} contradicts the checkpoint: {detected}"
            + (
                f"; as '{family}' these keys cannot be placed: {_shown(wanted.unplaced)}"
                if wanted.unplaced
                else ""
            )
            + f"{missing}; drop --family to convert it as what it is"
        )
    if len(candidates) == 1:
        return candidates[0]
    if len(candidates) > 1:  # cannot happen with the signatures above; kept as a guard for new layouts
        names = ", ".join(m.layout.family for m in candidates)
        raise LayoutError(f"the checkpoint fits several layouts ({names}); choose one with --family")
    if not trunk_only.mapping:
        raise LayoutError(
            f"no HRNet weights found: none of the {len(keys)} keys ({_shown(keys)}) is an HRNet trunk key "
            "(conv1, layer1, transition1, stage2, ...) under any known prefix; is this an HRNet checkpoint?"
        )
    # most keys accounted for; on a tie a layout whose signature is present, then the plain trunk
    closest = max(
        fits + [trunk_only],
        key=lambda m: (len(m.mapping) + len(m.dropped), _has_signature(m.layout, keys), m is trunk_only),
    )
    raise LayoutError(
        f"unknown checkpoint layout: closest to '{closest.layout.family}' ({closest.layout.description}), but "
        f"{len(closest.unplaced)} of {len(keys)} keys could not be placed: {_shown(closest.unplaced)}; "
        "if it is an HRNet with another head, --family backbone converts just the trunk"
    )
