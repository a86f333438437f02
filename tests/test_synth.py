"""Synthetic keypoint data: real files in the COCO / HRNet-Facial formats, reproducible, mirror-consistent, hard."""

from __future__ import annotations

import contextlib
import csv
import io
import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from hrnet_backbones import synth
from hrnet_backbones.cli import main
from hrnet_backbones.keypoints import COCO_KEYPOINTS, coco_keypoint_stats, get_layout
from hrnet_backbones.synth import (
    FACE_LAYOUTS,
    face_landmarks,
    make_face_dataset,
    make_pose_dataset,
    mean_pose_baseline_ap,
    mean_shape_baseline_nme,
    render_face,
    render_figure,
)

SIZE = (128, 128)


@pytest.fixture(scope="module")
def pose_set(tmp_path_factory):
    return make_pose_dataset(tmp_path_factory.mktemp("pose") / "data", 24, seed=3, image_size=SIZE)


def _coco(path):
    return json.loads(path.read_text(encoding="utf-8"))


def _people(coco):
    return [a for a in coco["annotations"] if not a["iscrowd"]]


# ------------------------------------------------------------------------------------------- pose files
def test_pose_files_follow_the_layout(pose_set):
    root = pose_set.root
    assert pose_set.train_ann == root / "annotations" / "person_keypoints_train.json"
    assert pose_set.val_ann == root / "annotations" / "person_keypoints_val.json"
    assert (
        pose_set.train_images == root / "images" / "train" and pose_set.val_images == root / "images" / "val"
    )
    info = _coco(root / "synth.json")
    assert info["kind"] == "pose" and info["seed"] == 3 and info["image_size"] == list(SIZE)
    assert info["generator_version"] == synth.GENERATOR_VERSION
    assert info["counts"]["train"]["images"] + info["counts"]["val"]["images"] == 24
    assert info["counts"]["val"]["images"] == round(24 * 0.2)


def test_pose_images_are_jpegs_of_the_declared_size(pose_set):
    for ann, folder in ((pose_set.train_ann, pose_set.train_images), (pose_set.val_ann, pose_set.val_images)):
        coco = _coco(ann)
        assert sorted(p.name for p in folder.iterdir()) == sorted(i["file_name"] for i in coco["images"])
        for im in coco["images"]:
            with Image.open(folder / im["file_name"]) as img:
                assert img.format == "JPEG" and img.size == (im["width"], im["height"]) == (SIZE[1], SIZE[0])


def test_pose_category_is_coco_person_with_a_one_based_skeleton(pose_set):
    (cat,) = _coco(pose_set.train_ann)["categories"]
    assert cat["name"] == "person" and cat["id"] == 1
    assert cat["keypoints"] == list(COCO_KEYPOINTS.keypoint_names)
    assert cat["skeleton"] == [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton]
    assert min(min(pair) for pair in cat["skeleton"]) == 1


def test_pose_ids_are_unique_across_splits(pose_set):
    train, val = _coco(pose_set.train_ann), _coco(pose_set.val_ann)
    image_ids = [i["id"] for c in (train, val) for i in c["images"]]
    ann_ids = [a["id"] for c in (train, val) for a in c["annotations"]]
    assert len(set(image_ids)) == len(image_ids) and len(set(ann_ids)) == len(ann_ids)
    for c in (train, val):
        assert {a["image_id"] for a in c["annotations"]} <= {i["id"] for i in c["images"]}


