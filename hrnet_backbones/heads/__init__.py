"""Task heads that sit on the stride-4 map of an HRNet representation."""

import torch

from .landmark import LandmarkHead
from .pose import PoseHead

__all__ = ["HEADS", "LandmarkHead", "PoseHead", "build_head"]

#: head name -> builder(in_channels, num_outputs, kernel_size, hidden_channels)
HEADS = ("pose", "landmark", "segmentation")


def build_head(
    name: str,
    in_channels: int,
    num_outputs: int,
    kernel_size: int = 1,
    hidden_channels: int | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
):
    """The head called ``name`` (see ``HEADS``) mapping ``in_channels`` to ``num_outputs`` maps at the same stride,
    with its parameters built on ``device`` / ``dtype``."""
    if name == "pose":
        if hidden_channels is not None:
            raise ValueError("the pose head is a single convolution; it takes no hidden_channels")
        return PoseHead(in_channels, num_outputs, kernel_size, device=device, dtype=dtype)
    if name in ("landmark", "segmentation"):
        return LandmarkHead(
            in_channels, num_outputs, kernel_size, hidden_channels, device=device, dtype=dtype
        )
    raise ValueError(f"unknown head {name!r}; expected one of {HEADS}, 'classification' or 'none'")
