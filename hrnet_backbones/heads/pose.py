"""The HRNetV1 pose head: one convolution from the stride-4 map to K keypoint heatmaps."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PoseHead"]


class PoseHead(nn.Module):
    """``final_layer``: a ``kernel_size`` x ``kernel_size`` conv (1 or 3, as ``FINAL_CONV_KERNEL``) with bias.

    The parameter name matches the official pose checkpoints (``final_layer.*``) and mmpose's ``HeatmapHead``
    (``head.final_layer.*``), so both map onto it one to one. Input (N, C, H, W) -> heatmaps (N, K, H, W).
    """

    def __init__(self, in_channels: int, num_keypoints: int, kernel_size: int = 1):
        super().__init__()
        if kernel_size not in (1, 3):
            raise ValueError(f"pose head kernel_size must be 1 or 3 (FINAL_CONV_KERNEL), got {kernel_size}")
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.final_layer = nn.Conv2d(in_channels, num_keypoints, kernel_size, padding=kernel_size // 2)

    @property
    def num_outputs(self) -> int:
        return self.final_layer.out_channels

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def reset(self, num_outputs: int) -> None:
        """Replace the output convolution with one producing ``num_outputs`` maps (new random weights)."""
        old = self.final_layer
        self.final_layer = nn.Conv2d(
            self.in_channels,
            num_outputs,
            self.kernel_size,
            padding=self.kernel_size // 2,
            device=old.weight.device,
            dtype=old.weight.dtype,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)
