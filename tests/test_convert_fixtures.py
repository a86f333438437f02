"""Converted tiny reference checkpoints reproduce the official and OpenMMLab outputs through ``local-dir:``.

Each fixture's ``checkpoint.pth`` is converted once (per test worker) into a folder; the tests load that folder
exactly as a user would, with ``timm.create_model("local-dir:...", pretrained=True)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from fixture_data import OFFICIAL, OPENMMLAB, load_tensors

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.convert import convert_checkpoint

ATOL = 1e-5

#: case -> (fixture folder, family the converter must detect)
CASES = {
    "pose": (OFFICIAL / "tiny" / "pose", "pose"),
    "cls": (OFFICIAL / "tiny" / "cls", "cls"),
    "seg": (OFFICIAL / "tiny" / "seg", "seg"),
    "face": (OFFICIAL / "tiny" / "face", "face"),
    "det": (OFFICIAL / "tiny" / "det", "det"),
    "mmpose": (OPENMMLAB / "mmpose_pose", "mmpose"),
    "mmseg": (OPENMMLAB / "mmseg_seg", "mmseg"),
    "mmdet": (OPENMMLAB / "mmdet_det", "mmdet"),
}
PYRAMID = ("det", "mmdet")
ODD = [case for case, (folder, _) in CASES.items() if (folder / "expected_odd.safetensors").exists()]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """``converted(case, **options)`` -> folder of the converted checkpoint (each converted once)."""
    cache: dict[tuple, Path] = {}

    def get(case: str, **options) -> Path:
        key = (case, tuple(sorted(options.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp(case) / "model"
            conversion, _ = convert_checkpoint(
                CASES[case][0] / "checkpoint.pth", folder, complexity=False, **options
            )
            assert conversion.layout.family == CASES[case][1]
            cache[key] = folder
        return cache[key]

    return get


def _load(folder: Path, **kwargs) -> torch.nn.Module:
    return timm.create_model(f"local-dir:{folder}", pretrained=True, **kwargs).eval()


def _close(got: torch.Tensor, want: torch.Tensor) -> None:
    assert got.shape == want.shape
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", [c for c in CASES if c not in PYRAMID])
def test_full_model_reproduces_reference_output(case, converted):
    folder = converted(case)
    fixture = CASES[case][0]
    x = load_tensors(fixture, "input")["input"]
    with torch.no_grad():
        out = _load(folder)(x)
    _close(out, load_tensors(fixture, "expected")["output"])


@pytest.mark.parametrize("case", PYRAMID)
def test_detection_folder_reproduces_reference_pyramid(case, converted):
    folder = converted(case)
    fixture = CASES[case][0]
    expected = load_tensors(fixture, "expected")
    with torch.no_grad():
        levels = _load(folder)(load_tensors(fixture, "input")["input"])
    assert len(levels) == 5
    for i, level in enumerate(levels):
        _close(level, expected[f"p{i}"])


@pytest.mark.parametrize("case", list(CASES))
def test_features_only_on_the_folder_reproduces_reference_branches(case, converted):
    folder = converted(case)
    fixture = CASES[case][0]
    expected = load_tensors(fixture, "expected")
    branches = sorted(int(k.removeprefix("branch")) for k in expected if k.startswith("branch"))
    names = _load(folder).feature_names()  # where the branches are in this variant's feature_info
    model = _load(folder, features_only=True, out_indices=tuple(names.index(f"branch{b}") for b in branches))
    with torch.no_grad():
        feats = model(load_tensors(fixture, "input")["input"])
    assert len(feats) == len(branches)
    for b, feat in zip(branches, feats):
        _close(feat, expected[f"branch{b}"])


@pytest.mark.parametrize("case", ODD)
def test_odd_input_size_reproduces_reference(case, converted):
    fixture = CASES[case][0]
    expected = load_tensors(fixture, "expected_odd")
    x = load_tensors(fixture, "input_odd")["input"]
    assert x.shape[-2] % 32 and x.shape[-1] % 32
    model = _load(converted(case))
    with torch.no_grad():
        _close(model(x), expected["output"])
        indices = [model.feature_names().index(f"branch{b}") for b in range(4)]
        branches = model.forward_intermediates(x, indices=indices, intermediates_only=True)
    for b, feat in enumerate(branches):
        _close(feat, expected[f"branch{b}"])


def test_align_corners_option_reproduces_the_hrnet_ocr_default(converted):
    fixture = CASES["seg"][0]
    expected = load_tensors(fixture, "expected_align_corners_true")
    folder = converted("seg", align_corners=True)
    model = _load(folder)
    assert model.arch.align_corners
    with torch.no_grad():
        _close(model(load_tensors(fixture, "input")["input"]), expected["output"])


def test_align_corners_changes_the_output(converted):
    fixture = CASES["seg"][0]
    x = load_tensors(fixture, "input")["input"]
    with torch.no_grad():
        default = _load(converted("seg"))(x)
    assert (default - load_tensors(fixture, "expected_align_corners_true")["output"]).abs().max() > 1e-2


@pytest.mark.parametrize("case", ["pose", "mmpose"])
def test_pose_folder_refuses_features_of_untrained_lower_branches(case, converted):
    folder = converted(case)
    with pytest.raises(ValueError, match=r"index 2 is out of range.*fuses into branch\(es\) \[0\]"):
        _load(folder, features_only=True, out_indices=(1, 2, 3, 4))


@pytest.mark.parametrize("case", ["pose", "mmpose"])
def test_pose_folder_features_only_defaults_to_stem_and_branch0(case, converted):
    fixture = CASES[case][0]
    model = _load(converted(case), features_only=True)
    assert model.feature_info.reduction() == [2, 4]
    with torch.no_grad():
        stem, branch0 = model(load_tensors(fixture, "input")["input"])
    _close(branch0, load_tensors(fixture, "expected")["branch0"])


@pytest.mark.parametrize("case", PYRAMID)
def test_detection_folder_features_only_defaults_to_the_pyramid(case, converted):
    fixture = CASES[case][0]
    expected = load_tensors(fixture, "expected")
    model = _load(converted(case), features_only=True)
    assert model.feature_info.reduction() == [4, 8, 16, 32, 64]
    with torch.no_grad():
        levels = model(load_tensors(fixture, "input")["input"])
    for i, level in enumerate(levels):
        _close(level, expected[f"p{i}"])
