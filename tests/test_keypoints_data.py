"""Top-down data: the transform (official augmentation, codecs, flip), COCO-format and landmark CSV datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from hrnet_backbones.keypoints import (
    AFLW_19,
    COCO_KEYPOINTS,
    W300_68,
    MSRAHeatmap,
    UDPHeatmap,
    box_to_center_scale,
    crop_image,
    flip_permutation,
    transform_preds,
)
from hrnet_backbones.keypoints.data import (
    CocoKeypointDataset,
    LandmarkCsvDataset,
    TopDownTransform,
    landmark_transform,
)
from tests.coco_fixture import IMAGE_SIZE, coco_dict, draw_image, write_coco

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_transform(train: bool = True, codec: str = "dark", size=(64, 48), **kw) -> TopDownTransform:
    h, w = size
    if codec == "udp":
        c = UDPHeatmap((w, h), (w // 4, h // 4), sigma=2.0)
    else:
        c = MSRAHeatmap((w, h), (w // 4, h // 4), sigma=2.0, unbiased=codec == "dark")
    kw.setdefault("flip_pairs", COCO_KEYPOINTS.flip_pairs)
    return TopDownTransform(size, c, mean=MEAN, std=STD, train=train, **kw)


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path)


# ------------------------------------------------------------------------------------------------ transform
@pytest.mark.parametrize("codec", ["dark", "udp"])
def test_augment_encode_decode_inverse_affine_returns_keypoints_within_0_1_input_px(codec):
    """Random scale / rotation / flip / half-body, the codec's targets, its sub-pixel decoding and the inverse
    affine give the annotated keypoints back within 0.1 input (crop) pixels.

    Both codecs draw the Gaussian at the sub-pixel position (DARK's unbiased target, UDP's), and their decoders
    (DARK's / UDP's Taylor step on the blurred map) invert a complete Gaussian to ~1e-3 heatmap px. Near the map
    border the Gaussian is cut off and the step is biased (up to a few px at the edge), so the check covers the
    keypoints at least 2 sigma = 4 heatmap px inside the map. The plain MSRA target (integer centre) could not
    meet 0.1 px: its quantisation is up to half a heatmap pixel (2 input px).
    """
    size = (128, 96)
    t = make_transform(codec=codec, size=size)
    image = np.zeros((150, 200, 3), np.uint8)
    perm = flip_permutation(COCO_KEYPOINTS.flip_pairs, 17)
    hm_w, hm_h = t.codec.heatmap_size
    to_hm = np.array(t.codec.scale_factor if codec == "udp" else t.codec.stride)
    checked, flips, rotations = 0, 0, 0
    for i in range(40):
        rng = np.random.default_rng(i)
        kp = np.concatenate((rng.uniform((60, 30), (130, 130), (17, 2)), np.full((17, 1), 2.0)), axis=1)
        out = t(image, kp, (60, 30, 70, 100), np.random.default_rng([7, i]))
        decoded, _ = t.codec.decode(out["heatmaps"][None])
        back = transform_preds(
            decoded.double(),
            out["center"][None].double(),
            out["scale"][None].double(),
            (size[1], size[0]),
            rot=torch.tensor([out["rotation"]], dtype=torch.float64),
            udp=codec == "udp",
        )[0].numpy()
        crop_xy = out["keypoints"][:, :2].numpy()
        weights = out["weights"].numpy()
        if out["flipped"]:
            back[:, 0] = image.shape[1] - 1 - back[:, 0]
            back, crop_xy, weights = back[perm], crop_xy[perm], weights[perm]
        flips += out["flipped"]
        rotations += out["rotation"] != 0
        hm = crop_xy / to_hm
        margin = np.minimum.reduce([hm[:, 0], hm_w - 1 - hm[:, 0], hm[:, 1], hm_h - 1 - hm[:, 1]])
        use = (weights > 0) & (margin >= 4)
        image_px_per_input_px = out["scale"][0].item() * 200 / size[1]
        err = np.linalg.norm(back - kp[:, :2], axis=1)[use] / image_px_per_input_px
        assert err.max(initial=0) < 0.1, (i, err.max())
        checked += int(use.sum())
    assert checked > 200 and 5 < flips < 35 and rotations > 10


def test_eval_transform_is_the_plain_crop_of_the_box():
    t = make_transform(train=False)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    box = (10.0, 8.0, 30.0, 50.0)
    out = t(image, np.zeros((17, 3)), box)
    center, scale = box_to_center_scale(np.array(box), 48 / 64)
    assert out["rotation"] == 0.0 and not out["flipped"]
    np.testing.assert_allclose(out["center"].numpy(), center, rtol=1e-6)
    np.testing.assert_allclose(out["scale"].numpy(), scale, rtol=1e-6)
    pixels = torch.from_numpy(image).permute(2, 0, 1).float() / 255
    expected = crop_image(pixels[None], center[None], scale[None], (48, 64))[0]
    expected = (expected - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(out["image"], expected, atol=1e-5, rtol=0)


def test_flip_mirrors_the_image_and_swaps_left_right_targets():
    """A flipped sample of a mirrored image equals the unflipped sample of the original, with each left/right
    pair's heatmaps swapped."""
    t = make_transform(rotation_prob=0.0, scale_factor=0.0, half_body_prob=0.0)
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (80, 96, 3), dtype=np.uint8)
    kp = np.concatenate((rng.uniform(20, 60, (17, 2)), np.full((17, 1), 2.0)), axis=1)
    box = (15.0, 10.0, 40.0, 60.0)
    seeds = [np.random.default_rng([0, s]) for s in range(20)]
    outs = [t(image, kp, box, r) for r in seeds]
    flipped = next(o for o in outs if o["flipped"])
    plain = next(o for o in outs if not o["flipped"])
    mirrored_kp = kp.copy()
    mirrored_kp[:, 0] = 95 - kp[:, 0]
    mirrored_kp = mirrored_kp[flip_permutation(COCO_KEYPOINTS.flip_pairs, 17)]
    mirror_box = (96 - 1 - (box[0] + box[2]), box[1], box[2], box[3])
    reference = make_transform(train=False)(image[:, ::-1], mirrored_kp, mirror_box)
    # float32 sampling positions (resolution ~3e-6 px here) times the noise image's steepest edges (255 per px)
    torch.testing.assert_close(flipped["image"], reference["image"], atol=5e-5, rtol=0)
    torch.testing.assert_close(flipped["heatmaps"], reference["heatmaps"], atol=1e-6, rtol=0)
    assert not torch.allclose(flipped["heatmaps"], plain["heatmaps"])


