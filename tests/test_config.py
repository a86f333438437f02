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


def _with(path: str, value):
    """tiny_config's dict with the field at ``path`` (``stage2.num_blocks``) set to ``value``."""
    d = tiny_config().to_dict()
    *parents, last = path.split(".")
    target = d
    for p in parents:
        target = target[p]
    target[last] = value
    return d


@pytest.mark.parametrize(
    "path, value, message",
    [
        ("stage2", "BASIC", r"field stage2 must be a dict .*got str 'BASIC'"),
        ("stage3", None, r"field stage3 must be a dict"),
        (
            "stage2.num_blocks",
            "22",
            r"field stage2.num_blocks must be a list of positive integers.*got str '22'",
        ),
        (
            "stage4.num_channels",
            [4, 8, "16", 32],
            r"field stage4.num_channels\[2\] must be a positive integer",
        ),
        ("stage3.num_channels", [4, 8, 16.5], r"field stage3.num_channels\[2\] must be a positive integer"),
        ("stage2.num_modules", True, r"field stage2.num_modules must be a positive integer, got bool True"),
        ("stage2.num_modules", 0, r"field stage2.num_modules must be a positive integer, got int 0"),
        ("stage2.block", 1, r"field stage2.block must be a string"),
        ("stem_width", "64", r"field stem_width must be a positive integer"),
        ("align_corners", "false", r"field align_corners must be true or false, got str 'false'"),
        ("multi_scale_last", 1, r"field multi_scale_last must be true or false"),
        ("fusion_upsample", ["nearest"], r"field fusion_upsample must be one of"),
    ],
)
def test_from_dict_names_a_wrongly_typed_field(path, value, message):
    with pytest.raises(ValueError, match=message):
        HRNetConfig.from_dict(_with(path, value))


def test_from_dict_names_missing_stages_and_refuses_a_non_dict():
    d = tiny_config().to_dict()
    del d["stage3"]
    with pytest.raises(ValueError, match="lacks stage3; stage2 to stage4 are required"):
        HRNetConfig.from_dict(d)
    with pytest.raises(ValueError, match="must be a dict of its fields, got list"):
        HRNetConfig.from_dict([1, 2])
    del d["stage2"]["num_channels"]
    with pytest.raises(ValueError, match="field stage2 lacks num_channels"):
        HRNetConfig.from_dict({**d, "stage3": d["stage2"]})
