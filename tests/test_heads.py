"""Pose, landmark and segmentation heads reproduce the official full-model outputs (keys mapped by hand)."""

from __future__ import annotations

import pytest
import timm
import torch
from fixture_data import load_tensors, tiny_dir

from hrnet_backbones import tiny_config
from hrnet_backbones.heads import LandmarkHead, PoseHead
from tests.helpers import fixture_model


def official_model(flavor: str, align_corners: bool = False):
    """The tiny official model with its checkpoint's keys renamed to ours by hand (tests/helpers.py)."""
    if flavor == "seg":
        return fixture_model("seg", arch=tiny_config(fusion_upsample="bilinear", align_corners=align_corners))
    return fixture_model(flavor)


@pytest.mark.parametrize("flavor", ["pose", "face", "seg"])
def test_full_model_reproduces_the_official_output(flavor):
    model = official_model(flavor)
    x = load_tensors(tiny_dir(flavor), "input")["input"]
    with torch.no_grad():
        out = model(x)
    expected = load_tensors(tiny_dir(flavor), "expected")["output"]
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("flavor", ["face", "seg"])
def test_full_model_reproduces_the_official_output_at_72x56(flavor):
    model = official_model(flavor)
    x = load_tensors(tiny_dir(flavor), "input_odd")["input"]
    with torch.no_grad():
        out = model(x)
    torch.testing.assert_close(
        out, load_tensors(tiny_dir(flavor), "expected_odd")["output"], atol=1e-5, rtol=0
    )


def test_segmentation_with_align_corners_true():
    model = official_model("seg", align_corners=True)
    x = load_tensors(tiny_dir("seg"), "input")["input"]
    with torch.no_grad():
        out = model(x)
    expected = load_tensors(tiny_dir("seg"), "expected_align_corners_true")["output"]
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)


def test_head_keys_follow_the_official_structure():
    pose = timm.create_model("hrnet_w32", arch=tiny_config(), head="pose", num_classes=17)
    assert [k for k in pose.state_dict() if k.startswith("head.")] == [
        "head.final_layer.weight",
        "head.final_layer.bias",
    ]
    face = timm.create_model("hrnetv2_w32", arch=tiny_config(), head="landmark", num_classes=98)
    head_keys = [k for k in face.state_dict() if k.startswith("head.")]
    assert {k.split(".")[1] for k in head_keys} == {"0", "1", "3"}
    assert face.state_dict()["head.0.weight"].shape == (60, 60, 1, 1)
    assert face.state_dict()["head.3.weight"].shape == (98, 60, 1, 1)


@pytest.mark.parametrize(
    ("head", "name"), [("pose", "hrnet_w32"), ("landmark", "hrnetv2_w32"), ("segmentation", "hrnetv2p_w32")]
)
def test_dense_heads_give_stride4_maps_at_any_size(head, name):
    model = timm.create_model(name, arch=tiny_config(), head=head, num_classes=5)
    out = model(torch.randn(2, 3, 250, 130))
    assert out.shape == (2, 5, 63, 33)


def test_features_only_still_gives_backbone_features_with_a_head_option():
    model = timm.create_model(
        "hrnet_w32", arch=tiny_config(), head="pose", num_classes=17, features_only=True
    )
    assert model.feature_info.channels() == [64, 4, 8, 16, 32]
    assert model.head is None


def test_pose_head_kernel_3_and_bad_kernel():
    head = PoseHead(32, 17, kernel_size=3)
    assert head(torch.randn(1, 32, 8, 6)).shape == (1, 17, 8, 6)
    with pytest.raises(ValueError, match="kernel_size"):
        PoseHead(32, 17, kernel_size=5)
    with pytest.raises(ValueError, match="kernel_size"):
        LandmarkHead(32, 17, kernel_size=2)