def test_random_scale_and_rotation_follow_the_official_distributions():
    t = make_transform(half_body_prob=0.0, size=(16, 12))
    image = np.zeros((20, 20, 3), np.uint8)
    kp = np.zeros((17, 3))
    base = t.center_scale((2, 2, 12, 16))[1][0]
    ratios, rots, flips = [], [], []
    for i in range(400):
        out = t(image, kp, (2, 2, 12, 16), np.random.default_rng([1, 0, i]))
        ratios.append(out["scale"][0].item() / base)
        rots.append(out["rotation"])
        flips.append(out["flipped"])
    ratios, rots = np.array(ratios), np.array(rots)
    assert ratios.min() >= 0.65 - 1e-6 and ratios.max() <= 1.35 + 1e-6
    assert 0.2 < ratios.std() < 0.35  # a normal of sd 0.35 clipped at +-1 sd: sd ~0.28
    assert np.abs(rots).max() <= 90 and np.abs(rots).max() > 45
    assert 0.5 < np.mean(rots != 0) < 0.7
    assert 0.4 < np.mean(flips) < 0.6


def test_half_body_centres_the_crop_on_the_chosen_half():
    t = make_transform(half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=0.0)
    rng = np.random.default_rng(5)
    kp = np.concatenate((rng.uniform(10, 70, (17, 2)), np.full((17, 1), 2.0)), axis=1)
    image = np.zeros((80, 96, 3), np.uint8)
    centers = {
        tuple(np.round(t(image, kp, (0, 0, 90, 78), np.random.default_rng(i))["center"].tolist(), 3))
        for i in range(30)
    }
    upper, lower = kp[:11, :2].mean(0), kp[11:, :2].mean(0)
    assert centers == {tuple(np.round(upper, 3)), tuple(np.round(lower, 3))}


