"""The official code's own outputs (tests/fixtures/official/tiny) reproduced from their checkpoints' backbone keys."""

from __future__ import annotations

import pytest
import timm
import torch
from fixture_data import load_config, load_tensors, tiny_dir

from hrnet_backbones import HRNetConfig, StageSpec
from tests.helpers import timm_state_dict

STAGE_KEYS = ("num_modules", "num_blocks", "num_channels", "block", "fuse_method")
# the parts around the trunk, in our key layout (tests.helpers.timm_state_dict renames the official heads)
HEAD_PREFIXES = ("incre_modules.", "downsamp_modules.", "final_layer.", "classifier.", "head.", "neck.")


def arch_from_fixture(config: dict, **changes) -> HRNetConfig:
    stages = {name: StageSpec(**{k: spec[k] for k in STAGE_KEYS}) for name, spec in config["stages"].items()}
    multi_scale_last = config["stages"]["stage4"].get("multi_scale_output_last_module", True)
    fusion = "bilinear" if "bilinear" in config["fusion_upsample"] else "nearest"
    return HRNetConfig(**stages, fusion_upsample=fusion, multi_scale_last=multi_scale_last).replace(**changes)


def backbone_state_dict(flavor: str) -> dict[str, torch.Tensor]:
    return {k: v for k, v in timm_state_dict(flavor).items() if not k.startswith(HEAD_PREFIXES)}


def branch_model(flavor: str, **changes):
    """A V1 features_only model with the fixture's architecture and its backbone weights, loaded strictly."""
    model = timm.create_model(
        "hrnet_w32", features_only=True, arch=arch_from_fixture(load_config(tiny_dir(flavor)), **changes)
    )
    model.load_state_dict(backbone_state_dict(flavor), strict=True)
    return model.eval()


@pytest.mark.parametrize("flavor", ["cls", "det", "pose", "seg", "face"])
def test_branches_reproduce_the_official_outputs(flavor):
    model = branch_model(flavor)
    x = load_tensors(tiny_dir(flavor), "input")["input"]
    expected = load_tensors(tiny_dir(flavor), "expected")
    with torch.no_grad():
        feats = model(x)[1:]  # [stem, branch0, ...]
    names = sorted(k for k in expected if k.startswith("branch"))
    assert len(feats) == len(names) == (1 if flavor == "pose" else 4)
    for name, got in zip(names, feats, strict=True):
        torch.testing.assert_close(got, expected[name], atol=1e-5, rtol=0, msg=f"{flavor} {name}")


@pytest.mark.parametrize("flavor", ["seg", "face"])
def test_bilinear_fusion_reproduces_the_odd_input_72x56(flavor):
    model = branch_model(flavor)
    x = load_tensors(tiny_dir(flavor), "input_odd")["input"]
    expected = load_tensors(tiny_dir(flavor), "expected_odd")
    with torch.no_grad():
        feats = model(x)[1:]
    for b, got in enumerate(feats):
        torch.testing.assert_close(got, expected[f"branch{b}"], atol=1e-5, rtol=0)


def test_align_corners_true_reproduces_the_hrnet_ocr_default():
    model = branch_model("seg", align_corners=True)
    x = load_tensors(tiny_dir("seg"), "input")["input"]
    expected = load_tensors(tiny_dir("seg"), "expected_align_corners_true")
    with torch.no_grad():
        feats = model(x)[1:]
    for b, got in enumerate(feats):
        torch.testing.assert_close(got, expected[f"branch{b}"], atol=1e-5, rtol=0)


def test_nearest_fusion_runs_where_the_official_code_fails():
    """72x56 gives branches 18x14, 9x7, 5x4, 3x2; the official pose/cls/det code raises a size mismatch there."""
    model = branch_model("det")
    x = load_tensors(tiny_dir("det"), "input_odd")["input"]
    with torch.no_grad():
        feats = model(x)
    assert [tuple(f.shape[-2:]) for f in feats] == [(36, 28), (18, 14), (9, 7), (5, 4), (3, 2)]


def test_nearest_fusion_upsample_is_aligned_crop_of_the_exact_one():
    """On an odd input the top-left part of each upsampled map equals what a larger, /32 input gives there."""
    from hrnet_backbones.trunk import upsample_to

    low = torch.arange(20.0).reshape(1, 1, 4, 5)
    up = upsample_to(low, (7, 9), 2, "nearest")
    assert up.shape[-2:] == (7, 9)
    exact = torch.nn.functional.interpolate(low, scale_factor=2.0, mode="nearest")
    assert torch.equal(up, exact[..., :7, :9])
