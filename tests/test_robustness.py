"""Robustness: bad inputs fail early with a message that says what to do; odd inputs give correct results;
checkpoints of another width, task or layout are refused by name instead of loading half-way."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models import adapt_input_conv

from hrnet_backbones import StageSpec, tiny_config
from tests.fixture_data import tiny_dir
from tests.helpers import expected_feature_size, fixture_expected, fixture_input, timm_state_dict

NAMES = ("hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32")
CLS_HEAD = dict(head_channels=(3, 6, 12, 24), head_features=80)


def _all_features(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        indices = timm.create_model(name, arch=tiny_config(), head="none").available_feature_indices()
    return timm.create_model(name, arch=tiny_config(), features_only=True, out_indices=indices, **kwargs)


# ------------------------------------------------------------------------------------------------ inputs
def test_a_single_image_without_batch_dimension_is_refused_with_the_fix():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), head="none")
    with pytest.raises(ValueError, match=r"got a 3-D tensor of shape \(3, 64, 64\); add a batch dimension"):
        model(torch.randn(3, 64, 64))


def test_a_5d_input_is_refused_with_the_expected_layout():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\), got a 5-D tensor.*reshape it"):
        model(torch.randn(1, 2, 3, 32, 32))


def test_wrong_channel_count_names_both_counts_and_in_chans():
    model = timm.create_model("hrnetv2_w32", arch=tiny_config(), head="segmentation", num_classes=3)
    with pytest.raises(ValueError, match=r"built for 3 input channels but got 1 .*in_chans=1"):
        model(torch.randn(2, 1, 64, 64))


def test_channels_last_images_are_recognised():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), head="pose", num_classes=3)
    with pytest.raises(ValueError, match=r"channels-last \(N, H, W, C\): pass x.permute\(0, 3, 1, 2\)"):
        model(torch.randn(2, 64, 48, 3))


def test_integer_images_are_refused_before_the_first_conv():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True)
    with pytest.raises(TypeError, match=r"floating-point images, got torch.uint8"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))


@pytest.mark.parametrize("size", [(0, 64), (64, 0)])
def test_an_image_without_pixels_is_refused_by_name(size):
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True)
    with pytest.raises(ValueError, match=r"image with no pixels .* height and width must be >= 1"):
        model(torch.zeros(1, 3, *size))


def test_float64_images_are_refused_with_the_conversion():
    model = timm.create_model("hrnetv2_w32", arch=tiny_config(), head="pose", num_classes=3)
    with pytest.raises(
        TypeError, match=r"weights are torch.float32 but the images are torch.float64.*\.float\(\)"
    ):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.float64))
    assert model.double()(torch.zeros(1, 3, 64, 64, dtype=torch.float64)).dtype == torch.float64


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [(1, 1), (1, 17), (31, 2), (5, 3)])
def test_inputs_smaller_than_the_total_stride_give_every_feature(name, size):
    model = _all_features(name).eval()
    with torch.no_grad():
        feats = model(torch.randn(2, 3, *size))
    expected = [
        expected_feature_size(m, r, size)
        for m, r in zip(model.feature_info.module_name(), model.feature_info.reduction())
    ]
    assert [tuple(f.shape[-2:]) for f in feats] == expected
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize("head, name", [("pose", "hrnet_w32"), ("segmentation", "hrnetv2_w32")])
def test_dense_heads_on_tiny_inputs_give_stride_4_maps(head, name):
    model = timm.create_model(name, arch=tiny_config(), head=head, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 7, 2)).shape == (1, 3, 2, 1)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", NAMES)
def test_an_empty_batch_gives_empty_features_and_leaves_the_statistics_alone(name, mode):
    model = _all_features(name)
    getattr(model, mode)()
    stats = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    feats = model(torch.randn(0, 3, 64, 48))
    assert [tuple(f.shape) for f in feats] == [
        (0, c, *expected_feature_size(m, r, (64, 48)))
        for m, c, r in zip(
            model.feature_info.module_name(), model.feature_info.channels(), model.feature_info.reduction()
        )
    ]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in stats.items())
    if mode == "train":
        sum(f.sum() for f in feats).backward()


def test_an_empty_batch_through_the_classifier():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), **CLS_HEAD).train()
    assert model(torch.randn(0, 3, 64, 64)).shape == (0, 1000)


# --------------------------------------------------------------------------------------------- checkpoints
def _saved(tmp_path: Path, family: str, transform=None) -> str:
    sd = timm_state_dict(family)
    if transform is not None:
        sd = transform(sd)
    path = tmp_path / f"{family}.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def _pretrained(name: str, file: str, **kwargs) -> torch.nn.Module:
    return timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=file), **kwargs)


@pytest.mark.parametrize("in_chans", [1, 4])
def test_pretrained_first_conv_is_adapted_to_other_channel_counts_as_timm_does(tmp_path, in_chans):
    sd = timm_state_dict("cls")
    model = _pretrained(
        "hrnet_w32", _saved(tmp_path, "cls"), arch=tiny_config(), in_chans=in_chans, **CLS_HEAD
    )
    torch.testing.assert_close(model.conv1.weight, adapt_input_conv(in_chans, sd["conv1.weight"]))
    assert torch.equal(model.stage4[1].branches[3][1].conv2.weight, sd["stage4.1.branches.3.1.conv2.weight"])
    assert model(torch.randn(1, in_chans, 64, 64)).shape == (1, 1000)


def test_pretrained_features_only_model_with_one_channel_loads_the_trunk(tmp_path):
    sd = timm_state_dict("det")
    model = _pretrained(
        "hrnetv2p_w32",
        _saved(tmp_path, "det"),
        arch=tiny_config(),
        features_only=True,
        in_chans=1,
        neck_channels=16,
    )
    assert model.conv1.weight.shape == (64, 1, 3, 3)
    assert torch.equal(model.neck.fpn_conv[4].weight, sd["neck.fpn_conv.4.weight"])


def test_a_checkpoint_of_another_width_is_refused_naming_both_widths(tmp_path):
    with pytest.raises(ValueError, match=r"checkpoint is an HRNet-W4 but the model is HRNet-W18"):
        _pretrained("hrnet_w18", _saved(tmp_path, "cls"))


def test_a_checkpoint_of_a_registered_trunk_is_named_after_it():
    from hrnet_backbones.complexity import meta_model
    from hrnet_backbones.loading import fit_checkpoint

    small = meta_model("hrnet_w18_small", head="none").state_dict()  # W18-Small-v1: branch 0 has 16 channels
    message = r"is an HRNet-W18-Small but .* create the model as 'hrnet_w18_small'"
    with pytest.raises(ValueError, match=message):
        fit_checkpoint(small, meta_model("hrnet_w18", head="none"))


@pytest.mark.parametrize(
    "family, kind",
    [
        ("pose", "a pose checkpoint"),
        ("seg", "a landmark/segmentation checkpoint"),
        ("det", "a detection checkpoint"),
    ],
)
def test_a_task_checkpoint_is_refused_by_a_classification_model(tmp_path, family, kind):
    arch = tiny_config(multi_scale_last=family != "pose")
    with pytest.raises(ValueError, match=rf"checkpoint is {kind} but the model has a classification head"):
        _pretrained("hrnet_w32", _saved(tmp_path, family), arch=arch, **CLS_HEAD)


def test_a_pose_checkpoint_is_refused_by_a_landmark_model(tmp_path):
    with pytest.raises(ValueError, match=r"a pose checkpoint but the model has a landmark head"):
        _pretrained(
            "hrnetv2_w32", _saved(tmp_path, "pose"), arch=tiny_config(), head="landmark", num_classes=3
        )


def test_a_single_scale_pose_trunk_is_refused_where_all_branches_are_needed(tmp_path):
    with pytest.raises(
        ValueError, match=r"fuses into branch\(es\) \[0\] only .* uses branch\(es\) \[1, 2, 3\]"
    ):
        _pretrained("hrnetv2p_w32", _saved(tmp_path, "pose"), arch=tiny_config(), features_only=True)


@pytest.mark.parametrize("family", ["pose", "seg", "det"])
def test_an_unconverted_official_file_is_sent_to_the_converter(family):
    name, kwargs = {
        "pose": ("hrnet_w32", dict(head="pose", num_classes=17, arch=tiny_config(multi_scale_last=False))),
        "seg": ("hrnetv2_w32", dict(head="segmentation", num_classes=19, arch=tiny_config())),
        "det": ("hrnetv2p_w32", dict(features_only=True, neck_channels=16, arch=tiny_config())),
    }[family]
    with pytest.raises(ValueError, match=r"not in this package's key layout; convert it first"):
        _pretrained(name, str(tiny_dir(family) / "checkpoint.pth"), **kwargs)


@pytest.mark.parametrize("head", ["pose", "landmark"])
def test_imagenet_weights_start_any_task_and_the_head_stays_new(tmp_path, head):
    sd = timm_state_dict("cls")
    model = _pretrained("hrnetv2_w32", _saved(tmp_path, "cls"), arch=tiny_config(), head=head, num_classes=3)
    assert torch.equal(model.transition3[3][0][0].weight, sd["transition3.3.0.0.weight"])
    assert model.get_classifier().weight.shape[0] == 3


def test_a_trunk_only_checkpoint_loads_into_a_head_model(tmp_path):
    trunk = _saved(tmp_path, "det", lambda sd: {k: v for k, v in sd.items() if not k.startswith("neck.")})
    model = _pretrained("hrnet_w32", trunk, arch=tiny_config(), head="pose", num_classes=3)
    assert torch.equal(model.conv1.weight, timm_state_dict("det")["conv1.weight"])


def test_an_output_layer_of_another_size_is_new_and_the_rest_is_loaded(tmp_path):
    sd = timm_state_dict("face")
    model = _pretrained(
        "hrnetv2_w32",
        _saved(tmp_path, "face"),
        arch=tiny_config(fusion_upsample="bilinear"),
        head="landmark",
        num_classes=5,
    )
    assert model.head[3].weight.shape == (5, 60, 1, 1)
    assert torch.equal(model.head[0].weight, sd["head.0.weight"])


def test_a_dataparallel_module_prefix_is_unwrapped(tmp_path):
    path = _saved(tmp_path, "cls", lambda sd: {f"module.{k}": v for k, v in sd.items()})
    model = _pretrained("hrnet_w32", path, arch=tiny_config(), **CLS_HEAD)
    assert torch.equal(model.conv1.weight, timm_state_dict("cls")["conv1.weight"])


def test_a_trunk_with_missing_weights_is_refused(tmp_path):
    path = _saved(tmp_path, "cls", lambda sd: {k: v for k, v in sd.items() if not k.startswith("stage3.1.")})
    with pytest.raises(ValueError, match=r"lacks \d+ trunk weight\(s\) of this model, e.g. \['stage3.1."):
        _pretrained("hrnet_w32", path, arch=tiny_config(), head="none")


def test_a_checkpoint_of_a_deeper_trunk_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"key\(s\) this model does not know, e.g. \['stage3.1."):
        _pretrained(
            "hrnet_w32",
            _saved(tmp_path, "cls"),
            arch=tiny_config(stage3=StageSpec(1, (2, 2, 2), (4, 8, 16))),
            head="none",
        )


def test_the_loaded_pose_model_reproduces_the_official_output(tmp_path):
    model = _pretrained(
        "hrnet_w32",
        _saved(tmp_path, "pose"),
        arch=tiny_config(multi_scale_last=False),
        head="pose",
        num_classes=17,
    ).eval()
    with torch.no_grad():
        out = model(fixture_input("pose"))
    torch.testing.assert_close(out, fixture_expected("pose")["output"], rtol=0, atol=1e-5)