def test_half_body_needs_more_than_eight_labelled_joints():
    t = make_transform(half_body_prob=1.0, scale_factor=0.0, rotation_prob=0.0, flip_prob=0.0)
    kp = np.concatenate((np.random.default_rng(0).uniform(10, 70, (17, 2)), np.zeros((17, 1))), axis=1)
    kp[:8, 2] = 2
    box = (0, 0, 90, 78)
    out = t(np.zeros((80, 96, 3), np.uint8), kp, box, np.random.default_rng(0))
    np.testing.assert_allclose(out["center"].numpy(), (45, 39))


def test_transform_rejects_a_codec_of_another_input_size():
    with pytest.raises(ValueError, match=r"input_size=\(48, 64\)"):
        TopDownTransform(
            (64, 48), MSRAHeatmap((64, 48), (16, 12)), mean=MEAN, std=STD, flip_pairs=None, train=False
        )


# ------------------------------------------------------------------------------------------------ COCO data
def test_official_filters_skip_crowd_and_unlabelled_annotations_and_clip_boxes(coco):
    ds = CocoKeypointDataset(*coco, make_transform(train=False))
    assert [inst.ann_id for inst in ds.instances] == [1, 4, 6]
    clipped = ds.instances[1]
    # official: x1 = max(0, x), x2 = min(W - 1, x1 + max(0, w - 1)), w = x2 - x1 (likewise y): a box sticking out
    # at the top keeps its height h - 1 from y1 = 0 on (49 = min(79, 0 + 50 - 1)), it is not cut at y + h.
    assert clipped.box == (70.0, 0.0, 95.0 - 70.0, 49.0)
    assert ds.instances[0].box == (10.5, 8.0, 29.0, 59.0)


def test_layout_comes_from_the_file(coco):
    ds = CocoKeypointDataset(*coco, make_transform(train=False))
    assert ds.num_keypoints == 17 and ds.layout.flip_pairs == COCO_KEYPOINTS.flip_pairs
    assert ds.layout.skeleton == COCO_KEYPOINTS.skeleton and ds.layout.sigmas == COCO_KEYPOINTS.sigmas


def test_an_unknown_layout_takes_flip_pairs_from_left_right_names(tmp_path):
    data = coco_dict()
    names = ["nose", "left_paw", "right_paw", "tail", "l_ear", "r_ear"]
    data["categories"][0].update(keypoints=names, skeleton=[[1, 4]], name="dog")
    for a in data["annotations"]:
        a["keypoints"] = a["keypoints"][:18]
    ds = CocoKeypointDataset(*write_coco(tmp_path, data), make_transform(train=False, flip_pairs=()))
    assert ds.layout.name == "dog" and ds.num_keypoints == 6
    assert set(ds.layout.flip_pairs) == {(1, 2), (4, 5)} and ds.layout.skeleton == ((0, 3),)
    assert ds.layout.sigmas is None
    assert ds[0]["heatmaps"].shape == (6, 16, 12)


def test_item_has_the_documented_fields_and_batches(coco):
    ds = CocoKeypointDataset(*coco, make_transform())
    item = ds[2]
    assert item["image"].shape == (3, 64, 48) and item["image"].dtype == torch.float32
    assert item["heatmaps"].shape == (17, 16, 12) and item["weights"].shape == (17,)
    assert item["keypoints"].shape == (17, 3) and item["center"].shape == (2,) and item["scale"].shape == (2,)
    assert item["image_id"] == 3 and item["index"] == 2 and item["score"] == 1.0
    assert item["weights"][4] == 0 and item["weights"][10] == 0  # unlabelled joints carry no weight
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert batch["image"].shape == (3, 3, 64, 48) and batch["image_id"].tolist() == [1, 2, 3]
    assert batch["flipped"].dtype == torch.bool and batch["rotation"].shape == (3,)


