"""The keypoint MSE loss against the official JointsMSELoss values."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from hrnet_backbones.keypoints import COCO_KEYPOINTS, KeypointMSELoss

FIXTURES = Path(__file__).parent / "fixtures" / "codecs"


@cache
def load() -> dict[str, torch.Tensor]:
    with np.load(FIXTURES / "loss.npz", allow_pickle=False) as data:
        return {key: torch.from_numpy(data[key]) for key in data.files}


@pytest.mark.parametrize(
    ("kwargs", "weight", "expected"),
    [
        ({}, "target_weight", "loss_with_target_weight"),
        ({"use_target_weight": False}, None, "loss_without_target_weight"),
        ({"joint_weights": COCO_KEYPOINTS.joint_weights}, "target_weight", "loss_with_joints_weight"),
    ],
)
def test_loss_matches_official_joints_mse_loss(kwargs, weight, expected):
    ref = load()
    loss = KeypointMSELoss(**kwargs)(ref["pred"], ref["target"], None if weight is None else ref[weight])
    assert loss.item() == pytest.approx(ref[expected].item(), rel=1e-6)


def test_joint_weights_equal_baking_them_into_the_target_weight():
    ref = load()
    baked = KeypointMSELoss()(ref["pred"], ref["target"], ref["target_weight_joints_weight"])
    separate = KeypointMSELoss(joint_weights=COCO_KEYPOINTS.joint_weights)(
        ref["pred"], ref["target"], ref["target_weight"]
    )
    assert separate.item() == pytest.approx(baked.item(), rel=1e-6)


def test_target_weight_may_be_n_by_k_or_n_by_k_by_one():
    ref = load()
    loss = KeypointMSELoss()
    a = loss(ref["pred"], ref["target"], ref["target_weight"])
    b = loss(ref["pred"], ref["target"], ref["target_weight"][..., 0])
    assert a.item() == b.item()


def test_loss_gradient_is_the_weighted_difference():
    ref = load()
    pred = ref["pred"].clone().requires_grad_(True)
    KeypointMSELoss()(pred, ref["target"], ref["target_weight"]).backward()
    w2 = ref["target_weight"][..., None] ** 2
    expected = (ref["pred"] - ref["target"]) * w2 / ref["pred"].numel()
    np.testing.assert_allclose(pred.grad.numpy(), expected.numpy(), rtol=1e-5, atol=1e-12)


def test_loss_rejects_mismatched_shapes_and_a_missing_weight():
    ref = load()
    loss = KeypointMSELoss()
    with pytest.raises(ValueError, match="same|both"):
        loss(ref["pred"], ref["target"][:, :16], ref["target_weight"])
    with pytest.raises(ValueError, match="needs target_weight"):
        loss(ref["pred"], ref["target"])
    with pytest.raises(ValueError, match="entries for K"):
        KeypointMSELoss(joint_weights=[1.0] * 16)(ref["pred"], ref["target"], ref["target_weight"])
