"""The last layer every dense head ends with, built in one place for construction and ``reset``."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["output_conv"]


def output_conv(
    in_channels: int,
    num_outputs: int,
    kernel_size: int,
    like: nn.Conv2d | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> nn.Conv2d:
    """A ``kernel_size`` x ``kernel_size`` conv with bias and same-size padding (the official FINAL_CONV_KERNEL,
    1 or 3), built on ``device`` / ``dtype``; on ``like``'s device and dtype (and train/eval mode) when it replaces
    that layer."""
    if kernel_size not in (1, 3):
        raise ValueError(f"head kernel_size must be 1 or 3 (FINAL_CONV_KERNEL), got {kernel_size}")
    placement = dict(device=device, dtype=dtype)
    if like is not None:
        placement = dict(device=like.weight.device, dtype=like.weight.dtype)
    conv = nn.Conv2d(in_channels, num_outputs, kernel_size, padding=kernel_size // 2, **placement)
    return conv if like is None else conv.train(like.training)