def test_same_seed_epoch_index_give_the_same_sample_in_the_main_process_and_in_two_workers(coco):
    ds = CocoKeypointDataset(*coco, make_transform(), seed=11)
    ds.set_epoch(3)
    main = [ds[i] for i in range(len(ds))]
    workers = list(DataLoader(ds, batch_size=None, num_workers=2))
    for a, b in zip(main, workers):
        for key in ("image", "heatmaps", "weights", "center", "scale"):
            assert torch.equal(a[key], b[key]), key
        assert a["rotation"] == b["rotation"] and a["flipped"] == b["flipped"]


def test_epoch_and_seed_change_the_augmentation(coco):
    ds = CocoKeypointDataset(*coco, make_transform(), seed=0)
    first = [ds[i]["center"] for i in range(3)]
    ds.set_epoch(1)
    assert any(not torch.equal(a, ds[i]["center"]) for i, a in enumerate(first))
    ds.set_epoch(0)
    assert all(torch.equal(a, ds[i]["center"]) for i, a in enumerate(first))
    other = CocoKeypointDataset(*coco, make_transform(), seed=1)
    assert any(not torch.equal(a, other[i]["center"]) for i, a in enumerate(first))


def test_detections_give_instances_above_the_score_threshold(coco, tmp_path):
    dets = [
        {"image_id": 1, "category_id": 1, "bbox": [10, 8, 30, 60], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [50, 10, 30, 60], "score": 0.3},
        {"image_id": 2, "category_id": 1, "bbox": [60, 0, 30, 40], "score": 0.5},
        {"image_id": 3, "category_id": 2, "bbox": [20, 15, 40, 50], "score": 1.0},
    ]
    det_file = tmp_path / "dets.json"
    det_file.write_text(json.dumps(dets))
    ds = CocoKeypointDataset(*coco, make_transform(train=False), detections=det_file, score_threshold=0.5)
    assert [(i.image_id, i.score, i.det_index) for i in ds.instances] == [(1, 0.9, 0), (2, 0.5, 2)]
    assert ds.instances[0].box == (10.0, 8.0, 30.0, 60.0)
    assert ds[1]["score"] == 0.5 and ds[1]["image_id"] == 2
    assert len(CocoKeypointDataset(*coco, make_transform(train=False), detections=det_file)) == 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "P"])
def test_grayscale_palette_and_rgba_images_are_read_as_rgb(tmp_path, mode):
    ann_file, image_dir = write_coco(tmp_path)
    draw_image(image_dir / "img1.png", 0, IMAGE_SIZE, mode=mode)
    ds = CocoKeypointDataset(ann_file, image_dir, make_transform(train=False))
    assert Image.open(image_dir / "img1.png").mode == mode
    assert ds[0]["image"].shape == (3, 64, 48)


def test_ground_truth_arrays_hold_every_annotation_of_the_category(coco):
    gt = CocoKeypointDataset(*coco, make_transform(train=False)).ground_truth()
    assert gt["gt_keypoints"].shape == (6, 17, 3) and gt["gt_iscrowd"].tolist() == [0, 1, 0, 0, 0, 0]
    assert gt["gt_image_ids"].tolist() == [1, 1, 1, 2, 2, 3]


# ------------------------------------------------------------------------------------------------ bad input
def _write(tmp_path, mutate) -> tuple:
    data = coco_dict()
    mutate(data)
    return write_coco(tmp_path, data)


def test_a_missing_image_names_the_file_and_the_annotation(coco):
    (coco[1] / "img2.png").unlink()
    ds = CocoKeypointDataset(*coco, make_transform(train=False))
    with pytest.raises(ValueError, match=r"image not found: .*img2\.png \(annotation 4 in .*ann\.json\)"):
        ds[1]


def test_an_unreadable_image_names_the_file_and_the_annotation(coco):
    (coco[1] / "img3.png").write_text("not an image")
    ds = CocoKeypointDataset(*coco, make_transform(train=False))
    with pytest.raises(ValueError, match=r"cannot read .*img3\.png as an image \(annotation 6 in"):
        ds[2]


def test_an_image_of_another_size_than_the_json_says_is_an_error(coco):
    draw_image(coco[1] / "img1.png", 0, (IMAGE_SIZE[1], IMAGE_SIZE[0]))
    ds = CocoKeypointDataset(*coco, make_transform(train=False))
    with pytest.raises(
        ValueError, match=r"img1\.png is 80x96 pixels but .*ann\.json gives 96x80 \(annotation 1"
    ):
        ds[0]


