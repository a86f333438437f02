"""The converter names a checkpoint after the registered model of its trunk (HRNetV2-W18-Small-v1 / v2 included)."""

from __future__ import annotations

import dataclasses

import pytest
import timm
import torch

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.convert import LayoutError, convert_state_dict


def _official_segmentation(name: str, **kwargs) -> dict[str, torch.Tensor]:
    """A state dict in the official segmentation release's layout (``model.`` trunk, ``model.last_layer``) of the
    architecture of ``name``, built on the meta device (shapes only)."""
    model = timm.create_model(name, head="segmentation", num_classes=19, device="meta", **kwargs)
    return {
        (f"model.last_layer.{k.removeprefix('head.')}" if k.startswith("head.") else f"model.{k}"): v
        for k, v in model.state_dict().items()
    }


@pytest.mark.parametrize("trunk", ["w18_small", "w18_small_v2", "w48"])
def test_segmentation_checkpoint_of_a_registered_trunk_gets_its_name(trunk):
    conv = convert_state_dict(_official_segmentation(f"hrnetv2_{trunk}"))
    assert conv.layout.family == "seg"
    assert conv.architecture == f"hrnetv2_{trunk}"
    assert not any("not a registered" in note for note in conv.notes)


def test_classification_checkpoint_of_the_small_trunk_gets_its_name():
    model = timm.create_model("hrnet_w18_small_v2", device="meta")
    conv = convert_state_dict(model.state_dict())
    assert conv.layout.family == "cls" and conv.architecture == "hrnet_w18_small_v2"


def test_an_unregistered_trunk_takes_the_nearest_width_and_says_so():
    sd = _official_segmentation("hrnetv2_w18", arch=hrnet_backbones.hrnet_config(20))
    conv = convert_state_dict(sd)
    assert conv.architecture == "hrnetv2_w18"
    assert any("W20 trunk is not a registered one" in note for note in conv.notes)


# ------------------------------------------------------------- a trunk a module short of a registered one
def _short_w48() -> hrnet_backbones.HRNetConfig:
    """HRNet-W48 with the last module of stage 4 gone (what a checkpoint that lost it converts as)."""
    w48 = hrnet_backbones.hrnet_config(48)
    return w48.replace(stage4=dataclasses.replace(w48.stage4, num_modules=2))


def test_a_trunk_a_module_short_of_a_registered_one_converts_with_a_warning_naming_it():
    conv = convert_state_dict(_official_segmentation("hrnetv2_w48", arch=_short_w48()))
    assert conv.arch.stage4.num_modules == 2
    assert conv.notes[0] == (
        "warning: stage 4 has 2 modules where HRNet-W48 has 3: a module may be missing from the checkpoint; "
        "converted as this layout, which model_args['arch'] rebuilds exactly"
    )


def test_a_file_named_like_a_release_but_a_module_short_is_refused():
    sd = _official_segmentation("hrnetv2_w48", arch=_short_w48())
    with pytest.raises(LayoutError, match=r"hrnet_cs_8090_torch11\.pth is named like a released HRNet-W48 "):
        convert_state_dict(sd, source_name="hrnet_cs_8090_torch11.pth")


def test_a_layout_stated_with_arch_converts_without_a_warning():
    sd = _official_segmentation("hrnetv2_w48", arch=_short_w48())
    conv = convert_state_dict(sd, arch=_short_w48().to_dict(), source_name="hrnet_cs_8090_torch11.pth")
    assert conv.arch.stage4.num_modules == 2
    assert not any(note.startswith("warning") for note in conv.notes)


def test_a_layout_far_from_every_registered_trunk_gets_no_warning():
    conv = convert_state_dict(_official_segmentation("hrnetv2_w18", arch=hrnet_backbones.tiny_config()))
    assert not any(note.startswith("warning") for note in conv.notes)


def test_module_counts_in_the_files_own_config_must_match_its_tensors():
    sd = _official_segmentation("hrnetv2_w18", arch=hrnet_backbones.tiny_config())
    cfg = "backbone=dict(type='HRNet', extra=dict(stage4=dict(num_branches=4, num_modules=3, block='BASIC')))"
    with pytest.raises(
        LayoutError, match=r"meta\['cfg'\] gives stage 4 3 module\(s\) but its tensors hold 2"
    ):
        convert_state_dict(sd, meta={"cfg": cfg})
