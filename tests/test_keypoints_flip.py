"""Flip test and flip augmentation against the official flip_back / SHIFT_HEATMAP / fliplr_joints."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from hrnet_backbones.keypoints import (
    COCO_KEYPOINTS,
    aligned_flip_shift,
    flip_back,
    flip_permutation,
    flip_test,
    fliplr_joints,
)
from hrnet_backbones.keypoints.codecs import MSRAHeatmap

FIXTURES = Path(__file__).parent / "fixtures" / "codecs"


@cache
def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.mark.parametrize(("shift", "key"), [(False, "flip_back"), (True, "flip_back_shifted")])
def test_flip_back_matches_official(shift, key):
    ref = load("flip")
    np.testing.assert_array_equal(flip_back(ref["heatmaps"], ref["flip_pairs"], shift=shift), ref[key])


def test_flip_back_accepts_pairs_as_lists_and_tensors_alike():
    ref = load("flip")
    hm = torch.from_numpy(ref["heatmaps"])
    from_list = flip_back(hm, [tuple(p) for p in ref["flip_pairs"].tolist()])
    from_tensor = flip_back(hm, torch.from_numpy(ref["flip_pairs"]))
    assert torch.equal(from_list, from_tensor)
    np.testing.assert_array_equal(from_list.numpy(), ref["flip_back_shifted"])


def test_flip_back_without_shift_undoes_itself():
    hm = torch.from_numpy(load("flip")["heatmaps"])
    pairs = COCO_KEYPOINTS.flip_pairs
    assert torch.equal(flip_back(flip_back(hm, pairs, shift=False), pairs, shift=False), hm)


def test_flip_test_fusion_reproduces_the_official_average():
    ref = load("flip")
    hm = torch.from_numpy(ref["heatmaps"])
    # The fixture fuses the maps with their own flip_back, so the "model" answers both halves with them.
    fused = flip_test(lambda batch: torch.cat((hm, hm)), hm, ref["flip_pairs"])
    np.testing.assert_array_equal(fused.numpy(), ref["fused_with_itself"])


def test_flip_test_runs_the_mirrored_images_through_the_model():
    images = torch.rand(3, 17, 16, 12)
    seen = []

    def model(batch):
        seen.append(batch.clone())
        return [batch * 0.0, batch * 2.0 + 1.0]  # several stages: the last counts

    fused = flip_test(model, images, COCO_KEYPOINTS.flip_pairs)
    assert torch.equal(seen[0], torch.cat((images, images.flip(-1))))
    expected = (images * 2 + 1 + flip_back(images.flip(-1) * 2 + 1, COCO_KEYPOINTS.flip_pairs)) * 0.5
    assert torch.equal(fused, expected)


def test_fliplr_joints_matches_official_including_zeroed_invisible_joints():
    ref = load("flip")
    joints, vis = fliplr_joints(ref["joints"], ref["joints_vis"], int(ref["image_width"]), ref["flip_pairs"])
    np.testing.assert_array_equal(joints, ref["fliplr_joints"])
    np.testing.assert_array_equal(vis, ref["fliplr_joints_vis"])
    assert (ref["joints_vis"][:, 0] == 0).any()  # the case the multiplication matters for


def test_fliplr_joints_is_batched_and_leaves_its_input_alone():
    ref = load("flip")
    joints = np.stack([ref["joints"], ref["joints"] + 5])
    vis = np.stack([ref["joints_vis"], ref["joints_vis"]])
    before = joints.copy()
    out, _ = fliplr_joints(joints, vis, 640, ref["flip_pairs"])
    single, _ = fliplr_joints(joints[1], vis[1], 640, ref["flip_pairs"])
    np.testing.assert_array_equal(out[1], single)
    np.testing.assert_array_equal(joints, before)


@pytest.mark.parametrize(
    ("pairs", "message"),
    [([(1, 2), (2, 3)], "repeats"), ([(1, 17)], "out of range"), ([(1, 2, 3)], "pairs")],
)
def test_flip_pairs_are_validated(pairs, message):
    with pytest.raises(ValueError, match=message):
        flip_permutation(pairs, 17)


def test_fractional_shift_interpolates_between_no_shift_and_the_official_pixel():
    hm = torch.rand(2, 17, 8, 6)
    pairs = COCO_KEYPOINTS.flip_pairs
    torch.testing.assert_close(flip_back(hm, pairs, shift=1.0), flip_back(hm, pairs, shift=True))
    torch.testing.assert_close(flip_back(hm, pairs, shift=0.0), flip_back(hm, pairs, shift=False))
    half = (flip_back(hm, pairs, shift=True) + flip_back(hm, pairs, shift=False)) / 2
    torch.testing.assert_close(flip_back(hm, pairs, shift=0.5), half)
    with pytest.raises(ValueError, match=r"fraction of a pixel in \[0, 1\]"):
        flip_back(hm, pairs, shift=1.5)


def test_aligned_flip_shift_is_the_misalignment_of_the_flipped_grid():
    assert aligned_flip_shift(192, 48) == 0.75  # stride 4
    assert aligned_flip_shift(96, 48) == 0.5  # stride 2
    assert aligned_flip_shift(64, 64) == 0.0
    with pytest.raises(ValueError, match="positive"):
        aligned_flip_shift(0, 48)


def _flip_average_bias(shift) -> float:
    """Mean x error of the decoded flip-test average when the model is perfect: the mirrored crop's heatmap is the
    DARK target of the mirrored keypoint (input x -> W - 1 - x)."""
    w, h = 96, 128
    codec = MSRAHeatmap(input_size=(w, h), heatmap_size=(w // 4, h // 4), sigma=2.0, unbiased=True)
    rng = np.random.default_rng(0)
    xy = torch.from_numpy(rng.uniform([16, 16], [w - 17, h - 17], size=(200, 1, 2)).astype(np.float32))
    mirrored = xy.clone()
    mirrored[..., 0] = w - 1 - xy[..., 0]
    plain, _ = codec.encode(xy)
    flipped, _ = codec.encode(mirrored)
    fused = (plain + flip_back(flipped, [], shift=shift)) / 2
    decoded, _ = codec.decode(fused, refine="dark")
    return float((decoded[..., 0] - xy[..., 0]).mean())


def test_exact_alignment_removes_the_official_shift_bias():
    """The official one-pixel shift over-corrects by 0.25 heatmap px: the average lands ~0.5 input px right (stride
    4); the exact 0.75 px shift leaves no bias."""
    assert _flip_average_bias(True) > 0.35
    assert abs(_flip_average_bias(aligned_flip_shift(96, 24))) < 0.05
