"""Layout detection, key mapping and architecture inference, on the tiny fixtures and on variants of them."""

from __future__ import annotations

import functools
import json

import pytest
import timm
import torch
from fixture_data import OFFICIAL, OPENMMLAB, load_tensors

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.config import HRNetConfig, StageSpec, hrnet_config, tiny_config
from hrnet_backbones.convert import (
    LayoutError,
    convert_checkpoint,
    convert_state_dict,
    match_layout,
    parse_arch,
)
from hrnet_backbones.convert.load import read_checkpoint, unwrap_state_dict

FIXTURES = {
    "pose": OFFICIAL / "tiny" / "pose",
    "cls": OFFICIAL / "tiny" / "cls",
    "seg": OFFICIAL / "tiny" / "seg",
    "face": OFFICIAL / "tiny" / "face",
    "det": OFFICIAL / "tiny" / "det",
    "mmpose": OPENMMLAB / "mmpose_pose",
    "mmseg": OPENMMLAB / "mmseg_seg",
    "mmdet": OPENMMLAB / "mmdet_det",
}


def _sd(name: str) -> dict[str, torch.Tensor]:
    return read_checkpoint(FIXTURES[name] / "checkpoint.pth").state_dict


@functools.cache
def _reference(name: str):
    """The conversion of the unmodified fixture (shared by the tests that compare against it)."""
    return convert_state_dict(_sd(name))


def _same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("family", list(FIXTURES))
def test_each_layout_is_detected_from_its_keys(family):
    assert match_layout(_sd(family).keys()).layout.family == family


def test_mmpose_0x_keypoint_head_maps_like_1x():
    sd = _sd("mmpose")
    old = {k.replace("head.", "keypoint_head.", 1) if k.startswith("head.") else k: v for k, v in sd.items()}
    assert any(k.startswith("keypoint_head.final_layer.") for k in old)
    assert _same_tensors(convert_state_dict(old).state_dict, _reference("mmpose").state_dict)


def test_dataparallel_module_prefix_is_removed():
    sd = _sd("face")  # HR18-300W.pth was saved from the DataParallel wrapper
    wrapped, _, container = unwrap_state_dict({f"module.{k}": v for k, v in sd.items()})
    assert container == ["module. prefix"]
    assert _same_tensors(convert_state_dict(wrapped).state_dict, _reference("face").state_dict)


def test_training_checkpoint_containers_are_unwrapped():
    sd = _sd("pose")
    obj = {
        "epoch": 140,
        "model": "pose_hrnet",
        "state_dict": {f"module.{k}": v for k, v in sd.items()},
        "perf": 0.7,
    }
    found, _, container = unwrap_state_dict(obj)
    assert container == ["state_dict", "module. prefix"]
    assert _same_tensors(found, sd)


def test_segmentation_file_without_num_batches_tracked_gets_them_filled():
    sd = _sd("seg")
    old = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # a *_torch04.pth file
    conv, ref = convert_state_dict(old), _reference("seg")
    assert sorted(conv.added) == sorted(k for k in ref.state_dict if k.endswith("num_batches_tracked"))
    assert conv.state_dict.keys() == ref.state_dict.keys()
    assert all(
        torch.equal(conv.state_dict[k], ref.state_dict[k]) for k in ref.state_dict if k not in conv.added
    )


def test_segmentation_file_without_loss_weights_drops_nothing():
    sd = {k: v for k, v in _sd("seg").items() if not k.startswith("loss.")}  # LIP, PASCAL-Context, ...
    conv = convert_state_dict(sd)
    assert conv.layout.family == "seg" and conv.dropped == {}


@pytest.mark.parametrize("family", ["det", "mmdet"])
def test_detector_heads_are_dropped_and_reported(family):
    sd = _sd(family)
    full = {
        **sd,
        "rpn_head.rpn_cls.weight": torch.zeros(3, 16, 1, 1),
        "roi_head.bbox_head.fc_cls.weight": torch.zeros(81, 8),
    }
    conv = convert_state_dict(full)
    assert set(conv.dropped) == {"rpn_head.rpn_cls.weight", "roi_head.bbox_head.fc_cls.weight"}
    assert all("detector's heads" in reason for reason in conv.dropped.values())
    assert _same_tensors(conv.state_dict, _reference(family).state_dict)


def test_mmseg_head_conv_without_bias_gets_a_zero_bias():
    conv = convert_state_dict(_sd("mmseg"))
    assert conv.added == ["head.0.bias"]
    assert not conv.state_dict["head.0.bias"].any()
    assert conv.arch.fusion_upsample == "bilinear_scale"


def test_mmseg_channels_different_from_the_concatenation_become_hidden_channels():
    sd = _sd("mmseg")
    hidden = 7
    sd["decode_head.convs.0.conv.weight"] = sd["decode_head.convs.0.conv.weight"][:hidden]
    for name in ("weight", "bias", "running_mean", "running_var"):
        sd[f"decode_head.convs.0.bn.{name}"] = sd[f"decode_head.convs.0.bn.{name}"][:hidden]
    sd["decode_head.conv_seg.weight"] = sd["decode_head.conv_seg.weight"][:, :hidden]
    assert convert_state_dict(sd).model_args["head_hidden_channels"] == hidden


