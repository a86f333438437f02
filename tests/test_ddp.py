"""DistributedDataParallel: two gloo processes train without ``find_unused_parameters`` and stay identical.

One pair of processes trains every case in turn (starting processes is the slow part, and a pytest fixture would
start them once per xdist worker). Without ``find_unused_parameters`` DDP fails in the second step as soon as one
parameter got no gradient, so two steps per case catch any layer a feature set leaves unused.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path

import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from hrnet_backbones import tiny_config
from tests.helpers import fixture_input, fixture_model, free_port

WORLD = 2
STEPS = 2
NUM_KEYPOINTS = 5
INPUT = (64, 48)

#: case -> (model name, create_model kwargs); features_only cases get a small head on every feature they return
CASES = {
    "pose": ("hrnet_w32", dict(arch=tiny_config(), head="pose", num_classes=NUM_KEYPOINTS)),
    "pose_single_scale_last": (
        "hrnet_w32",
        dict(arch=tiny_config(multi_scale_last=False), head="pose", num_classes=NUM_KEYPOINTS),
    ),
    "v1_features": ("hrnet_w32", dict(arch=tiny_config(), features_only=True)),
    "v2_features": ("hrnetv2_w32", dict(arch=tiny_config(), features_only=True)),
    "v2p_features": ("hrnetv2p_w32", dict(arch=tiny_config(), features_only=True, neck_channels=8)),
    "v1_branches_1_2": ("hrnet_w32", dict(arch=tiny_config(), features_only=True, out_indices=(1, 2))),
    "v2p_levels_0_1": (
        "hrnetv2p_w32",
        dict(arch=tiny_config(), features_only=True, out_indices=(2, 4), neck_channels=8),
    ),
    "landmark_v2": ("hrnetv2_w32", dict(arch=tiny_config(), head="landmark", num_classes=NUM_KEYPOINTS)),
    "pose_on_v2p": ("hrnetv2p_w32", dict(arch=tiny_config(), head="pose", num_classes=NUM_KEYPOINTS)),
}


class FeatureHeatmaps(nn.Module):
    """Features-only model + a 1x1 conv per feature, all brought to the stride-4 size and summed: heatmaps."""

    def __init__(self, features: nn.Module):
        super().__init__()
        self.features = features
        self.heads = nn.ModuleList(nn.Conv2d(c, NUM_KEYPOINTS, 1) for c in features.feature_info.channels())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = (-(-x.shape[-2] // 4), -(-x.shape[-1] // 4))
        maps = [
            F.interpolate(head(f), size=size, mode="bilinear")
            for head, f in zip(self.heads, self.features(x))
        ]
        return torch.stack(maps).sum(0)


def build(case: str) -> nn.Module:
    name, kwargs = CASES[case]
    model = timm.create_model(name, **kwargs)
    return FeatureHeatmaps(model) if kwargs.get("features_only") else model


def heatmap_targets(
    batch: int, size: tuple[int, int], gen: torch.Generator, sigma: float = 2.0
) -> torch.Tensor:
    """(batch, K, H, W) Gaussian heatmaps around random keypoints (pixel centres at integer coordinates)."""
    h, w = size
    centres = torch.rand(batch, NUM_KEYPOINTS, 2, generator=gen) * torch.tensor([w - 1.0, h - 1.0])
    ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
    d2 = (xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2
    return torch.exp(-d2 / (2 * sigma**2))


def _train_case(case: str, rank: int) -> dict:
    torch.manual_seed(0)  # DDP broadcasts rank 0's weights anyway; the same seed makes that a no-op
    model = build(case)
    ddp = DistributedDataParallel(model)  # find_unused_parameters=False: the default, and the point
    opt = torch.optim.Adam(ddp.parameters(), lr=1e-3)  # step size independent of the random init's scale
    gen = torch.Generator().manual_seed(1000 + rank)  # each replica sees different data
    start = [p.detach().clone() for p in model.parameters()]
    no_grad = []
    for step in range(STEPS):
        x = torch.randn(2, 3, *INPUT, generator=gen)
        out = ddp(x)
        loss = F.mse_loss(out, heatmap_targets(2, tuple(out.shape[-2:]), gen))
        opt.zero_grad()
        loss.backward()
        if step == 0:
            no_grad = [n for n, p in model.named_parameters() if p.grad is None]
        opt.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    replicas = [torch.empty_like(flat) for _ in range(WORLD)]
    dist.all_gather(replicas, flat)
    moved = sum(not torch.equal(a, p) for a, p in zip(start, model.parameters()))
    return dict(
        identical=all(torch.equal(replicas[0], r) for r in replicas[1:]),
        no_grad=no_grad,
        moved=moved,
        num_params=len(start),
        finite=bool(torch.isfinite(flat).all()),
    )


def _worker(rank: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        results = {}
        for case in CASES:
            try:
                results[case] = _train_case(case, rank)
            except Exception:  # recorded per case, so one failure does not hide the others
                results[case] = dict(error=traceback.format_exc())
                dist.barrier()
        if rank == 0:
            torch.save(results, Path(out_dir) / "results.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ddp_trains_every_default_feature_set_without_find_unused_parameters(tmp_path):
    """Pose models (multi- and single-scale last fusion), V1/V2/V2p features with a head on each, feature subsets,
    V2 landmark and a pose head on V2p: no parameter without a gradient, replicas identical after training."""
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = torch.load(tmp_path / "results.pt", weights_only=False)
    failures = {}
    for case, r in results.items():
        if "error" in r:
            failures[case] = r["error"]
        elif r["no_grad"]:
            failures[case] = f"parameters without a gradient: {r['no_grad']}"
        elif not r["identical"]:
            failures[case] = "the replicas' parameters differ after training"
        elif not (r["finite"] and r["moved"] == r["num_params"]):
            failures[case] = f"{r['moved']} of {r['num_params']} parameters moved; finite: {r['finite']}"
    assert set(results) == set(CASES)
    assert not failures, "\n".join(f"{case}: {why}" for case, why in failures.items())


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_parameter_gets_a_gradient(case):
    model = build(case)
    model(torch.randn(2, 3, *INPUT)).square().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []


def test_a_dense_head_on_v1_keeps_only_the_fusion_into_branch_0():
    model = build("pose")
    assert model.final_out_branches == (0,)
    assert not any(
        k.startswith(("stage4.1.fuse_layers.1.", "stage4.1.fuse_layers.3.")) for k in model.state_dict()
    )


def test_sync_batch_norm_conversion_keeps_keys_and_outputs():
    model = fixture_model("pose")
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(fixture_model("pose")).eval()
    assert not any(type(m) is nn.BatchNorm2d for m in synced.modules())
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in synced.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in model.modules()
    )
    assert list(synced.state_dict()) == list(model.state_dict())
    x = fixture_input("pose")
    with torch.no_grad():
        torch.testing.assert_close(synced(x), model(x), rtol=0, atol=0)


def test_sync_batch_norm_model_trains_outside_a_process_group():
    synced = nn.SyncBatchNorm.convert_sync_batchnorm(build("pose")).train()
    out = synced(torch.randn(2, 3, *INPUT))
    out.square().mean().backward()
    assert all(p.grad is not None for p in synced.parameters())
