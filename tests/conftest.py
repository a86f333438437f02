from __future__ import annotations

import os

import pytest
import torch

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.fast import cpu_bf16_forced_off

# Under pytest-xdist each worker is a process with torch's default of one intra-op thread per core, so `-n 2` on two
# cores runs four busy OpenMP threads that spin-wait on each other; small models then cost many times the CPU.
# Give each worker its share of the cores instead.
if os.environ.get("PYTEST_XDIST_WORKER"):
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // _workers))

# HRNET_BACKBONES_CPU_BF16=0 runs the suite as on a CPU without AVX512BW/VL/DQ: this package then never calls
# oneDNN's bfloat16 kernels (see hrnet_backbones.fast.ONEDNN_BF16), and ATen's own oneDNN convolutions are turned
# off here so that bfloat16 (autocast) convolutions take ATen's portable kernels, as they do on such a CPU.
if cpu_bf16_forced_off():
    torch.backends.mkldnn.enabled = False


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
