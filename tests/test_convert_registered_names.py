"""The converter names a checkpoint after the registered model of its trunk (HRNetV2-W18-Small-v1 / v2 included)."""

from __future__ import annotations

import pytest
import timm
import torch

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.convert import convert_state_dict


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
