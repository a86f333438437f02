"""Parameters, multiply-adds and feature shapes, computed on the meta device (no memory, no compute).

The HRNet papers' "GFLOPs" are multiply-adds divided by 2^30 (pose W32 at 256x192: 7.1; HRNetV2-W48 segmentation
at 1024x2048: 696); ``Complexity.paper_gflops`` reports that figure, ``gmacs`` the usual 10^9 count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import timm
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["Complexity", "FeatureRow", "feature_table", "measure", "meta_model"]


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    input_size: tuple[int, int]

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def paper_gflops(self) -> float:
        """Multiply-adds / 2^30, the unit of the HRNet papers' complexity tables."""
        return self.macs / 2**30


@dataclass(frozen=True)
class FeatureRow:
    index: int
    module: str
    channels: int
    stride: int
    shape: tuple[int, ...]


def meta_model(name: str, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, **kwargs)`` built on the meta device (weights take no memory)."""
    with torch.device("meta"):
        return timm.create_model(name, **kwargs).eval()


def measure(model: nn.Module, input_size: tuple[int, int], batch_size: int = 1) -> Complexity:
    """Parameters of ``model`` and multiply-adds of one forward at ``input_size`` (H, W), counted on meta tensors."""
    device = next(model.parameters()).device
    x = torch.empty(batch_size, getattr(model, "in_chans", 3), *input_size, device=device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    params = sum(p.numel() for p in model.parameters())
    return Complexity(params=params, macs=counter.get_total_flops() // 2, input_size=tuple(input_size))


def feature_table(model: nn.Module, input_size: tuple[int, int]) -> list[FeatureRow]:
    """One row per feature the model offers: index, module, channels, stride and the output shape at ``input_size``."""
    indices = list(model.available_feature_indices())
    x = torch.empty(1, model.in_chans, *input_size, device=next(model.parameters()).device)
    with torch.no_grad():
        feats = model.forward_intermediates(x, indices=indices, intermediates_only=True)
    info = model.feature_info.info
    return [
        FeatureRow(i, info[i]["module"], info[i]["num_chs"], info[i]["reduction"], tuple(f.shape))
        for i, f in zip(indices, feats)
    ]
