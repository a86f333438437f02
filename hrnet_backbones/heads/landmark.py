"""The HRNetV2 landmark / segmentation head: 1x1 conv (bias), BN, ReLU, conv to K maps.

Facial-landmark checkpoints call it ``head.{0,1,3}``, the segmentation ones ``last_layer.{0,1,3}``; mmseg's
``FCNHead`` has the same structure without the first bias. Being an ``nn.Sequential`` it keeps those indices.
"""

from __future__ import annotations

import torch
from torch import nn

from .output import output_conv

__all__ = ["LandmarkHead"]


class LandmarkHead(nn.Sequential):
    """(N, C, H, W) stride-4 map (the V2 concatenation, 15C channels) -> (N, K, H, W) heatmaps or logits."""

    def __init__(
        self,
        in_channels: int,
        num_outputs: int,
        kernel_size: int = 1,
        hidden_channels: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        dd = dict(device=device, dtype=dtype)
        hidden = in_channels if hidden_channels is None else hidden_channels
        super().__init__(
            nn.Conv2d(in_channels, hidden, 1, **dd),
            nn.BatchNorm2d(hidden, **dd),
            nn.ReLU(inplace=True),
            output_conv(hidden, num_outputs, kernel_size, **dd),
        )
        self.in_channels = in_channels
        self.kernel_size = kernel_size

    @property
    def num_outputs(self) -> int:
        return self[3].out_channels

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self[2](self[1](self[0](x)))

    def reset(self, num_outputs: int) -> None:
        """Replace the output convolution with one producing ``num_outputs`` maps (new random weights)."""
        self[3] = output_conv(self[3].in_channels, num_outputs, self.kernel_size, like=self[3])