def test_pose_annotations_are_consistent(pose_set):
    for ann in (pose_set.train_ann, pose_set.val_ann):
        coco = _coco(ann)
        for a in coco["annotations"]:
            assert {
                "id",
                "image_id",
                "category_id",
                "bbox",
                "area",
                "iscrowd",
                "num_keypoints",
                "keypoints",
            } <= set(a)
            assert a["category_id"] == 1 and a["iscrowd"] in (0, 1) and a["segmentation"] == []
            kp = np.array(a["keypoints"], np.float64).reshape(17, 3)
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and a["area"] > 0
            assert min(x, y) >= 0 and x + w <= SIZE[1] and y + h <= SIZE[0]
            assert a["num_keypoints"] == int((kp[:, 2] > 0).sum())
            assert set(kp[:, 2].tolist()) <= {0, 1, 2}
            assert (kp[kp[:, 2] == 0, :2] == 0).all()  # unlabelled: (0, 0, 0) as in COCO
            lab = kp[kp[:, 2] > 0]
            assert (lab[:, 0] >= x).all() and (lab[:, 0] <= x + w).all()
            assert (lab[:, 1] >= y).all() and (lab[:, 1] <= y + h).all()
            if a["iscrowd"]:
                assert a["num_keypoints"] == 0


def test_pose_data_has_every_difficulty(pose_set):
    anns = _coco(pose_set.train_ann)["annotations"] + _coco(pose_set.val_ann)["annotations"]
    people = [a for a in anns if not a["iscrowd"]]
    v = np.array([a["keypoints"][2::3] for a in people])
    assert (v == 0).any() and (v == 1).any() and (v == 2).any()  # unlabelled, occluded, visible
    assert any(a["iscrowd"] for a in anns)
    per_image = np.bincount([a["image_id"] for a in people])
    assert per_image.max() >= 3  # several people in one image
    truncated = [
        a for a in people if a["bbox"][0] == 0 or a["bbox"][1] == 0 or a["bbox"][0] + a["bbox"][2] == SIZE[1]
    ]
    assert truncated  # people cut by the border


def test_figures_face_the_camera_or_away_with_coco_sides():
    rng = np.random.default_rng(0)
    upright = replace(synth._random_figure(rng, (64.0, 70.0), 100.0), rotation=0.0, lean=0.0)
    left, right = (
        COCO_KEYPOINTS.keypoint_names.index("left_shoulder"),
        COCO_KEYPOINTS.keypoint_names.index("right_shoulder"),
    )
    _, front = render_figure(replace(upright, facing=1), SIZE)
    _, back = render_figure(replace(upright, facing=-1), SIZE)
    assert front[left, 0] > front[right, 0]  # facing us: the person's left is on our right
    assert back[left, 0] < back[right, 0]
    assert (front[:3, 2] > 0).all() and (back[:3, 2] == 0).all()  # nose and eyes unlabelled from behind


@pytest.mark.parametrize(("arm_z", "visibility"), [(1.5, 1), (3.5, 2)])
def test_a_wrist_behind_the_torso_is_occluded_and_in_front_visible(arm_z, visibility):
    f = replace(synth._random_figure(np.random.default_rng(0), (64.0, 70.0), 100.0), rotation=0.0, lean=0.0)
    f = replace(f, facing=1, left=replace(f.left, arm=-0.3, elbow=-1.5, arm_z=arm_z))  # hand across the chest
    img, kp = render_figure(f, SIZE)
    wrist = COCO_KEYPOINTS.keypoint_names.index("left_wrist")
    assert kp[wrist, 2] == visibility
    x, y = np.round(kp[wrist, :2]).astype(int)
    assert (np.asarray(img)[y, x] == f.shirt).all() == (visibility == 1)  # the shirt covers a hidden wrist


