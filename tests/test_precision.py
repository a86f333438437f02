"""Mixed precision: fp16 and bf16 autocast forward and backward stay finite and close to fp32.

Inputs look like ImageNet-normalised photographs (smooth colour regions plus a little noise, in [0, 1] before
normalisation); weights are the official tiny fixtures. CPU autocast is slow in fp16, so the maps are small.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from tests.helpers import fixture_model

FAMILIES = ("pose", "seg", "det")  # V1 + pose head, V2 + segmentation head, V2p pyramid
#: largest difference to fp32, relative to the largest fp32 output (measured: fp16 ~2e-3, bf16 ~1.3e-2)
TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2}


def natural_images(n: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """(n, 3, H, W) smooth random pictures, normalised with the ImageNet mean and std."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, max(1, size[0] // 8), max(1, size[1] // 8), generator=gen)
    img = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    img = (img + 0.05 * torch.randn(n, 3, *size, generator=gen)).clamp(0, 1)
    mean = torch.tensor(IMAGENET_DEFAULT_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_DEFAULT_STD).view(1, 3, 1, 1)
    return (img - mean) / std


def _flat(out) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else torch.cat([o.flatten() for o in out])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_autocast_inference_stays_close_to_fp32(family, dtype):
    model = fixture_model(family)
    x = natural_images(2, (64, 48))
    with torch.no_grad():
        ref = _flat(model(x))
        with torch.autocast("cpu", dtype=dtype):
            out = _flat(model(x))
    assert out.dtype == dtype
    assert torch.isfinite(out).all()
    assert (out.float() - ref).abs().max() <= TOLERANCE[dtype] * ref.abs().max()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("family", FAMILIES)
def test_autocast_training_step_is_finite(family, dtype):
    model = fixture_model(family).train()
    x = natural_images(2, (64, 48), seed=1)
    with torch.autocast("cpu", dtype=dtype):
        out = model(x)
    outs = out if isinstance(out, (list, tuple)) else [out]  # det: the five pyramid levels
    loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(torch.isfinite(v).all() for k, v in model.state_dict().items() if "running" in k)