def test_trunk_without_head_converts_as_a_backbone():
    sd = {k: v for k, v in _sd("mmpose").items() if k.startswith("backbone.")}
    conv = convert_state_dict(sd)
    assert conv.layout.family == "backbone" and conv.model_args["head"] == "none"
    assert conv.architecture == "hrnet_w18" and not conv.arch.multi_scale_last


def test_family_backbone_keeps_the_trunk_of_a_segmentation_file(tmp_path):
    conv, folder = convert_checkpoint(
        FIXTURES["seg"] / "checkpoint.pth", tmp_path / "trunk", family="backbone", complexity=False
    )
    assert conv.model_args["head"] == "none" and conv.arch.fusion_upsample == "bilinear"
    assert {k.split(".")[0] for k in conv.dropped} == {"model", "loss"}
    model = timm.create_model(f"local-dir:{folder}", pretrained=True, features_only=True).eval()
    expected = load_tensors(FIXTURES["seg"], "expected")
    with torch.no_grad():
        branches = model(load_tensors(FIXTURES["seg"], "input")["input"])[1:]
    for b, feat in enumerate(branches):
        torch.testing.assert_close(feat, expected[f"branch{b}"], atol=1e-5, rtol=0)


def _small(**changes) -> HRNetConfig:
    """A small HRNet unlike the published ones (W18-small-v1 style: 1 module per stage, short layer1)."""
    cfg = HRNetConfig(
        stage1=StageSpec(1, (1,), (8,), "BOTTLENECK"),
        stage2=StageSpec(1, (2, 2), (3, 6), "BASIC"),
        stage3=StageSpec(1, (2, 2, 2), (3, 6, 12), "BASIC"),
        stage4=StageSpec(1, (2, 2, 2, 2), (3, 6, 12, 24), "BASIC"),
    )
    return cfg.replace(**changes)


@pytest.mark.parametrize(
    "arch",
    [
        _small(),
        _small(stem_width=16, stage2=StageSpec(2, (1, 3), (2, 4), "BOTTLENECK")),
        _small(stage4=StageSpec(3, (1, 2, 1, 2), (5, 10, 20, 40), "BASIC")),
    ],
    ids=["w18-small-like", "bottleneck-stage2", "uneven-blocks"],
)
def test_whole_architecture_is_read_from_the_tensors(arch):
    model = timm.create_model(
        "hrnet_w18", arch=arch, head_channels=(2, 3, 4, 5), head_features=24, num_classes=7, in_chans=1
    )
    conv = convert_state_dict(model.state_dict())
    assert conv.layout.family == "cls"
    assert conv.arch == arch
    args = conv.model_args
    assert (args["head_channels"], args["head_features"], args["num_classes"], args["in_chans"]) == (
        (2, 3, 4, 5),
        24,
        7,
        1,
    )
    assert conv.pretrained_cfg["input_size"][0] == 1


def test_arch_that_agrees_with_the_tensors_is_accepted():
    assert convert_state_dict(_sd("pose"), arch="tiny").arch.stage4 == tiny_config().stage4


def test_arch_json_may_set_the_fusion_mode():
    arch = json.dumps(tiny_config(fusion_upsample="bilinear", align_corners=True).to_dict())
    conv = convert_state_dict(_sd("cls"), arch=arch)
    assert (conv.arch.fusion_upsample, conv.arch.align_corners) == ("bilinear", True)


def test_arch_json_that_contradicts_the_tensors_is_an_error():
    arch = tiny_config(stem_width=32).to_dict()
    with pytest.raises(LayoutError, match="stem_width is 32 in --arch but 64 in the tensors"):
        convert_state_dict(_sd("cls"), arch=arch)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hrnet_w48", hrnet_config(48)),
        ("hrnetv2p_w18", hrnet_config(18)),
        ("w32", hrnet_config(32)),
        ("tiny", tiny_config()),
    ],
)
def test_arch_names(text, expected):
    config, stated = parse_arch(text)
    assert config == expected and "fusion_upsample" not in stated


def test_arch_from_a_json_file(tmp_path):
    (tmp_path / "arch.json").write_text(json.dumps(tiny_config().to_dict()))
    assert parse_arch(str(tmp_path / "arch.json"))[0] == tiny_config()


def test_fusion_override_applies():
    conv = convert_state_dict(_sd("det"), fusion_upsample="bilinear", align_corners=True)
    assert (conv.arch.fusion_upsample, conv.arch.align_corners) == ("bilinear", True)


def test_two_keys_for_one_weight_are_an_error():
    sd = _sd("mmpose")
    sd["keypoint_head.final_layer.weight"] = sd["head.final_layer.weight"]
    with pytest.raises(LayoutError, match="both map to 'head.final_layer.weight'"):
        convert_state_dict(sd)