def test_visible_keypoints_lie_on_the_drawn_figure():
    background = (0, 0, 0)
    for seed in range(5):
        f = synth._random_figure(np.random.default_rng(seed), (64.0, 64.0), 90.0)
        img, kp = render_figure(f, SIZE, background=background)
        pixels = np.asarray(img)
        for x, y, v in kp:
            if v == 2:
                assert (pixels[int(round(y)), int(round(x))] != background).any()


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_a_mirrored_figure_is_the_mirror_image_with_flip_pairs_swapped(seed):
    rng = np.random.default_rng(seed)
    f = synth._random_figure(rng, (rng.uniform(40, 88), rng.uniform(50, 80)), rng.uniform(60, 110))
    w = SIZE[1]
    img, kp = render_figure(f, SIZE)
    img_m, kp_m = render_figure(f.mirrored(w), SIZE)
    flipped = np.asarray(img)[:, ::-1].astype(int)
    differ = np.abs(flipped - np.asarray(img_m).astype(int)).max(-1) > 40
    assert differ.mean() < 0.02  # the same drawing, up to rasterisation at edges
    expect = kp[list(COCO_KEYPOINTS.flip_indices)].copy()
    expect[:, 0] = w - 1 - expect[:, 0]
    np.testing.assert_allclose(kp_m[:, :2], expect[:, :2], atol=1e-6)
    assert (np.abs(kp_m[:, 2] - expect[:, 2]) <= 1).all() and (kp_m[:, 2] == expect[:, 2]).mean() >= 0.85


def test_pose_files_load_in_the_coco_api_and_agree_with_our_metric(pose_set):
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(pose_set.val_ann))
        rng = np.random.default_rng(0)
        results = []
        for a in gt.dataset["annotations"]:
            if not a["iscrowd"]:  # ground truth moved by a pixel or two
                kp = np.array(a["keypoints"], np.float64).reshape(17, 3)
                kp[:, :2] += rng.normal(0, 1.5, (17, 2))
                results.append(
                    {"image_id": a["image_id"], "category_id": 1, "keypoints": kp.reshape(-1).tolist()}
                )
                results[-1]["score"] = float(rng.uniform(0.5, 1))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    anns = gt.dataset["annotations"]
    ours = coco_keypoint_stats(
        np.array([r["keypoints"] for r in results]).reshape(-1, 17, 3),
        np.array([r["score"] for r in results]),
        np.array([a["keypoints"] for a in anns], np.float64).reshape(-1, 17, 3),
        np.array([a["area"] for a in anns]),
        dt_image_ids=[r["image_id"] for r in results],
        gt_image_ids=[a["image_id"] for a in anns],
        gt_bboxes=np.array([a["bbox"] for a in anns]),
        gt_iscrowd=[a["iscrowd"] for a in anns],
    )
    assert 0.5 < ours["AP"] < 1.0
    assert ours["AP"] == pytest.approx(ev.stats[0], abs=1e-9)


# ------------------------------------------------------------------------------------------ determinism
def test_the_same_seed_gives_identical_files(tmp_path):
    a = make_pose_dataset(tmp_path / "a", 4, seed=7, image_size=(96, 96))
    b = make_pose_dataset(tmp_path / "b", 4, seed=7, image_size=(96, 96))
    for name in ("train_ann", "val_ann"):
        assert getattr(a, name).read_bytes() == getattr(b, name).read_bytes()
    assert (a.root / "synth.json").read_bytes() == (b.root / "synth.json").read_bytes()
    for p in sorted(a.train_images.iterdir()):
        q = b.train_images / p.name
        assert np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(q)))


def test_another_seed_gives_other_data(tmp_path):
    a = make_pose_dataset(tmp_path / "a", 3, seed=1, image_size=(96, 96), val_fraction=0.0)
    b = make_pose_dataset(tmp_path / "b", 3, seed=2, image_size=(96, 96), val_fraction=0.0)
    assert a.train_ann.read_bytes() != b.train_ann.read_bytes()
    p = sorted(a.train_images.iterdir())[0]
    assert not np.array_equal(np.asarray(Image.open(p)), np.asarray(Image.open(b.train_images / p.name)))


def test_face_data_is_reproducible(tmp_path):
    a = make_face_dataset(tmp_path / "a", 2, seed=5, image_size=(96, 96), val_fraction=0.5)
    b = make_face_dataset(tmp_path / "b", 2, seed=5, image_size=(96, 96), val_fraction=0.5)
    assert a.train_ann.read_bytes() == b.train_ann.read_bytes()
    assert (a.train_images / "000001.jpg").read_bytes() == (b.train_images / "000001.jpg").read_bytes()