def test_malformed_json_names_the_file(tmp_path):
    bad = tmp_path / "ann.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"ann\.json is not valid JSON"):
        CocoKeypointDataset(bad, tmp_path, make_transform(train=False))


def test_a_json_that_is_not_a_coco_keypoint_file_is_an_error(tmp_path):
    bad = tmp_path / "ann.json"
    bad.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    with pytest.raises(ValueError, match="no keypoint category"):
        CocoKeypointDataset(bad, tmp_path, make_transform(train=False))


def test_a_keypoint_count_that_contradicts_the_category_names_the_annotation(tmp_path):
    def cut(data):
        data["annotations"][3]["keypoints"] = data["annotations"][3]["keypoints"][:48]

    with pytest.raises(ValueError, match=r"ann\.json: annotation 4 has 48 keypoint values; .* 51 are needed"):
        CocoKeypointDataset(*_write(tmp_path, cut), make_transform(train=False))


def test_a_box_entirely_outside_its_image_names_the_annotation(tmp_path):
    def move(data):
        data["annotations"][5]["bbox"] = [120.0, 10.0, 20.0, 30.0]

    with pytest.raises(
        ValueError, match=r"annotation 6 has bbox .* entirely outside its 96x80 image img3\.png"
    ):
        CocoKeypointDataset(*_write(tmp_path, move), make_transform(train=False))


def test_a_data_set_empty_after_filtering_is_an_error(tmp_path):
    def crowd(data):
        for a in data["annotations"]:
            a["iscrowd"] = 1

    with pytest.raises(
        ValueError, match=r"ann\.json: no instances left after filtering 6 annotation\(s\).*6 crowd"
    ):
        CocoKeypointDataset(*_write(tmp_path, crowd), make_transform(train=False))


def test_an_annotation_of_an_unknown_image_is_an_error(tmp_path):
    def orphan(data):
        data["annotations"][0]["image_id"] = 99

    with pytest.raises(ValueError, match="annotation 1 refers to image 99"):
        CocoKeypointDataset(*_write(tmp_path, orphan), make_transform(train=False))


def test_bad_detections_name_the_detection(coco, tmp_path):
    det_file = tmp_path / "dets.json"
    det_file.write_text(
        json.dumps([{"image_id": 1, "category_id": 1, "bbox": [200, 8, 30, 60], "score": 0.9}])
    )
    with pytest.raises(ValueError, match=r"dets\.json: detection #0 has bbox .* entirely outside"):
        CocoKeypointDataset(*coco, make_transform(train=False), detections=det_file)
    det_file.write_text(json.dumps([{"image_id": 1, "category_id": 1, "bbox": [2, 8, 30, 60], "score": 0.1}]))
    with pytest.raises(ValueError, match=r"no detections of category 1 with score >= 0.5 \(1 below"):
        CocoKeypointDataset(*coco, make_transform(train=False), detections=det_file, score_threshold=0.5)
    det_file.write_text("[{")
    with pytest.raises(ValueError, match=r"dets\.json is not valid JSON"):
        CocoKeypointDataset(*coco, make_transform(train=False), detections=det_file)


# ------------------------------------------------------------------------------------------------ landmarks
def write_landmark_csv(tmp_path, n: int, rows: int = 3, box_size: bool = False):
    rng = np.random.default_rng(n)
    image_dir = tmp_path / "faces"
    image_dir.mkdir()
    header = ["image_name", "scale"] + (["box_size"] if box_size else []) + ["center_w", "center_h"]
    header += [f"{a}{i}" for i in range(n) for a in ("x", "y")]
    lines = [",".join(header)]
    for r in range(rows):
        draw_image(image_dir / f"face{r}.jpg", r, (64, 64))
        pts = rng.uniform(16, 48, (n, 2))
        values = [f"face{r}.jpg", "0.2"] + (["30.5"] if box_size else []) + ["32", "31"]
        lines.append(",".join(values + [f"{v:.3f}" for v in pts.reshape(-1)]))
    csv_file = tmp_path / "faces.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    return csv_file, image_dir


