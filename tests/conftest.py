from __future__ import annotations

import pytest
import torch

import hrnet_backbones  # noqa: F401  (registers the models)


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Non-trivial weights and BatchNorm statistics, so eval-mode outputs depend on every parameter and buffer."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point():
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) * 1.5 + 0.5)
            elif name.endswith(("running_mean", "bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif t.dim() == 1:  # BN weight
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                fan_in = t[0].numel()
                t.copy_(torch.randn(t.shape, generator=g) * (0.7 / fan_in**0.5))
    return model


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    yield