# ----------------------------------------------------------------------------------------------- faces
@pytest.mark.parametrize("layout", FACE_LAYOUTS)
def test_face_csv_has_the_hrnet_facial_columns_and_landmarks_inside_the_images(tmp_path, layout):
    paths = make_face_dataset(
        tmp_path / "f", 3, seed=0, image_size=(96, 112), layout=layout, val_fraction=0.34
    )
    k = get_layout(layout).num_keypoints
    extra = ["box_size"] if layout == "aflw" else []
    for ann in (paths.train_ann, paths.val_ann):
        assert ann.name in ("face_landmarks_train.csv", "face_landmarks_val.csv")
        rows = list(csv.reader(ann.open(encoding="utf-8")))
        header, body = rows[0], rows[1:]
        assert header[: 4 + len(extra)] == ["image_name", "scale", *extra, "center_w", "center_h"]
        assert len(header) == 4 + len(extra) + 2 * k and body
        assert header[-2:] == [f"original_{k - 1}_x", f"original_{k - 1}_y"]
        for row in body:
            assert len(row) == len(header)
            image = paths.root / "images" / row[0]
            assert row[0].startswith(ann.stem.rsplit("_", 1)[1] + "/") and image.is_file()
            with Image.open(image) as img:
                w, h = img.size
            pts = np.array(row[4 + len(extra) :], np.float64).reshape(k, 2)
            assert (pts >= 0).all() and (pts[:, 0] <= w - 1).all() and (pts[:, 1] <= h - 1).all()
            box = max(pts.max(0) - pts.min(0))
            assert float(row[1]) == pytest.approx(box / 200, abs=1e-4)
            cw, ch = float(row[2 + len(extra)]), float(row[3 + len(extra)])
            assert (cw, ch) == pytest.approx(tuple((pts.max(0) + pts.min(0)) / 2), abs=0.02)


@pytest.mark.parametrize("layout", FACE_LAYOUTS)
def test_face_layouts_are_mirror_symmetric_under_their_flip_pairs(layout):
    f = replace(synth._random_face(np.random.default_rng(1)), center=(0.0, 0.0), size=1.0, yaw=0.0, roll=0.0)
    f = replace(f, gaze=(0.0, f.gaze[1]))
    pts = face_landmarks(f, layout)
    lay = get_layout(layout)
    mirrored = pts[list(lay.flip_indices)] * np.array([-1.0, 1.0])
    np.testing.assert_allclose(mirrored, pts, atol=1e-9)


@pytest.mark.parametrize("layout", FACE_LAYOUTS)
def test_a_mirrored_face_is_the_mirror_image_with_flip_pairs_swapped(layout):
    rng = np.random.default_rng(2)
    f = replace(synth._random_face(rng), center=(63.0, 50.0), size=28.0)
    img, pts = render_face(f, layout, SIZE)
    img_m, pts_m = render_face(f.mirrored(SIZE[1]), layout, SIZE)
    differ = np.abs(np.asarray(img)[:, ::-1].astype(int) - np.asarray(img_m).astype(int)).max(-1) > 40
    assert differ.mean() < 0.02
    expect = pts[list(get_layout(layout).flip_indices)]
    expect[:, 0] = SIZE[1] - 1 - expect[:, 0]
    np.testing.assert_allclose(pts_m, expect, atol=1e-6)


def test_face_landmarks_follow_the_300w_semantics():
    f = replace(
        synth._random_face(np.random.default_rng(0)), center=(64.0, 50.0), size=25.0, yaw=0.0, roll=0.0
    )
    p = face_landmarks(f, "300w")
    assert p[0, 0] < p[8, 0] < p[16, 0] and p[8, 1] == p[:17, 1].max()  # jaw: left temple, chin, right temple
    assert p[36, 0] < p[39, 0] < p[42, 0] < p[45, 0]  # eye corners left to right
    assert p[19, 1] < p[37, 1] < p[30, 1] < p[51, 1] < p[57, 1] < p[8, 1]  # brow, eye, nose tip, lips, chin


