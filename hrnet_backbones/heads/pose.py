"""The HRNetV1 pose head: one convolution from the stride-4 map to K keypoint heatmaps."""

from __future__ import annotations

import torch
from torch import nn

from .output import output_conv

__all__ = ["PoseHead"]


class PoseHead(nn.Module):
    """``final_layer``: a ``kernel_size`` x ``kernel_size`` conv (1 or 3, as ``FINAL_CONV_KERNEL``) with bias.

    The parameter name matches the official pose checkpoints (``final_layer.*``) and mmpose's ``HeatmapHead``
    (``head.final_layer.*``), so both map onto it one to one. Input (N, C, H, W) -> heatmaps (N, K, H, W).
    """

    def __init__(
        self,
        in_channels: int,
        num_keypoints: int,
        kernel_size: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        self.in_channels = in_channels
        self.kernel_size = kernel_size
        self.final_layer = output_conv(in_channels, num_keypoints, kernel_size, device=device, dtype=dtype)

    @property
    def num_outputs(self) -> int:
        return self.final_layer.out_channels

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def reset(self, num_outputs: int) -> None:
        """Replace the output convolution with one producing ``num_outputs`` maps (new random weights)."""
        self.final_layer = output_conv(self.in_channels, num_outputs, self.kernel_size, like=self.final_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(x)
