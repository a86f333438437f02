"""HRNet as a torchvision detection backbone (Faster R-CNN, RetinaNet, Mask R-CNN, FCOS, ...).

torchvision's detectors take any module with an ``out_channels`` attribute whose forward returns an
``OrderedDict`` of feature maps. :func:`hrnet_detection_backbone` builds one from any model of this package:

* HRNetV2p (``hrnetv2p_w*``): its five-level pyramid is already an FPN (the HRFPN neck of the official detection
  code), so the levels are returned directly (strides 4, 8, 16, 32, 64).
* HRNetV1 / V2 (``hrnet_w*``, ``hrnetv2_w*``): the four branches (strides 4-32) go through torchvision's
  ``FeaturePyramidNetwork`` with ``LastLevelMaxPool``, as torchvision does for ResNets.

Either way the maps are named ``"0"``, ``"1"``, ``"2"``, ``"3"`` and ``"pool"``, like torchvision's
``resnet_fpn_backbone``, so detector settings (``featmap_names``, one anchor size per level) carry over as they
are::

    from torchvision.models.detection import FasterRCNN
    backbone = hrnet_detection_backbone("hrnetv2p_w32", pretrained=True)
    model = FasterRCNN(backbone, num_classes=91)
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import timm
import torch
from timm.layers import freeze_batch_norm_2d
from torch import nn
from torchvision.ops.feature_pyramid_network import ExtraFPNBlock, FeaturePyramidNetwork, LastLevelMaxPool

from .model import HRNet

__all__ = ["TRAINABLE_GROUPS", "HRNetDetectionBackbone", "hrnet_detection_backbone"]

#: What ``trainable_layers=k`` keeps trainable: the first k groups, from the top of the network down (as
#: torchvision's ``trainable_layers`` for ResNets: layer4, layer3, layer2, layer1, stem).
TRAINABLE_GROUPS: tuple[tuple[str, ...], ...] = (
    ("stage4.", "transition3.", "incre_modules."),
    ("stage3.", "transition2."),
    ("stage2.", "transition1."),
    ("layer1.",),
    ("conv1.", "bn1.", "conv2.", "bn2."),
)

_LEVEL_NAMES = ("0", "1", "2", "3", "pool")


def _level_names(n: int) -> list[str]:
    return list(_LEVEL_NAMES) if n == len(_LEVEL_NAMES) else [str(i) for i in range(n)]


class HRNetDetectionBackbone(nn.Module):
    """An HRNet pruned to its pyramid features (``body``) and, for V1/V2, a torchvision FPN (``fpn``) on them.

    ``forward`` maps images (N, C, H, W) to an ``OrderedDict`` of ``out_channels``-channel maps at ``strides``
    (sizes ceil-rounded, as every stride-2 conv of the trunk rounds up; the V2p pooled levels round down).
    """

    def __init__(self, body: HRNet, indices: list[int], fpn: nn.Module | None, out_channels: int):
        super().__init__()
        self.body = body
        self.indices = indices
        self.fpn = fpn
        self.out_channels = out_channels
        self.strides = [body.feature_info.info[i]["reduction"] for i in indices]
        if fpn is not None and isinstance(fpn.extra_blocks, LastLevelMaxPool):
            self.strides.append(2 * self.strides[-1])

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body.forward_intermediates(x, indices=self.indices, intermediates_only=True)
        if self.fpn is None:
            return OrderedDict(zip(_level_names(len(feats)), feats))
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def _freeze_layers(body: nn.Module, trainable_layers: int) -> None:
    if not 0 <= trainable_layers <= len(TRAINABLE_GROUPS):
        raise ValueError(
            f"trainable_layers must be between 0 and {len(TRAINABLE_GROUPS)} (stage4, stage3, stage2, layer1, stem, "
            f"counted from the top), got {trainable_layers}"
        )
    keep = tuple(p for group in TRAINABLE_GROUPS[:trainable_layers] for p in group)
    trunk = tuple(p for group in TRAINABLE_GROUPS for p in group)
    for name, param in body.named_parameters():
        # the V2p neck is not part of the trunk: it always trains, like torchvision's FPN
        if name.startswith(trunk) and not name.startswith(keep):
            param.requires_grad_(False)


def hrnet_detection_backbone(
    model: str | HRNet = "hrnetv2p_w32",
    *,
    pretrained: bool = False,
    trainable_layers: int | None = None,
    freeze_batch_norm: bool | None = None,
    out_indices: tuple[int, ...] | None = None,
    out_channels: int = 256,
    extra_blocks: ExtraFPNBlock | None = None,
    **kwargs: Any,
) -> HRNetDetectionBackbone:
    """Turn an HRNet into a torchvision detection backbone (an ``nn.Module`` with ``out_channels``).

    Args:
        model: a registered name (``"hrnetv2p_w32"``, ``"hrnet_w18"``, ``"local-dir:PATH"``, ...) or a model of
            this package (any head, or ``features_only``). A given model is copied, then pruned to the features;
            the original is left as it was.
        pretrained: load the name's pretrained weights (``kwargs`` may carry ``pretrained_cfg_overlay``).
        trainable_layers: how many trunk groups, from the top (stage4, stage3, stage2, layer1, stem), keep
            training; the others are frozen. Default: 3 with pretrained weights, all 5 otherwise (as torchvision).
            The V2p neck and the FPN always train.
        freeze_batch_norm: replace every BatchNorm2d with torchvision's ``FrozenBatchNorm2d`` (the current
            statistics and affine become constants), as torchvision does for pretrained detection backbones.
            Default: True with pretrained weights, False otherwise.
        out_indices: feature indices for the pyramid (see ``HRNet``; ``hrnet-backbones info NAME`` lists them).
            Default: the V2p pyramid (2, 4, 6, 8, 9) for ``hrnetv2p_*``; the four branches (into the FPN) for V1
            and V2.
        out_channels: FPN width for V1/V2 (V2p keeps its neck width, ``neck_channels``).
        extra_blocks: V1/V2 only: torchvision's extra FPN block; default ``LastLevelMaxPool`` (a fifth level).
        kwargs: for a name, passed to ``timm.create_model`` (``arch``, ``output_stride``, ``in_chans``,
            ``pretrained_cfg_overlay``, ...).

    Returns:
        ``HRNetDetectionBackbone``: forward(images (N, C, H, W)) -> ``OrderedDict`` ``"0"``..``"3"``, ``"pool"``.
    """
    if isinstance(model, str):
        body = timm.create_model(model, pretrained=pretrained, head="none", **kwargs)
    elif isinstance(model, HRNet):
        if kwargs or pretrained:
            raise TypeError("pretrained and model keyword arguments apply only to a model given by name")
        body = copy.deepcopy(model)
    else:
        raise TypeError(
            f"expected a model name or an hrnet_backbones model, got {type(model).__name__}; create one with "
            "timm.create_model('hrnetv2p_w32', ...) after `import hrnet_backbones`"
        )
    if out_indices is None:
        pyramid = [
            i for i in body.available_feature_indices() if body.feature_names([i])[0].startswith("pyramid")
        ]
        branches = [
            i for i in body.available_feature_indices() if body.feature_names([i])[0].startswith("branch")
        ]
        out_indices = pyramid if body.representation == "v2p" and pyramid else branches
        if len(out_indices) < 2:
            raise ValueError(
                f"this model offers a single branch ({', '.join(body.feature_names())}): its last module fuses into "
                "branch 0 only (a pose head or multi_scale_last=False); build it with head='none' for a pyramid"
            )
    indices = body.prune_intermediate_layers(out_indices, prune_head=True)
    names = body.feature_names(indices)
    if "stem" in names or "concat" in names:
        raise ValueError(
            f"out_indices {list(indices)} ({', '.join(names)}) include the stem or the V2 concatenation, which do "
            "not belong in a detection pyramid; take the branches or, with hrnetv2p_*, the pyramid levels "
            "(`hrnet-backbones info NAME` lists the indices)"
        )
    pyramid_levels = [name.startswith("pyramid") for name in names]
    if any(pyramid_levels) and not all(pyramid_levels):
        raise ValueError(
            f"out_indices {list(indices)} ({', '.join(names)}) mix branches and V2p pyramid levels; take one or the "
            "other"
        )
    if trainable_layers is None:
        trainable_layers = 3 if pretrained else len(TRAINABLE_GROUPS)
    _freeze_layers(body, trainable_layers)
    if freeze_batch_norm is None:
        freeze_batch_norm = pretrained
    if freeze_batch_norm:
        body = freeze_batch_norm_2d(body)
    channels = [body.feature_info.info[i]["num_chs"] for i in indices]
    if all(pyramid_levels):  # the V2p pyramid is an FPN already
        return HRNetDetectionBackbone(body, indices, None, channels[0])
    extra = LastLevelMaxPool() if extra_blocks is None else extra_blocks
    fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=extra)
    return HRNetDetectionBackbone(body, indices, fpn, out_channels)
