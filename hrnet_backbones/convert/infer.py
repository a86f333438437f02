"""The whole architecture, read from the tensors of a state dict in this package's key layout.

Everything structural is in the shapes and the key names: the stem width (``conv1``), layer1's block type, depth
and planes, every stage's modules, branches, blocks per branch, block type and channels, whether the last module
fuses into every branch (``multi_scale_last``), and each head's sizes. What the tensors cannot say (how the fusion
upsamples, ``align_corners``) comes from the layout (see ``layouts.Layout.fusion_upsample``).
"""

from __future__ import annotations

import re
from typing import Any

import torch

from ..config import HRNetConfig, StageSpec
from .errors import LayoutError

__all__ = ["infer_arch", "infer_head", "in_chans_of"]


def _need(sd: dict[str, torch.Tensor], key: str, what: str) -> torch.Tensor:
    if key not in sd:
        raise LayoutError(f"missing key {key!r} ({what}); the checkpoint is incomplete or not an HRNet")
    return sd[key]


def _indices(sd: dict[str, torch.Tensor], pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (matched at the start of every key)."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in sd if (m := rx.match(k))})


def _contiguous(found: list[int], what: str) -> int:
    if not found:
        raise LayoutError(f"no {what} found; the checkpoint is incomplete or not an HRNet")
    if found != list(range(len(found))):
        missing = sorted(set(range(max(found) + 1)) - set(found))
        raise LayoutError(
            f"{what} are numbered {found}: number(s) {missing} are missing, so the file lacks whole modules (cut "
            "down or edited); convert the complete checkpoint"
        )
    return len(found)


def _block_stack(sd: dict[str, torch.Tensor], prefix: str) -> tuple[str, int, int]:
    """(block type, number of blocks, planes) of the ``nn.Sequential`` of residual blocks at ``prefix``."""
    n = _contiguous(_indices(sd, re.escape(prefix) + r"(\d+)\.conv1\.weight$"), f"blocks under {prefix}")
    block = "BOTTLENECK" if f"{prefix}0.conv3.weight" in sd else "BASIC"
    planes = sd[f"{prefix}0.conv1.weight"].shape[0]
    return block, n, int(planes)


def _stage(sd: dict[str, torch.Tensor], s: int) -> tuple[StageSpec, int]:
    """Stage ``s`` (2-4) from its first module; returns the spec and the number of fused rows of its last module."""
    num_modules = _contiguous(_indices(sd, rf"stage{s}\.(\d+)\."), f"stage{s} modules")
    num_branches = _contiguous(_indices(sd, rf"stage{s}\.0\.branches\.(\d+)\."), f"stage{s} branches")
    blocks, channels, types = [], [], set()
    for b in range(num_branches):
        block, n, planes = _block_stack(sd, f"stage{s}.0.branches.{b}.")
        blocks.append(n)
        channels.append(planes)
        types.add(block)
    if len(types) > 1:
        raise LayoutError(
            f"stage{s} mixes block types {sorted(types)} across branches; HRNetConfig needs one"
        )
    rows = _indices(sd, rf"stage{s}\.{num_modules - 1}\.fuse_layers\.(\d+)\.")
    spec = StageSpec(num_modules, tuple(blocks), tuple(channels), types.pop())
    return spec, len(rows)


def in_chans_of(sd: dict[str, torch.Tensor]) -> int:
    """Input channels of the stem convolution."""
    return int(_need(sd, "conv1.weight", "the stem convolution").shape[1])


def infer_arch(
    sd: dict[str, torch.Tensor], fusion_upsample: str = "nearest", align_corners: bool = False
) -> HRNetConfig:
    """The trunk's :class:`HRNetConfig` from a state dict in this package's key layout."""
    stem_width = int(_need(sd, "conv1.weight", "the stem convolution").shape[0])
    _need(sd, "layer1.0.conv1.weight", "the first block of layer1")
    block, n, planes = _block_stack(sd, "layer1.")
    stage1 = StageSpec(1, (n,), (planes,), block)
    stages = {}
    last_rows = 0
    for s in (2, 3, 4):
        spec, last_rows = _stage(sd, s)
        if spec.num_branches != s:
            raise LayoutError(
                f"stage{s} has {spec.num_branches} branches, expected {s}: HRNet adds one branch per stage"
            )
        stages[f"stage{s}"] = spec
    multi_scale_last = last_rows != 1
    if fusion_upsample == "nearest":
        align_corners = False
    return HRNetConfig(
        stage1=stage1,
        stem_width=stem_width,
        fusion_upsample=fusion_upsample,
        align_corners=align_corners,
        multi_scale_last=multi_scale_last,
        **stages,
    )


def _conv_out(sd: dict[str, torch.Tensor], key: str, what: str) -> tuple[int, int, int]:
    """(out channels, in channels, kernel size) of a conv weight."""
    w = _need(sd, key, what)
    if w.dim() != 4:
        raise LayoutError(f"{key} has shape {tuple(w.shape)}; expected a 4-D convolution weight ({what})")
    return int(w.shape[0]), int(w.shape[1]), int(w.shape[-1])


def infer_head(sd: dict[str, torch.Tensor], task: str, arch: HRNetConfig) -> dict[str, Any]:
    """The model arguments of ``task``'s head (``hrnet_backbones.model.HRNet`` keyword names) from the tensors."""
    if task == "pose":
        k, _, kernel = _conv_out(sd, "head.final_layer.weight", "the pose head")
        return dict(head="pose", num_classes=k, head_kernel_size=kernel)
    if task in ("segmentation", "landmark"):
        hidden, in_chs, _ = _conv_out(sd, "head.0.weight", f"the {task} head's first convolution")
        k, _, kernel = _conv_out(sd, "head.3.weight", f"the {task} head's output convolution")
        args: dict[str, Any] = dict(head=task, num_classes=k, head_kernel_size=kernel)
        if hidden != in_chs:
            args["head_hidden_channels"] = hidden
        return args
    if task == "classification":
        n_incre = _contiguous(_indices(sd, r"incre_modules\.(\d+)\."), "incre_modules")
        head_channels = tuple(
            _conv_out(sd, f"incre_modules.{i}.0.conv1.weight", "a channel-increase block")[0]
            for i in range(n_incre)
        )
        features, _, _ = _conv_out(sd, "final_layer.0.weight", "the classification head's 1x1 convolution")
        classifier = _need(sd, "classifier.weight", "the ImageNet classifier")
        return dict(
            head="classification",
            num_classes=int(classifier.shape[0]),
            head_channels=head_channels,
            head_features=features,
            head_conv_bias="final_layer.0.bias" in sd,
        )
    if task == "detection":
        neck, _, _ = _conv_out(sd, "neck.reduction_conv.0.weight", "the HRFPN reduction convolution")
        levels = _contiguous(_indices(sd, r"neck\.fpn_conv\.(\d+)\.weight"), "HRFPN fpn_conv levels")
        return dict(head="none", num_classes=0, neck_channels=neck, neck_levels=levels)
    if task == "backbone":
        return dict(head="none", num_classes=0)
    raise LayoutError(f"unknown task {task!r}")
