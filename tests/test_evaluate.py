"""Evaluation: batched prediction over a data set, COCO AP / AR (rescoring, OKS NMS, pycocotools agreement),
PCKh, landmark NME, and the ``evaluate`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import Subset

from hrnet_backbones import tiny_config
from hrnet_backbones.cli import main
from hrnet_backbones.evaluate import (
    evaluate_coco,
    evaluate_landmarks,
    evaluate_pckh,
    merge_predictions,
    oks_nms,
    predict_dataset,
)
from hrnet_backbones.keypoints import COCO_KEYPOINTS, W300_68, MSRAHeatmap, UDPHeatmap, fliplr_joints
from hrnet_backbones.keypoints.data import CocoKeypointDataset, LandmarkCsvDataset, TopDownTransform
from tests.coco_fixture import coco_dict, write_coco
from tests.test_keypoints_data import face_transform, write_landmark_csv

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def eval_transform(size=(64, 48), codec: str = "dark") -> TopDownTransform:
    h, w = size
    if codec == "udp":
        c = UDPHeatmap((w, h), (w // 4, h // 4), sigma=2.0)
    else:
        c = MSRAHeatmap((w, h), (w // 4, h // 4), sigma=2.0, unbiased=codec == "dark")
    return TopDownTransform(size, c, mean=MEAN, std=STD, flip_pairs=COCO_KEYPOINTS.flip_pairs, train=False)


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path)


def perfect_predictions(ds: CocoKeypointDataset) -> list[dict]:
    out = []
    for i, inst in enumerate(ds.instances):
        kp = inst.keypoints.copy()
        kp[:, 2] = (kp[:, 2] > 0).astype(float)
        out.append(
            {
                "image_id": inst.image_id,
                "category_id": 1,
                "keypoints": kp.reshape(-1).tolist(),
                "score": 1.0,
                "index": i,
            }
        )
    return out


class Oracle(nn.Module):
    """Returns the data set's own target heatmaps, in loader order: a model that is exactly right. With
    ``mirrored`` (the targets of the mirrored crops, see :func:`mirrored_targets`) it expects flip-test batches
    (N crops, then their N mirror images) and answers the mirror images with those."""

    def __init__(self, targets: list[torch.Tensor], mirrored: list[torch.Tensor] | None = None) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))
        self.queue = list(targets)
        self.mirror_queue = None if mirrored is None else list(mirrored)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(x) // 2 if self.mirror_queue is not None else len(x)
        out, self.queue = torch.stack(self.queue[:n]), self.queue[n:]
        if self.mirror_queue is not None:
            mirrored, self.mirror_queue = torch.stack(self.mirror_queue[:n]), self.mirror_queue[n:]
            out = torch.cat((out, mirrored))
        return out


def mirrored_targets(ds) -> list[torch.Tensor]:
    """What an exact model answers for each crop's mirror image: the codec's targets of the crop's keypoints
    mirrored in input pixels (``x -> W - 1 - x``), left and right swapped."""
    codec = ds.transform.codec
    out = []
    for i in range(len(ds)):
        visible = (ds[i]["weights"].reshape(-1) > 0).float()
        kp, vis = fliplr_joints(
            ds[i]["keypoints"][:, :2], visible, codec.input_size[0], COCO_KEYPOINTS.flip_pairs
        )
        heatmaps, _ = codec.encode(kp[None], vis[None])
        out.append(heatmaps[0])
    return out


# ------------------------------------------------------------------------------------------------ COCO AP
def test_perfect_predictions_give_ap_1(coco):
    ds = CocoKeypointDataset(*coco, eval_transform())
    stats, results = evaluate_coco(perfect_predictions(ds), ds)
    assert stats["AP"] == pytest.approx(1.0) and stats["AR"] == pytest.approx(1.0)
    assert len(results) == 3 and set(results[0]) == {"image_id", "category_id", "keypoints", "score"}


def test_pycocotools_reads_the_predictions_and_gives_the_same_numbers(coco, tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = CocoKeypointDataset(*coco, eval_transform())
    rng = np.random.default_rng(0)
    preds = perfect_predictions(ds)
    for p in preds:  # noisy keypoints and scores, plus a false positive, so AP is neither 0 nor 1
        kp = np.asarray(p["keypoints"]).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 2.5, (17, 2))
        kp[:, 2] = rng.uniform(0.1, 1.0, 17)
        p["keypoints"] = kp.reshape(-1).tolist()
    preds.append({**preds[0], "keypoints": (np.asarray(preds[0]["keypoints"]) + 9).tolist(), "score": 0.5})
    stats, results = evaluate_coco(preds, ds)
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(results))
    gt = COCO(str(coco[0]))
    evaluator = COCOeval(gt, gt.loadRes(str(res_file)), "keypoints")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    assert 0.05 < stats["AP"] < 0.95
    np.testing.assert_allclose(list(stats.values()), evaluator.stats, atol=1e-9)


def test_rescoring_multiplies_the_box_score_by_the_mean_confident_keypoint_score(coco):
    ds = CocoKeypointDataset(*coco, eval_transform())
    pred = perfect_predictions(ds)[:1]
    kp = np.asarray(pred[0]["keypoints"]).reshape(-1, 3)
    kp[:, 2] = 0.1
    kp[:4, 2] = (0.5, 0.7, 0.9, 0.3)
    pred[0].update(keypoints=kp.reshape(-1).tolist(), score=0.8)
    _, results = evaluate_coco(pred, ds)
    assert results[0]["score"] == pytest.approx(0.8 * np.mean([0.5, 0.7, 0.9, 0.3]))
    _, raw = evaluate_coco(pred, ds, rescore=False)
    assert raw[0]["score"] == 0.8


def test_oks_nms_drops_a_near_duplicate_and_keeps_a_distinct_person():
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, (17, 2))
    kps = np.stack([a, a + 0.5, a + 60.0])
    keep = oks_nms(
        kps, np.array([0.7, 0.9, 0.8]), np.full(3, 100.0 * 100.0), np.asarray(COCO_KEYPOINTS.sigmas)
    )
    assert keep == [1, 2]


def test_detections_are_deduplicated_by_oks_nms(coco, tmp_path):
    det_file = tmp_path / "dets.json"
    boxes = [[10.5, 8.0, 30.0, 60.0], [11.0, 8.0, 30.0, 60.0], [70, 0, 25, 49], [20.0, 15.0, 44.0, 55.0]]
    image_ids = [1, 1, 2, 3]
    det_file.write_text(
        json.dumps(
            [{"image_id": i, "category_id": 1, "bbox": b, "score": 0.9} for i, b in zip(image_ids, boxes)]
        )
    )
    gt = CocoKeypointDataset(*coco, eval_transform())
    ds = CocoKeypointDataset(*coco, eval_transform(), detections=det_file)
    truth = {inst.image_id: inst for inst in gt.instances}
    preds = []
    for i, inst in enumerate(ds.instances):  # both detections of image 1 find the same person
        kp = truth[inst.image_id].keypoints.copy()
        kp[:, 2] = 1.0
        preds.append(
            {
                "image_id": inst.image_id,
                "category_id": 1,
                "keypoints": kp.reshape(-1).tolist(),
                "score": inst.score,
                "index": i,
            }
        )
    stats, results = evaluate_coco(preds, ds)
    assert len(results) == 3 and stats["AP"] == pytest.approx(1.0)
    _, kept = evaluate_coco(preds, ds, nms=False)
    assert len(kept) == 4


# ------------------------------------------------------------------------------------------------ predicting
@pytest.mark.parametrize(
    ("codec", "flip", "align"),
    [
        ("dark", False, "official"),
        ("udp", False, "official"),
        ("udp", True, "official"),
        ("dark", True, "exact"),
    ],
)
def test_predict_dataset_decodes_an_exact_model_back_to_the_annotated_keypoints(coco, codec, flip, align):
    """(DARK with the official one-pixel flip shift is off by half an input pixel by design: see
    tests/test_keypoints_flip.py.)"""
    ds = CocoKeypointDataset(*coco, eval_transform(size=(128, 96), codec=codec))  # 24x32 maps
    oracle = Oracle([ds[i]["heatmaps"] for i in range(len(ds))], mirrored_targets(ds) if flip else None)
    preds = predict_dataset(oracle, ds, flip=flip, flip_align=align, batch_size=2)
    assert [p["index"] for p in preds] == [0, 1, 2] and [p["image_id"] for p in preds] == [1, 2, 3]
    checked = 0
    for i, (p, inst) in enumerate(zip(preds, ds.instances)):
        kp = np.asarray(p["keypoints"]).reshape(-1, 3)
        hm = ds[i]["keypoints"][:, :2].numpy() / np.asarray(
            getattr(ds.transform.codec, "scale_factor", (4, 4))
        )  # heatmap position; DARK is exact 2 sigma inside the map
        inside = (hm.min(1) >= 4) & (hm[:, 0] <= 23 - 4) & (hm[:, 1] <= 31 - 4)
        use = (inst.keypoints[:, 2] > 0) & inside
        err = np.linalg.norm(kp[:, :2] - inst.keypoints[:, :2], axis=1)[use]
        image_px_per_input_px = ds[i]["scale"][0].item() * 200 / 96
        assert err.max(initial=0) / image_px_per_input_px < 0.1
        checked += use.sum()
    assert checked >= 20
    stats, _ = evaluate_coco(preds, ds)
    assert stats["AP"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return timm.create_model(
        "hrnet_w32", arch=tiny_config(multi_scale_last=False), head="pose", num_classes=17
    ).eval()


def test_predictions_of_parts_merge_into_the_predictions_of_the_whole(coco, tiny_model):
    ds = CocoKeypointDataset(*coco, eval_transform())
    whole = predict_dataset(tiny_model, ds, batch_size=3)
    parts = [predict_dataset(tiny_model, Subset(ds, idx), batch_size=2) for idx in ([2, 0], [1, 2])]
    merged = merge_predictions(*parts)
    assert [p["index"] for p in merged] == [0, 1, 2]
    for a, b in zip(whole, merged):
        np.testing.assert_allclose(a["keypoints"], b["keypoints"], atol=1e-4)


def test_predict_dataset_refuses_a_training_transform(coco, tiny_model):
    h, w = 64, 48
    train = TopDownTransform(
        (h, w), MSRAHeatmap((w, h), (w // 4, h // 4)), mean=MEAN, std=STD, flip_pairs=None, train=True
    )
    with pytest.raises(ValueError, match="train=False"):
        predict_dataset(tiny_model, CocoKeypointDataset(*coco, train))


# ------------------------------------------------------------------------------------------------ PCKh, NME
def test_pckh_counts_joints_within_half_the_head_size(tmp_path):
    data = coco_dict()
    for a in data["annotations"]:
        a["head_bbox"] = [0, 0, 6.0, 8.0]  # 0.6 * diagonal 10 = 6 px
    ds = CocoKeypointDataset(*write_coco(tmp_path, data), eval_transform())
    preds = perfect_predictions(ds)
    assert evaluate_pckh(preds, ds) == {"PCKh@0.5": 1.0, "PCKh@0.1": 1.0}
    for p in preds:
        kp = np.asarray(p["keypoints"]).reshape(-1, 3)
        kp[:8, 0] += 2.9  # within 0.5 * 6 = 3 px, not within 0.6 px
        kp[8:, 0] += 3.1
        p["keypoints"] = kp.reshape(-1).tolist()
    labelled = np.stack([inst.keypoints[:, 2] > 0 for inst in ds.instances])
    expected = labelled[:, :8].sum() / labelled.sum()
    assert evaluate_pckh(preds, ds) == {"PCKh@0.5": pytest.approx(expected), "PCKh@0.1": 0.0}


def test_landmark_nme_uses_the_outer_eye_corners(tmp_path):
    ds = LandmarkCsvDataset(*write_landmark_csv(tmp_path, 68), face_transform(False))
    preds = []
    for i in range(len(ds)):
        kp = np.concatenate((ds.landmarks[i] + (0.3, -0.4), np.ones((68, 1))), axis=1)
        preds.append(
            {"image_id": i, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 1.0, "index": i}
        )
    stats = evaluate_landmarks(preds, ds)
    iod = np.linalg.norm(ds.landmarks[:, 36] - ds.landmarks[:, 45], axis=1)
    assert stats["NME"] == pytest.approx(np.mean(0.5 / iod))
    assert set(stats) == {"NME", "FR@0.1", "AUC@0.1", "FR@0.08", "AUC@0.08"}
    assert W300_68.norm_indices == (36, 45)


# ------------------------------------------------------------------------------------------------ CLI
def write_model(
    folder, model: nn.Module, input_size=(64, 48), k: int = 17, codec: dict | None = None
) -> None:
    folder.mkdir()
    save_file({n: t.contiguous() for n, t in model.state_dict().items()}, str(folder / "model.safetensors"))
    names = list(COCO_KEYPOINTS.keypoint_names) if k == 17 else [f"p{i}" for i in range(k)]
    config = {
        "architecture": "hrnet_w32",
        "num_classes": k,
        "model_args": {"arch": model.arch.to_dict(), "head": "pose"},
        "pretrained_cfg": {
            "input_size": [3, *input_size],
            "mean": list(MEAN),
            "std": list(STD),
            "keypoint_names": names,
            "flip_pairs": [list(p) for p in COCO_KEYPOINTS.flip_pairs] if k == 17 else [],
            "codec": codec or {"type": "MSRAHeatmap", "sigma": 2.0, "unbiased": True},
            "classifier": "head.final_layer",
            "first_conv": "conv1",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def model_dir(tmp_path, tiny_model):
    folder = tmp_path / "model"
    write_model(folder, tiny_model)
    return folder


def test_evaluate_command_prints_the_table_and_writes_stats_and_predictions(
    coco, model_dir, tmp_path, capsys
):
    from pycocotools.coco import COCO

    out_json, out_pred = tmp_path / "stats.json", tmp_path / "preds.json"
    argv = ["evaluate", str(model_dir), "--ann", str(coco[0]), "--images", str(coco[1])]
    argv += ["--json", str(out_json), "--predictions", str(out_pred), "--no-flip"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "AP" in printed and "3 instances from ground-truth boxes, flip test off" in printed
    stats = json.loads(out_json.read_text())
    assert set(stats["stats"]) >= {"AP", "AP50", "AR"} and stats["instances"] == 3
    preds = json.loads(out_pred.read_text())
    assert len(preds) == 3 and len(preds[0]["keypoints"]) == 51
    COCO(str(coco[0])).loadRes(str(out_pred))  # pycocotools reads the file as it is
    assert main(argv) == 2  # the outputs exist now
    assert "pass --force" in capsys.readouterr().err
    assert main([*argv, "--force", "--flip"]) == 0
    assert json.loads(out_json.read_text())["flip_align"] == "official"
    assert main([*argv, "--force", "--flip", "--flip-align", "exact"]) == 0
    assert "flip test on, exact alignment" in capsys.readouterr().out
    assert json.loads(out_json.read_text())["flip_align"] == "exact"


def test_evaluate_command_on_a_landmark_csv(tmp_path, capsys):
    torch.manual_seed(0)
    model = timm.create_model(
        "hrnet_w32", arch=tiny_config(multi_scale_last=False), head="pose", num_classes=68
    )
    write_model(
        tmp_path / "face_model", model, input_size=(64, 64), k=68, codec={"type": "MSRAHeatmap", "sigma": 1.5}
    )
    csv_file, image_dir = write_landmark_csv(tmp_path, 68)
    assert (
        main(["evaluate", str(tmp_path / "face_model"), "--ann", str(csv_file), "--images", str(image_dir)])
        == 0
    )
    assert "NME" in capsys.readouterr().out


def test_evaluate_command_rejects_a_keypoint_count_that_contradicts_the_model(tmp_path, capsys):
    torch.manual_seed(0)
    model = timm.create_model(
        "hrnet_w32", arch=tiny_config(multi_scale_last=False), head="pose", num_classes=5
    )
    write_model(tmp_path / "m5", model, k=5)
    ann, images = write_coco(tmp_path)
    assert main(["evaluate", str(tmp_path / "m5"), "--ann", str(ann), "--images", str(images)]) == 2
    err = capsys.readouterr().err
    assert "ann.json has 17 keypoints but the model" in err and "predicts 5" in err


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda ann, images: (images / "img2.png").unlink(),
            r"image not found: .*img2\.png \(annotation 4 in",
        ),
        (lambda ann, images: ann.write_text("{"), r"ann\.json is not valid JSON"),
        (
            lambda ann, images: (images / "img3.png").write_bytes(b"GIF89a broken"),
            r"cannot read .*img3\.png as an image",
        ),
    ],
)
@pytest.mark.parametrize("workers", ["0", "2"])
def test_evaluate_command_reports_bad_data_in_one_line_and_exits_2(
    coco, model_dir, capsys, damage, message, workers
):
    damage(*coco)
    argv = ["evaluate", str(model_dir), "--ann", str(coco[0]), "--images", str(coco[1]), "--workers", workers]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("hrnet-backbones evaluate: error:") and len(err.splitlines()) == 1
    assert __import__("re").search(message, err), err


def test_evaluate_command_on_detections_with_a_score_threshold(coco, model_dir, tmp_path, capsys):
    det_file = tmp_path / "dets.json"
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 8, 30, 60], "score": 0.9},
        {"image_id": 2, "category_id": 1, "bbox": [60, 0, 30, 40], "score": 0.2},
    ]
    det_file.write_text(json.dumps(dets))
    argv = ["evaluate", str(model_dir), "--ann", str(coco[0]), "--images", str(coco[1])]
    assert main([*argv, "--detections", str(det_file), "--score-threshold", "0.5"]) == 0
    assert "1 instances from detections" in capsys.readouterr().out


def test_pckh_of_the_mpii_layout_leaves_out_pelvis_and_thorax(tmp_path):
    from hrnet_backbones.keypoints import MPII_KEYPOINTS

    data = coco_dict()
    data["categories"][0].update(keypoints=list(MPII_KEYPOINTS.keypoint_names), skeleton=[])
    for a in data["annotations"]:
        a["keypoints"] = a["keypoints"][:48]
        a["head_bbox"] = [0, 0, 6.0, 8.0]
    h, w = 64, 48
    transform = TopDownTransform(
        (h, w), MSRAHeatmap((w, h), (w // 4, h // 4)), mean=MEAN, std=STD, flip_pairs=(), train=False
    )
    ds = CocoKeypointDataset(*write_coco(tmp_path, data), transform)
    assert ds.layout.name == "mpii" and ds.layout.flip_pairs == MPII_KEYPOINTS.flip_pairs
    preds = perfect_predictions(ds)
    for p in preds:
        kp = np.asarray(p["keypoints"]).reshape(-1, 3)
        kp[6:8, :2] += 50.0  # pelvis and thorax far off
        p["keypoints"] = kp.reshape(-1).tolist()
    assert evaluate_pckh(preds, ds) == {"PCKh@0.5": 1.0, "PCKh@0.1": 1.0}


# ------------------------------------------------------------------------------------------------ synthetic data
def test_synthetic_pose_files_load_and_score_as_pycocotools_does(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from hrnet_backbones.synth import make_pose_dataset

    paths = make_pose_dataset(tmp_path / "synth", images=10, seed=3, val_fraction=0.5, image_size=(128, 128))
    train_tf = TopDownTransform(
        (64, 48),
        MSRAHeatmap((48, 64), (12, 16), unbiased=True),
        mean=MEAN,
        std=STD,
        flip_pairs=COCO_KEYPOINTS.flip_pairs,
        train=True,
    )
    train = CocoKeypointDataset(paths.train_ann, paths.train_images, train_tf)
    assert train.layout.name == "coco" and all(
        train[i]["heatmaps"].shape == (17, 16, 12) for i in range(len(train))
    )
    val = CocoKeypointDataset(paths.val_ann, paths.val_images, eval_transform())
    assert evaluate_coco(perfect_predictions(val), val)[0]["AP"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    preds = perfect_predictions(val)
    for p in preds:
        kp = np.asarray(p["keypoints"]).reshape(-1, 3)
        kp[:, :2] += rng.normal(0, 2.0, (17, 2))
        kp[:, 2] = rng.uniform(0.1, 1.0, 17)
        p["keypoints"] = kp.reshape(-1).tolist()
    stats, results = evaluate_coco(preds, val)
    res_file = tmp_path / "results.json"
    res_file.write_text(json.dumps(results))
    gt = COCO(str(paths.val_ann))
    evaluator = COCOeval(gt, gt.loadRes(str(res_file)), "keypoints")
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    np.testing.assert_allclose(list(stats.values()), evaluator.stats, atol=1e-9)


def test_synthetic_face_files_load_and_perfect_landmarks_score_nme_0(tmp_path):
    from hrnet_backbones.keypoints import AFLW_19
    from hrnet_backbones.synth import make_face_dataset

    paths = make_face_dataset(
        tmp_path / "faces", images=4, seed=1, val_fraction=0.5, image_size=64, layout="aflw"
    )
    ds = LandmarkCsvDataset(paths.val_ann, paths.val_images.parent, face_transform(False, AFLW_19))
    assert ds.layout is AFLW_19 and ds.box_sizes is not None and ds[0]["heatmaps"].shape == (19, 16, 16)
    preds = []
    for i in range(len(ds)):
        kp = np.concatenate((ds.landmarks[i], np.ones((19, 1))), axis=1)
        preds.append(
            {"image_id": i, "category_id": 1, "keypoints": kp.reshape(-1).tolist(), "score": 1.0, "index": i}
        )
    stats = evaluate_landmarks(preds, ds)
    assert stats["NME"] == 0.0 and stats["FR@0.1"] == 0.0 and stats["AUC@0.1"] == 1.0
