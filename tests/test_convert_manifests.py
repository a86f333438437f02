"""Full-size checkpoints of every official family and width convert, with the right architecture, strictly.

Each manifest lists the exact keys, shapes and wrapping of a released file. The tensors here are zero-strided
views of a single zero (no memory), which is all that layout detection, inference and a strict load look at; the
strict load goes into the timm model built on the meta device.
"""

from __future__ import annotations

import json

import pytest
import torch
from fixture_data import OFFICIAL

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.config import StageSpec
from hrnet_backbones.convert import convert_state_dict
from hrnet_backbones.convert.load import unwrap_state_dict

MANIFESTS = sorted((OFFICIAL / "manifests").glob("*.json"))
#: manifest flavor -> (family, registered model-name prefix)
FLAVORS = {
    "pose": ("pose", "hrnet"),
    "cls": ("cls", "hrnet"),
    "seg": ("seg", "hrnetv2"),
    "face": ("face", "hrnetv2"),
}
FLAVORS["det"] = ("det", "hrnetv2p")


def _checkpoint(manifest: dict) -> object:
    """An object shaped like the released file: keys, shapes, dtypes and container as the manifest says."""
    dtypes = {"float32": torch.float32, "int64": torch.long}
    sd = {
        k: torch.zeros((), dtype=dtypes[dtype]).expand(shape)
        for k, (shape, dtype) in manifest["keys"].items()
    }
    if manifest["keys_are"].startswith("inner state_dict"):
        return {"meta": {"mmdet_version": "0.6.0"}, "state_dict": sd}
    return sd


def _stage(spec: dict) -> StageSpec:
    return StageSpec(spec["NUM_MODULES"], spec["NUM_BLOCKS"], spec["NUM_CHANNELS"], spec["BLOCK"])


@pytest.fixture(scope="module", params=MANIFESTS, ids=lambda p: p.stem)
def case(request):
    manifest = json.loads(request.param.read_text())
    sd, meta, _ = unwrap_state_dict(_checkpoint(manifest), request.param.name)
    conversion = convert_state_dict(
        sd, meta=meta, source_name=f"{manifest['flavor']}_w{manifest['width']}.pth"
    )
    return manifest, conversion


@pytest.fixture(scope="module")
def timm_model(case):
    """The model ``timm.create_model(architecture, **model_args)`` built for the conversion (meta device)."""
    _, conv = case
    assert (
        type(conv.meta_model).__name__ == "HRNet"
        and conv.meta_model.pretrained_cfg["architecture"] == conv.architecture
    )
    return conv.meta_model


def test_family_and_width_are_inferred(case):
    manifest, conv = case
    family, prefix = FLAVORS[manifest["flavor"]]
    assert conv.layout.family == family
    assert conv.arch.width == manifest["width"]
    assert conv.architecture == f"{prefix}_w{manifest['width']}"


def test_every_stage_is_inferred(case):
    manifest, conv = case
    stages = manifest["architecture"]["stages"]
    for name in ("stage1", "stage2", "stage3", "stage4"):
        assert getattr(conv.arch, name) == _stage(stages[name.upper()])
    assert conv.arch.multi_scale_last == (manifest["flavor"] != "pose")


def test_head_sizes_are_inferred(case):
    manifest, conv = case
    head, args = manifest["architecture"]["head"], conv.model_args
    if manifest["flavor"] in ("pose", "face"):
        assert args["num_classes"] == head["num_joints"]
        assert args["head_kernel_size"] == head["final_conv_kernel"]
    elif manifest["flavor"] == "seg":
        assert args["num_classes"] == head["num_classes"]
    elif manifest["flavor"] == "cls":
        assert list(args["head_channels"]) == head["head_channels"]
        assert (args["head_features"], args["num_classes"]) == (head["final_channels"], head["num_classes"])
    else:
        assert (args["neck_channels"], args["neck_levels"]) == (
            head["neck_out_channels"],
            head["neck_num_outs"],
        )


def test_loads_strictly_with_only_the_reported_keys_left_out(case, timm_model):
    manifest, conv = case
    timm_model.load_state_dict(
        conv.state_dict, strict=True, assign=True
    )  # raises on any missing/unexpected/shape
    dropped = set(conv.dropped)
    assert dropped == {k for k in manifest["keys"] if k.startswith("loss.")}
    assert len(conv.state_dict) == manifest["num_keys"] - len(dropped)
    assert not conv.added


def test_parameter_count_matches_the_official_model(case, timm_model):
    manifest, _ = case
    assert sum(p.numel() for p in timm_model.parameters()) == manifest["num_params_excluding_buffers"]