def face_transform(train: bool, layout=W300_68) -> TopDownTransform:
    codec = MSRAHeatmap((64, 64), (16, 16), sigma=1.5)
    return landmark_transform((64, 64), codec, mean=MEAN, std=STD, flip_pairs=layout.flip_pairs, train=train)


def test_landmark_csv_box_is_scale_times_200_enlarged_by_1_25(tmp_path):
    ds = LandmarkCsvDataset(*write_landmark_csv(tmp_path, 68), face_transform(train=False))
    assert ds.layout is W300_68 and len(ds) == 3 and ds.box_sizes is None
    item = ds[0]
    np.testing.assert_allclose(item["scale"].numpy(), (0.2 * 1.25, 0.2 * 1.25), rtol=1e-6)
    np.testing.assert_allclose(item["center"].numpy(), (32, 31))
    assert item["heatmaps"].shape == (68, 16, 16) and ds.landmarks.shape == (3, 68, 2)


def test_landmark_csv_with_box_size_is_aflw(tmp_path):
    ds = LandmarkCsvDataset(*write_landmark_csv(tmp_path, 19, box_size=True), face_transform(False, AFLW_19))
    assert ds.layout is AFLW_19 and ds.box_sizes.tolist() == [30.5] * 3


def test_landmark_training_uses_the_hrnet_facial_uniform_jitter(tmp_path):
    ds = LandmarkCsvDataset(*write_landmark_csv(tmp_path, 68, rows=1), face_transform(train=True))
    rots, ratios = [], []
    for epoch in range(60):
        ds.set_epoch(epoch)
        item = ds[0]
        rots.append(item["rotation"])
        ratios.append(item["scale"][0].item() / 0.25)
    assert max(abs(r) for r in rots) <= 30 and min(ratios) >= 0.75 and max(ratios) <= 1.25


def test_a_landmark_csv_of_an_unknown_count_needs_a_layout(tmp_path):
    with pytest.raises(ValueError, match="has 5 landmarks, not a known face layout"):
        LandmarkCsvDataset(*write_landmark_csv(tmp_path, 5), face_transform(False))


def test_a_missing_face_image_names_the_csv_line(tmp_path):
    csv_file, image_dir = write_landmark_csv(tmp_path, 68)
    (image_dir / "face1.jpg").unlink()
    ds = LandmarkCsvDataset(csv_file, image_dir, face_transform(False))
    with pytest.raises(ValueError, match=r"face1\.jpg \(line 3 of .*faces\.csv\)"):
        ds[1]


def test_annotations_with_zero_area_are_skipped_as_officially(tmp_path):
    def flat(data):
        data["annotations"][5]["area"] = 0

    ds = CocoKeypointDataset(*_write(tmp_path, flat), make_transform(train=False))
    assert [inst.ann_id for inst in ds.instances] == [1, 4]


def test_exif_orientation_is_ignored_unless_asked_for(tmp_path):
    """COCO's annotations are in the stored pixel grid (the official loader ignores EXIF orientation); data
    annotated on the displayed image can ask for the rotation, and the JSON's size tells which one is meant."""
    ann_file, image_dir = write_coco(tmp_path)
    stored = Image.open(image_dir / "img1.png").convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    stored.save(image_dir / "img1.jpg", exif=exif.tobytes())
    data = json.loads(ann_file.read_text())
    data["images"][0]["file_name"] = "img1.jpg"
    ann_file.write_text(json.dumps(data))
    assert CocoKeypointDataset(ann_file, image_dir, make_transform(train=False))[0]["image"].shape == (
        3,
        64,
        48,
    )
    rotated = CocoKeypointDataset(ann_file, image_dir, make_transform(train=False), exif_transpose=True)
    with pytest.raises(ValueError, match=r"img1\.jpg is 80x96 pixels but .* gives 96x80"):
        rotated[0]
    data["images"][0].update(width=80, height=96)
    ann_file.write_text(json.dumps(data))
    rotated = CocoKeypointDataset(ann_file, image_dir, make_transform(train=False), exif_transpose=True)
    assert rotated[0]["image"].shape == (3, 64, 48)
