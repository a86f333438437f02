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


@dataclass(frozen=True)
class PublishedFigure:
    """Params and "GFLOPs" (multiply-adds / 2^30) a paper or official repository reports for one model."""

    name: str
    model: str
    kwargs: tuple[tuple[str, Any], ...]
    input_size: tuple[int, int]
    params_m: float
    gflops: float
    source: str


#: Complexity the HRNet papers and official repositories publish (rounded to one decimal). Pose models: the
#: official pose heads (17 COCO keypoints, single-scale last fusion); segmentation: Cityscapes (19 classes).
PUBLISHED: tuple[PublishedFigure, ...] = (
    PublishedFigure(
        "pose HRNet-W32",
        "hrnet_w32",
        (("head", "pose"), ("num_classes", 17), ("multi_scale_last", False)),
        (256, 192),
        28.5,
        7.1,
        "arXiv:1902.09212 Table 1",
    ),
    PublishedFigure(
        "pose HRNet-W48",
        "hrnet_w48",
        (("head", "pose"), ("num_classes", 17), ("multi_scale_last", False)),
        (256, 192),
        63.6,
        14.6,
        "arXiv:1902.09212 Table 1",
    ),
    PublishedFigure(
        "pose HRNet-W32",
        "hrnet_w32",
        (("head", "pose"), ("num_classes", 17), ("multi_scale_last", False)),
        (384, 288),
        28.5,
        16.0,
        "arXiv:1902.09212 Table 1",
    ),
    PublishedFigure(
        "pose HRNet-W48",
        "hrnet_w48",
        (("head", "pose"), ("num_classes", 17), ("multi_scale_last", False)),
        (384, 288),
        63.6,
        32.9,
        "arXiv:1902.09212 Table 1",
    ),
    PublishedFigure(
        "seg HRNetV2-W48",
        "hrnetv2_w48",
        (("head", "segmentation"), ("num_classes", 19), ("fusion_upsample", "bilinear")),
        (1024, 2048),
        65.9,
        696.0,
        "arXiv:1908.07919 (Cityscapes)",
    ),
    PublishedFigure(
        "ImageNet HRNet-W18-C", "hrnet_w18", (), (224, 224), 21.3, 4.0, "HRNet-Image-Classification"
    ),
    PublishedFigure(
        "ImageNet HRNet-W32-C", "hrnet_w32", (), (224, 224), 41.2, 8.3, "HRNet-Image-Classification"
    ),
    PublishedFigure(
        "ImageNet HRNet-W48-C", "hrnet_w48", (), (224, 224), 77.5, 16.1, "HRNet-Image-Classification"
    ),
)


@dataclass(frozen=True)
class ComplexityCheck:
    name: str
    input_size: str
    params_m: float
    paper_gflops: float
    published_params_m: float
    published_gflops: float
    source: str

    @property
    def matches(self) -> bool:
        """Equal to the published figures at their one-decimal rounding (half a unit in the last digit)."""
        return abs(self.params_m - self.published_params_m) <= 0.05 + 1e-9 and (
            abs(self.paper_gflops - self.published_gflops) <= 0.05 + 1e-9
            or (self.published_gflops >= 100 and abs(self.paper_gflops - self.published_gflops) <= 0.5)
        )


def published_complexity() -> list[ComplexityCheck]:
    """Our params and multiply-adds of each published model at its standard size, beside the published figures."""
    out = []
    for fig in PUBLISHED:
        c = measure(meta_model(fig.model, **dict(fig.kwargs)), fig.input_size)
        out.append(
            ComplexityCheck(
                fig.name,
                f"{fig.input_size[0]}x{fig.input_size[1]}",
                round(c.params_m, 3),
                round(c.paper_gflops, 3),
                fig.params_m,
                fig.gflops,
                fig.source,
            )
        )
    return out
