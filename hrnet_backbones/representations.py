"""The three HRNet representations built on the trunk's four branches.

* V1 (HRNetV1, pose): the branches themselves; heads read the highest-resolution one.
* V2 (HRNetV2, segmentation and facial landmarks): every branch upsampled bilinearly to branch 0 and concatenated
  (C + 2C + 4C + 8C = 15C channels at stride 4).
* V2p (HRNetV2p, detection): the V2 map reduced by a 1x1 conv and average-pooled into a five-level pyramid
  (strides 4..64), each level followed by a 3x3 conv: the HRFPN neck of the official detection code, with its
  parameter names (``reduction_conv.0``, ``fpn_conv.{i}``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

__all__ = ["REPRESENTATIONS", "REPRESENTATION_LABELS", "HRFPN", "concat_branches", "pool_level"]

REPRESENTATIONS = ("v1", "v2", "v2p")
#: how the papers, the README and every printed table or message write each representation
REPRESENTATION_LABELS = {"v1": "V1", "v2": "V2", "v2p": "V2p"}


def concat_branches(branches: list[torch.Tensor], align_corners: bool = False) -> torch.Tensor:
    """Upsample branches 1.. bilinearly to the size of branch 0 and concatenate along channels."""
    size = branches[0].shape[-2:]
    ups = [branches[0]]
    ups += [F.interpolate(b, size=size, mode="bilinear", align_corners=align_corners) for b in branches[1:]]
    return torch.cat(ups, dim=1)


@register_notrace_function  # shape-dependent kernel size: a leaf for torch.fx
def pool_level(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Average-pool by ``factor`` (kernel = stride), flooring the size as the official HRFPN does.

    A side shorter than ``factor`` would floor to zero; it is pooled whole instead (size 1), so every input size
    gives a pyramid: out = max(1, floor(side / factor)).

    Written without a size-dependent kernel so that exported graphs (torch.export, ONNX, traced) stay right for
    every input size: a ceil-mode pool averages a partial last window over its valid pixels (that is the whole
    side when it is shorter than ``factor``), and the crop keeps the full windows, or that single one.
    """
    if factor == 1:
        return x
    h, w = x.shape[-2:]
    y = F.avg_pool2d(x, factor, factor, ceil_mode=True, count_include_pad=False)
    out_h, out_w = h // factor, w // factor
    if isinstance(out_h, torch.Tensor):  # sizes are traced tensors in the TorchScript-based ONNX exporter
        out_h, out_w = out_h.clamp(min=1), out_w.clamp(min=1)
    else:  # ints, or symbolic ints under torch.export / torch.compile: a max without a guard
        out_h, out_w = torch.sym_max(1, out_h), torch.sym_max(1, out_w)
    return y[..., :out_h, :out_w]


class HRFPN(nn.Module):
    """HRNetV2p pyramid neck: 1x1 reduction of the concatenated map, ``num_levels`` pooled levels, 3x3 convs."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 256,
        num_levels: int = 5,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ):
        super().__init__()
        dd = dict(device=device, dtype=dtype)
        self.num_levels = num_levels
        self.out_channels = out_channels
        self.reduction_conv = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, **dd))
        self.fpn_conv = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1, **dd) for _ in range(num_levels)
        )
        self.levels = tuple(range(num_levels))

    def keep_levels(self, levels: tuple[int, ...]) -> None:
        """Compute only ``levels`` from now on; the convolutions of the others are dropped."""
        self.levels = tuple(sorted(set(levels)))
        self.fpn_conv = nn.ModuleList(
            c if i in self.levels else nn.Identity() for i, c in enumerate(self.fpn_conv)
        )

    def forward(self, concat: torch.Tensor) -> list[torch.Tensor]:
        """(N, in_channels, H, W) -> levels ``self.levels`` (all five by default), level i at H / 2^i."""
        x = self.reduction_conv(concat)
        return [conv(pool_level(x, 2**i)) for i, conv in enumerate(self.fpn_conv) if i in self.levels]