@pytest.mark.parametrize(
    ("layout", "left_to_right"),
    [
        ("wflw", [0, 60, 64, 68, 72, 32]),  # contour start, eye corners, contour end
        ("wflw", [76, 88, 92, 82]),  # mouth corners, outer and inner
        ("cofw", [8, 10, 11, 9]),  # eye corners: outer, inner, inner, outer
        ("cofw", [0, 2, 3, 1]),  # brow ends
        ("aflw", [0, 1, 2, 3, 4, 5]),  # brows
        ("aflw", [6, 7, 8, 9, 10, 11]),  # eyes: corner, centre, corner
    ],
)
def test_face_landmarks_run_across_the_face_in_the_layouts_order(layout, left_to_right):
    f = replace(
        synth._random_face(np.random.default_rng(0)), center=(64.0, 50.0), size=25.0, yaw=0.0, roll=0.0
    )
    x = face_landmarks(f, layout)[left_to_right, 0]
    assert (np.diff(x) > 0).all()


# ------------------------------------------------------------------------------------- baseline, writing
def test_a_constant_mean_pose_scores_at_most_ten_percent_ap(pose_set):
    assert mean_pose_baseline_ap(pose_set.train_ann, pose_set.val_ann) <= 0.10


def test_the_mean_pose_baseline_scores_a_data_set_of_one_pose_perfectly(tmp_path):
    rng = np.random.default_rng(0)
    pose = rng.uniform(0.1, 0.9, (17, 2))

    def coco(n, first_id):
        anns = []
        for i in range(n):
            box = np.array(
                [rng.uniform(0, 50), rng.uniform(0, 50), rng.uniform(40, 90), rng.uniform(80, 150)]
            )
            kp = np.concatenate([box[:2] + pose * box[2:], np.full((17, 1), 2.0)], 1)
            anns.append(
                {
                    "id": first_id + i,
                    "image_id": first_id + i,
                    "category_id": 1,
                    "bbox": box.tolist(),
                    "iscrowd": 0,
                }
                | {
                    "area": float(box[2] * box[3] * 0.5),
                    "num_keypoints": 17,
                    "keypoints": kp.reshape(-1).tolist(),
                }
            )
        return {"images": [], "annotations": anns, "categories": []}

    (tmp_path / "t.json").write_text(json.dumps(coco(5, 1)))
    (tmp_path / "v.json").write_text(json.dumps(coco(4, 10)))
    assert mean_pose_baseline_ap(tmp_path / "t.json", tmp_path / "v.json") == pytest.approx(1.0)


def test_a_constant_mean_face_shape_misses_by_far(tmp_path):
    paths = make_face_dataset(tmp_path / "f", 12, seed=0, image_size=(96, 96), val_fraction=0.25)
    assert mean_shape_baseline_nme(paths.train_ann, paths.val_ann, "300w") > 0.08  # a trained model: ~0.03


def test_the_mean_shape_baseline_scores_faces_of_one_shape_perfectly(tmp_path):
    rng = np.random.default_rng(0)
    shape = rng.uniform(-0.5, 0.5, (19, 2))

    def write(path, n):
        rows = [["image_name", "scale", "box_size", "center_w", "center_h"]]
        rows[0] += [c for i in range(19) for c in (f"x_{i}", f"y_{i}")]
        for i in range(n):
            scale, centre = rng.uniform(0.3, 1.0), rng.uniform(50, 150, 2)
            pts = centre + shape * scale * 200
            rows.append([f"train/{i:06d}.jpg", scale, scale * 200, *centre, *pts.reshape(-1)])
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerows(rows)

    write(tmp_path / "t.csv", 4)
    write(tmp_path / "v.csv", 3)
    assert mean_shape_baseline_nme(tmp_path / "t.csv", tmp_path / "v.csv", "aflw") == pytest.approx(
        0.0, abs=1e-9
    )


