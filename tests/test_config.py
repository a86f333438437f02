"""Architecture as data: presets, validation and the dict round trip used by config.json."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from hrnet_backbones import HRNetConfig, StageSpec, hrnet_config, tiny_config


@pytest.mark.parametrize("width", [18, 32, 48])
def test_published_layout(width):
    cfg = hrnet_config(width)
    assert cfg.branch_channels == (width, 2 * width, 4 * width, 8 * width)
    assert [s.num_modules for s in cfg.stages] == [1, 4, 3]
    assert all(s.num_blocks == (4,) * s.num_branches for s in cfg.stages)
    assert cfg.stage1 == StageSpec(1, (4,), (64,), "BOTTLENECK")
    assert cfg.width == width


@pytest.mark.parametrize(
    "cfg", [tiny_config(), hrnet_config(48, fusion_upsample="bilinear", align_corners=True)]
)
def test_dict_round_trip_through_json(cfg):
    assert HRNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_any_stage_configuration_builds():
    cfg = HRNetConfig(
        stage2=StageSpec(2, (1, 3), (8, 12), "BOTTLENECK"),
        stage3=StageSpec(1, (1, 1, 2), (5, 7, 9)),
        stage4=StageSpec(1, (1, 1, 1, 1), (6, 10, 14, 18)),
        stage1=StageSpec(1, (2,), (16,), "BASIC"),
        stem_width=24,
    )
    model = timm.create_model("hrnetv2_w32", arch=cfg, features_only=True, out_indices=(0, 1, 2, 3, 4, 5))
    assert model.feature_info.channels() == [24, 6, 48, 10, 14, 18]
    feats = model(torch.randn(1, 3, 37, 53))
    assert [f.shape[1] for f in feats] == model.feature_info.channels()


def test_arch_fields_are_model_keyword_arguments():
    model = timm.create_model(
        "hrnet_w18", fusion_upsample="bilinear", align_corners=True, multi_scale_last=False
    )
    assert model.arch == hrnet_config(
        18, fusion_upsample="bilinear", align_corners=True, multi_scale_last=False
    )
    assert model.stage4[-1].out_branches == (0,)


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        (dict(fusion_upsample="cubic"), "fusion_upsample"),
        (dict(align_corners=True), "align_corners applies to bilinear"),
        (dict(stage3=StageSpec(1, (1, 1), (4, 8))), "stage3 must have 3 branches"),
    ],
)
def test_invalid_configs_are_refused(changes, match):
    with pytest.raises(ValueError, match=match):
        tiny_config(**changes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(num_modules=1, num_blocks=(1,), num_channels=(4, 8)), "same"),
        (dict(num_modules=1, num_blocks=(1,), num_channels=(4,), block="DENSE"), "block type"),
        (dict(num_modules=0, num_blocks=(1,), num_channels=(4,)), "num_modules"),
        (dict(num_modules=1, num_blocks=(1,), num_channels=(4,), fuse_method="CAT"), "fuse_method"),
    ],
)
def test_invalid_stage_specs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StageSpec(**kwargs)


def test_unknown_dict_keys_are_refused():
    with pytest.raises(ValueError, match="unknown HRNet config keys"):
        HRNetConfig.from_dict({**tiny_config().to_dict(), "stage5": {}})
