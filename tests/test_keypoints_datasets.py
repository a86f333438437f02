"""Dataset layouts: the data agrees with the fixtures and with itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from hrnet_backbones.keypoints import (
    AFLW_19,
    COCO_KEYPOINTS,
    COFW_29,
    LAYOUTS,
    MPII_KEYPOINTS,
    W300_68,
    WFLW_98,
    UnknownLayoutError,
    get_layout,
)

FIXTURES = Path(__file__).parent / "fixtures" / "codecs"


def fixture(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def test_coco_sigmas_flip_pairs_and_joint_weights_match_the_reference_fixtures():
    assert np.array_equal(COCO_KEYPOINTS.sigmas, fixture("metrics")["oks_sigmas"])
    assert np.array_equal(COCO_KEYPOINTS.flip_pairs, fixture("flip")["flip_pairs"])
    assert np.array_equal(np.float32(COCO_KEYPOINTS.joint_weights), fixture("targets_msra")["joints_weight"])


@pytest.mark.parametrize(
    ("layout", "key"), [(WFLW_98, "nme_wflw98"), (W300_68, "nme_300w68"), (COFW_29, "nme_cofw29")]
)
def test_face_layouts_use_the_eye_corners_of_the_reference_nme(layout, key):
    data = fixture("metrics")
    assert layout.norm_indices == tuple(data[f"{key}_eye_idx"].tolist())
    assert layout.num_keypoints == data[f"{key}_gt"].shape[1]


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=lambda lay: lay.name)
def test_flip_indices_are_an_involution(layout):
    perm = np.array(layout.flip_indices)
    assert sorted(perm.tolist()) == list(range(layout.num_keypoints))
    assert (perm[perm] == np.arange(layout.num_keypoints)).all()


@pytest.mark.parametrize("layout", [COCO_KEYPOINTS, MPII_KEYPOINTS], ids=lambda lay: lay.name)
def test_body_flip_pairs_swap_left_and_right_names(layout):
    names = layout.keypoint_names
    for a, b in layout.flip_pairs:
        assert {names[a].split("_", 1)[0], names[b].split("_", 1)[0]} == {"left", "right"}
        assert names[a].split("_", 1)[1] == names[b].split("_", 1)[1]
    unpaired = set(range(layout.num_keypoints)) - {i for pair in layout.flip_pairs for i in pair}
    assert all(not names[i].startswith(("left", "right")) for i in unpaired)


@pytest.mark.parametrize(
    ("layout", "count", "links"), [(COCO_KEYPOINTS, 17, 19), (MPII_KEYPOINTS, 16, 15), (AFLW_19, 19, 0)]
)
def test_layout_sizes(layout, count, links):
    assert layout.num_keypoints == count and len(layout.skeleton) == links


@pytest.mark.parametrize("layout", [MPII_KEYPOINTS, COCO_KEYPOINTS], ids=lambda lay: lay.name)
def test_skeletons_connect_every_keypoint(layout):
    touched = {i for link in layout.skeleton for i in link}
    assert touched == set(range(layout.num_keypoints))


@pytest.mark.parametrize(
    ("name", "layout"),
    [("coco", COCO_KEYPOINTS), ("COCO17", COCO_KEYPOINTS), ("mpii", MPII_KEYPOINTS), ("WFLW-98", WFLW_98)]
    + [("300w", W300_68), ("ibug", W300_68), ("cofw", COFW_29), ("aflw19", AFLW_19)],
)
def test_get_layout_finds_names_and_aliases(name, layout):
    assert get_layout(name) is layout
    assert get_layout(layout) is layout


def test_unknown_layout_raises_a_key_error_listing_the_known_ones():
    with pytest.raises(UnknownLayoutError) as info:
        get_layout("h36m")
    assert isinstance(info.value, KeyError)
    assert "h36m" in str(info.value) and "coco" in str(info.value) and not str(info.value).startswith("'")


def test_layouts_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        COCO_KEYPOINTS.sigmas = ()  # type: ignore[misc]


def test_aflw_is_normalised_by_the_face_box():
    assert AFLW_19.normalization == "box_size" and AFLW_19.norm_indices is None


# HRNet-Facial's MATCHED_PARTS (lib/utils/transforms.py), 1-based as published there; ours are 0-based
_HRNET_FACIAL_MATCHED_PARTS = {
    "cofw": (
        [1, 2],
        [5, 7],
        [3, 4],
        [6, 8],
        [9, 10],
        [11, 12],
        [13, 15],
        [17, 18],
        [14, 16],
        [19, 20],
        [23, 24],
    ),
    "aflw": ([1, 6], [2, 5], [3, 4], [7, 12], [8, 11], [9, 10], [13, 15], [16, 18]),
    "300w": (
        *([i, 18 - i] for i in range(1, 9)),  # jaw line
        *([18 + i, 27 - i] for i in range(5)),  # eyebrows
        [32, 36],
        [33, 35],  # nostrils
        [37, 46],
        [38, 45],
        [39, 44],
        [40, 43],
        [41, 48],
        [42, 47],  # eyes
        [49, 55],
        [50, 54],
        [51, 53],
        [62, 64],
        [61, 65],
        [68, 66],
        [59, 57],
        [60, 56],  # mouth
    ),
}


@pytest.mark.parametrize("layout", sorted(_HRNET_FACIAL_MATCHED_PARTS))
def test_face_flip_pairs_are_hrnet_facials_matched_parts(layout):
    ours = {frozenset(p) for p in get_layout(layout).flip_pairs}
    assert ours == {frozenset((a - 1, b - 1)) for a, b in _HRNET_FACIAL_MATCHED_PARTS[layout]}


def test_mpii_oks_sigmas_are_mmposes():
    # mmpose configs/_base_/datasets/mpii.py (COCO's sigmas carried over to MPII's joints)
    mmpose = [
        0.089,
        0.083,
        0.107,
        0.107,
        0.083,
        0.089,
        0.026,
        0.026,
        0.026,
        0.026,
        0.062,
        0.072,
        0.179,
        0.179,
    ]
    mmpose += [0.072, 0.062]
    assert list(get_layout("mpii").sigmas) == mmpose