def test_an_existing_folder_is_refused_without_force(tmp_path):
    out = tmp_path / "data"
    make_pose_dataset(out, 1, seed=0, image_size=(64, 64), val_fraction=0.0)
    before = (out / "synth.json").read_text()
    with pytest.raises(FileExistsError, match="--force"):
        make_pose_dataset(out, 1, seed=1, image_size=(64, 64), val_fraction=0.0)
    assert (out / "synth.json").read_text() == before
    make_pose_dataset(out, 1, seed=1, image_size=(64, 64), val_fraction=0.0, force=True)
    assert (out / "synth.json").read_text() != before


def test_force_never_replaces_a_folder_synth_did_not_write(tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"keep\.txt"):
        make_pose_dataset(out, 1, seed=0, image_size=(64, 64), val_fraction=0.0, force=True)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_an_empty_existing_folder_is_filled(tmp_path):
    (tmp_path / "data").mkdir()
    make_face_dataset(tmp_path / "data", 1, seed=0, image_size=(64, 64), val_fraction=0.0)
    assert (tmp_path / "data" / "annotations" / "face_landmarks_train.csv").is_file()


@pytest.mark.parametrize("make", [make_pose_dataset, make_face_dataset])
def test_missing_parent_folders_are_created(tmp_path, make):
    out = tmp_path / "a" / "b" / "data"
    make(out, 1, seed=0, image_size=(64, 64), val_fraction=0.0)
    assert (out / "synth.json").is_file()
    assert sorted(p.name for p in (tmp_path / "a" / "b").iterdir()) == ["data"]  # no temporary sibling left


def test_an_out_under_a_file_names_the_folder(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(
        ValueError, match=r"cannot create the output folder .*file/data: .*choose another --out"
    ):
        make_pose_dataset(tmp_path / "file" / "data", 1, seed=0, image_size=(64, 64), val_fraction=0.0)


def test_an_error_leaves_nothing_half_written(tmp_path, monkeypatch):
    calls = []

    def fail_on_second(rng, h, w):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full")
        return real(rng, h, w)

    real = synth._pose_image
    monkeypatch.setattr(synth, "_pose_image", fail_on_second)
    with pytest.raises(OSError, match="disk full"):
        make_pose_dataset(tmp_path / "data", 3, seed=0, image_size=(64, 64))
    assert list(tmp_path.iterdir()) == []


def test_the_command_writes_a_data_set(tmp_path, capsys):
    out = tmp_path / "faces"
    argv = ["synth", "--out", str(out), "--kind", "face", "--images", "2", "--seed", "1", "--layout", "cofw"]
    assert main([*argv, "--image-size", "64", "80"]) == 0
    assert "face data (cofw)" in capsys.readouterr().out
    info = json.loads((out / "synth.json").read_text())
    assert info["layout"] == "cofw" and info["num_landmarks"] == 29 and info["image_size"] == [64, 80]
    assert main([*argv, "--image-size", "64", "80"]) == 2
    assert "--force" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--kind", "pose", "--images", "0"], "--images must be a positive integer"),
        (["--kind", "pose", "--images", "4", "--val-fraction", "1.5"], "--val-fraction"),
        (["--kind", "pose", "--images", "1", "--val-fraction", "0.5"], "no training image"),
        (["--kind", "pose", "--images", "2", "--image-size", "8", "8"], "--image-size"),
        (["--kind", "pose", "--images", "2", "--seed", "-1"], "--seed"),
        (["--kind", "face", "--images", "2", "--layout", "coco"], "not a face layout"),
        (["--kind", "face", "--images", "2", "--layout", "nope"], "unknown keypoint layout"),
        (["--kind", "pose", "--images", "2", "--layout", "wflw"], "--layout applies to --kind face"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, message):
    assert main(["synth", "--out", str(tmp_path / "x"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()
