"""Metrics against pycocotools, the official HRNet accuracy, mmpose keypoint_eval and HRNet-Facial."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from hrnet_backbones.keypoints import (
    auc_nme,
    coco_keypoint_stats,
    failure_rate,
    keypoint_auc,
    keypoint_epe,
    keypoint_pck_accuracy,
    nme,
    oks,
    oks_matrix,
    pck_accuracy,
)

FIXTURES = Path(__file__).parent / "fixtures" / "codecs"
FACE = [("wflw", "nme_wflw98"), ("300w", "nme_300w68"), ("cofw", "nme_cofw29")]
MMPOSE_REL = 1e-6  # mmpose stores the distances in float32


@cache
def load() -> dict[str, np.ndarray]:
    with np.load(FIXTURES / "metrics.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


# ---------------------------------------------------------------------------------------------------------
# OKS and COCO AP
# ---------------------------------------------------------------------------------------------------------


def test_oks_matrix_matches_pycocotools_compute_oks():
    m = load()
    sim = oks_matrix(m["oks_dt_keypoints"], m["oks_gt_keypoints"], m["oks_gt_area"], m["oks_sigmas"])
    np.testing.assert_allclose(sim, m["oks_matrix_dt_by_gt"], rtol=0, atol=1e-12)


def test_oks_matrix_defaults_to_the_coco_sigmas_and_takes_tensors():
    m = load()
    sim = oks_matrix(
        *(torch.from_numpy(m[k]) for k in ("oks_dt_keypoints", "oks_gt_keypoints", "oks_gt_area"))
    )
    assert isinstance(sim, torch.Tensor)
    np.testing.assert_allclose(sim.numpy(), m["oks_matrix_dt_by_gt"], rtol=0, atol=1e-12)


def test_oks_of_each_detection_against_its_own_ground_truth_is_the_matrix_entry():
    m = load()
    gt_of_dt = np.tile(np.arange(3), 3)  # detections are gt + noise, three noise levels in turn
    gt = m["oks_gt_keypoints"][gt_of_dt]
    values = oks(m["oks_dt_keypoints"][..., :2], gt[..., :2], gt[..., 2], m["oks_gt_area"][gt_of_dt])
    np.testing.assert_allclose(values, m["oks_matrix_dt_by_gt"][np.arange(9), gt_of_dt], atol=1e-12)


def test_ground_truth_without_labels_is_scored_against_its_grown_box():
    m = load()
    gt = m["oks_gt_keypoints"][:1].copy()
    gt[..., 2] = 0
    box = m["oks_gt_bbox"][:1]
    dt = m["oks_dt_keypoints"][:2]
    sim = oks_matrix(dt, gt, m["oks_gt_area"][:1], gt_bboxes=box)
    x0, y0, w, h = box[0]
    dx = np.maximum(0, (x0 - w) - dt[..., 0]) + np.maximum(0, dt[..., 0] - (x0 + 2 * w))
    dy = np.maximum(0, (y0 - h) - dt[..., 1]) + np.maximum(0, dt[..., 1] - (y0 + 2 * h))
    e = (dx**2 + dy**2) / (2 * m["oks_sigmas"]) ** 2 / (m["oks_gt_area"][0] + np.spacing(1)) / 2
    np.testing.assert_allclose(sim[:, 0], np.exp(-e).mean(-1), atol=1e-12)
    with pytest.raises(ValueError, match="gt_bboxes"):
        oks_matrix(dt, gt, m["oks_gt_area"][:1])


def test_coco_keypoint_stats_match_pycocotools_summarize():
    m = load()
    stats = coco_keypoint_stats(
        m["oks_dt_keypoints"],
        m["oks_dt_scores"],
        m["oks_gt_keypoints"],
        m["oks_gt_area"],
        gt_bboxes=m["oks_gt_bbox"],
    )
    np.testing.assert_allclose(list(stats.values()), m["oks_coco_stats_pycocotools"], rtol=0, atol=1e-12)
    assert list(stats) == ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]


def test_coco_keypoint_stats_are_perfect_for_perfect_detections_in_separate_images():
    m = load()
    gt = m["oks_gt_keypoints"]
    stats = coco_keypoint_stats(
        gt, np.ones(3), gt, m["oks_gt_area"], dt_image_ids=[5, 6, 7], gt_image_ids=[5, 6, 7]
    )
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------------
# PCK, AUC, EPE
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("thr", "key"), [(0.5, "0p5"), (0.2, "0p2")])
def test_official_pck_reproduces_hrnet_accuracy_including_the_ignored_threshold(thr, key):
    m = load()
    acc, avg, cnt, pred = pck_accuracy(m["pck_output_heatmaps"], m["pck_target_heatmaps"], thr)
    np.testing.assert_allclose(acc, m[f"pck_acc_thr{key}"], rtol=0, atol=1e-12)
    assert avg == pytest.approx(float(m[f"pck_avg_acc_thr{key}"]), abs=1e-12)
    assert cnt == int(m[f"pck_cnt_thr{key}"])
    np.testing.assert_array_equal(pred, m["pck_pred_coords"])


def test_pck_without_the_quirks_honours_the_threshold():
    m = load()
    strict = pck_accuracy(m["pck_output_heatmaps"], m["pck_target_heatmaps"], 0.2, official_quirks=False)[1]
    loose = pck_accuracy(m["pck_output_heatmaps"], m["pck_target_heatmaps"], 0.5, official_quirks=False)[1]
    assert strict < loose


def test_official_pck_skips_target_joints_on_the_first_two_rows_or_columns():
    target = np.zeros((1, 2, 16, 16), np.float32)
    target[0, 0, 1, 8] = 1.0  # y = 1: not counted by the official rule
    target[0, 1, 8, 8] = 1.0
    acc, _, cnt, _ = pck_accuracy(target, target)
    assert acc[1] == -1 and acc[2] == 1 and cnt == 1
    assert pck_accuracy(target, target, official_quirks=False)[2] == 2


@pytest.mark.parametrize(("thr", "key"), [(0.05, "0p05"), (0.1, "0p1"), (0.2, "0p2")])
def test_coordinate_pck_matches_mmpose(thr, key):
    m = load()
    acc, avg, cnt = keypoint_pck_accuracy(
        m["coord_pred"], m["coord_gt"], m["coord_mask"], thr, m["coord_norm_factor"]
    )
    np.testing.assert_allclose(acc, m[f"mmpose_pck_acc_thr{key}"], rtol=0, atol=1e-7)
    assert avg == pytest.approx(float(m[f"mmpose_pck_avg_thr{key}"]), abs=1e-7)
    assert cnt == int(m[f"mmpose_pck_cnt_thr{key}"])


def test_auc_matches_mmpose():
    m = load()
    auc = keypoint_auc(m["coord_pred"], m["coord_gt"], m["coord_mask"], 30, num_thrs=20)
    assert auc == pytest.approx(float(m["mmpose_auc_norm30_thrs20"]), abs=1e-7)


def test_epe_matches_mmpose():
    m = load()
    assert keypoint_epe(m["coord_pred"], m["coord_gt"], m["coord_mask"]) == pytest.approx(
        float(m["mmpose_epe"]), rel=1e-6
    )


def test_masked_keypoints_and_zero_norms_do_not_count():
    gt = np.zeros((2, 3, 2))
    pred = gt + [[[1.0, 0.0]]]
    mask = np.array([[True, False, True], [True, True, True]])
    norm = np.array([[10.0, 10.0], [0.0, 10.0]])  # the second instance has a zero norm
    acc, _, cnt = keypoint_pck_accuracy(pred, gt, mask, 0.2, norm)
    np.testing.assert_array_equal(acc, [1.0, -1.0, 1.0])
    assert cnt == 2


# ---------------------------------------------------------------------------------------------------------
# Facial landmarks
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("layout", "key"), FACE)
def test_nme_matches_mmpose_with_interocular_normalisation(layout, key):
    m = load()
    assert nme(m[f"{key}_pred"], m[f"{key}_gt"], layout=layout) == pytest.approx(
        float(m[f"{key}_mmpose"]), rel=MMPOSE_REL
    )


@pytest.mark.parametrize(("layout", "key"), FACE)
def test_nme_with_a_partial_mask_matches_mmpose(layout, key):
    m = load()
    value = nme(m[f"{key}_pred"], m[f"{key}_gt"], m[f"{key}_mask_partial"], layout=layout)
    assert value == pytest.approx(float(m[f"{key}_mmpose_masked"]), rel=MMPOSE_REL)


@pytest.mark.parametrize(("layout", "key"), FACE)
def test_per_sample_nme_matches_hrnet_facial_compute_nme(layout, key):
    m = load()
    per = nme(m[f"{key}_pred"], m[f"{key}_gt"], layout=layout, reduction="none")
    np.testing.assert_allclose(per, m[f"{key}_hrnet_facial_per_sample"], rtol=1e-12)


def test_aflw_nme_is_normalised_by_the_given_box_size():
    m = load()
    args = (m["nme_aflw19_pred"], m["nme_aflw19_gt"])
    box = m["nme_aflw19_box_size"]
    assert nme(*args, layout="aflw", norm_factor=box) == pytest.approx(
        float(m["nme_aflw19_mmpose"]), rel=MMPOSE_REL
    )
    per = nme(*args, layout="aflw", norm_factor=box, reduction="none")
    np.testing.assert_allclose(per, m["nme_aflw19_hrnet_facial_per_sample"], rtol=1e-12)
    with pytest.raises(ValueError, match="face box size"):
        nme(*args, layout="aflw")


def test_nme_rejects_a_layout_with_another_landmark_count():
    m = load()
    with pytest.raises(ValueError, match="has 68 landmarks"):
        nme(m["nme_wflw98_pred"], m["nme_wflw98_gt"], layout="300w")


def test_failure_rate_counts_samples_strictly_above_the_threshold():
    errors = np.array([0.02, 0.08, 0.081, 0.2, np.nan])
    assert failure_rate(errors, 0.08) == pytest.approx(2 / 4)
    assert failure_rate(errors, 0.10) == pytest.approx(1 / 4)


def test_auc_nme_is_the_area_under_the_cumulative_error_curve():
    rng = np.random.default_rng(0)
    errors = rng.gamma(2.0, 0.02, size=200)
    grid = np.linspace(0, 0.1, 100_001)
    ced = (errors[None, :] <= grid[:, None]).mean(1)
    numeric = float(((ced[1:] + ced[:-1]) / 2 * np.diff(grid)).sum() / 0.1)
    assert auc_nme(errors, 0.1) == pytest.approx(numeric, abs=1e-4)
    assert auc_nme(np.zeros(3), 0.1) == 1.0 and auc_nme(np.full(3, 0.5), 0.1) == 0.0
