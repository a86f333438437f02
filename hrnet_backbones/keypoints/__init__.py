"""Keypoint utilities for heatmap pose / landmark models: codecs, top-down transforms, flip test, loss,
metrics, dataset layouts and drawing. Batched torch code that runs where the model runs; NumPy accepted.

Conventions: ``(x, y)`` order, sizes ``(w, h)``, heatmaps ``(N, K, H, W)`` with pixel centres at integer
coordinates. See :mod:`hrnet_backbones.keypoints.codecs` for the official-vs-mmpose choices.
"""

from .codecs import (
    MSRAHeatmap,
    UDPHeatmap,
    decode_heatmaps,
    gaussian_blur,
    gaussian_kernel1d,
    get_heatmap_maximum,
    refine_dark,
    refine_dark_udp,
    refine_quarter_offset,
)
from .datasets import (
    AFLW_19,
    COCO_KEYPOINTS,
    COFW_29,
    LAYOUTS,
    MPII_KEYPOINTS,
    W300_68,
    WFLW_98,
    KeypointLayout,
    UnknownLayoutError,
    get_layout,
)
from .draw import draw_keypoints, save_overlay
from .flip import aligned_flip_shift, flip_back, flip_permutation, flip_test, fliplr_joints
from .loss import KeypointMSELoss
from .metrics import (
    auc_nme,
    coco_keypoint_stats,
    failure_rate,
    keypoint_auc,
    keypoint_epe,
    keypoint_pck_accuracy,
    nme,
    oks,
    oks_matrix,
    pck_accuracy,
)
from .transforms import (
    affine_transform_points,
    box_to_center_scale,
    crop_image,
    get_affine_transform,
    transform_preds,
    warp_affine,
)

__all__ = [
    "AFLW_19",
    "COCO_KEYPOINTS",
    "COFW_29",
    "LAYOUTS",
    "MPII_KEYPOINTS",
    "W300_68",
    "WFLW_98",
    "KeypointLayout",
    "KeypointMSELoss",
    "MSRAHeatmap",
    "UDPHeatmap",
    "UnknownLayoutError",
    "affine_transform_points",
    "aligned_flip_shift",
    "auc_nme",
    "box_to_center_scale",
    "coco_keypoint_stats",
    "crop_image",
    "decode_heatmaps",
    "draw_keypoints",
    "failure_rate",
    "flip_back",
    "flip_permutation",
    "flip_test",
    "fliplr_joints",
    "gaussian_blur",
    "gaussian_kernel1d",
    "get_affine_transform",
    "get_heatmap_maximum",
    "get_layout",
    "keypoint_auc",
    "keypoint_epe",
    "keypoint_pck_accuracy",
    "nme",
    "oks",
    "oks_matrix",
    "pck_accuracy",
    "refine_dark",
    "refine_dark_udp",
    "refine_quarter_offset",
    "save_overlay",
    "transform_preds",
    "warp_affine",
]
