"""Drawing keypoints and saving overlays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrnet_backbones.keypoints import COCO_KEYPOINTS, draw_keypoints, save_overlay

RED = (230, 25, 75)


def blank(h: int = 60, w: int = 80) -> np.ndarray:
    return np.zeros((h, w, 3), np.uint8)


def test_keypoints_are_drawn_in_the_instance_colour_where_they_are():
    kp = np.array([[10.0, 20.0], [50.0, 40.0]])
    out = np.asarray(draw_keypoints(blank(), kp, colors=[RED]))
    assert tuple(out[20, 10]) == RED and tuple(out[40, 50]) == RED
    assert out[5:15, 60:75].max() == 0  # nothing far from the keypoints


def test_keypoints_at_or_below_the_threshold_are_not_drawn():
    kp = np.array([[10.0, 20.0], [50.0, 40.0]])
    out = np.asarray(draw_keypoints(blank(), kp, scores=np.array([0.9, 0.3]), threshold=0.3, colors=[RED]))
    assert tuple(out[20, 10]) == RED and out[40, 50].max() == 0


def test_limbs_join_shown_keypoints_only():
    kp = np.zeros((17, 2))
    kp[5], kp[6] = (10.0, 30.0), (70.0, 30.0)  # COCO shoulders, a limb
    scores = np.zeros(17)
    scores[[5, 6]] = 1.0
    out = np.asarray(draw_keypoints(blank(), kp, scores, skeleton="coco", colors=[RED]))
    assert tuple(out[30, 40]) == RED  # middle of the shoulder line
    assert out[0:3, 0:3].max() == 0  # the undrawn keypoints at (0, 0) have no limbs


def test_several_instances_get_their_own_colours():
    kp = np.array([[[10.0, 10.0]], [[60.0, 40.0]]])
    out = np.asarray(draw_keypoints(blank(), kp, colors=[RED, (0, 130, 200)]))
    assert tuple(out[10, 10]) == RED and tuple(out[40, 60]) == (0, 130, 200)


def test_draw_accepts_chw_float_tensors_and_returns_a_new_pil_image():
    image = torch.full((3, 40, 50), 0.5)
    out = draw_keypoints(image, torch.tensor([[25.0, 20.0]]), skeleton=COCO_KEYPOINTS.skeleton[:0])
    assert isinstance(out, Image.Image) and out.size == (50, 40)
    assert np.asarray(out)[0, 0].tolist() == [128, 128, 128]


def test_draw_rejects_a_skeleton_outside_the_keypoints():
    with pytest.raises(ValueError, match="skeleton"):
        draw_keypoints(blank(), np.zeros((3, 2)), skeleton=[(0, 5)])


def test_save_overlay_writes_a_png_and_leaves_no_temporary_file(tmp_path):
    path = save_overlay(tmp_path / "out" / "pose.png", blank(), np.array([[10.0, 20.0]]), colors=[RED])
    assert path.exists() and sorted(p.name for p in path.parent.iterdir()) == ["pose.png"]
    with Image.open(path) as im:
        assert im.format == "PNG" and tuple(np.asarray(im)[20, 10]) == RED


def test_save_overlay_keeps_the_previous_file_when_drawing_fails(tmp_path):
    path = save_overlay(tmp_path / "pose.png", blank(), np.array([[10.0, 20.0]]))
    before = path.read_bytes()
    with pytest.raises(ValueError):
        save_overlay(path, blank(), np.zeros((3, 2)), skeleton=[(0, 9)])
    assert path.read_bytes() == before and len(list(tmp_path.iterdir())) == 1


def test_save_overlay_insists_on_png(tmp_path):
    with pytest.raises(ValueError, match="PNG"):
        save_overlay(tmp_path / "pose.jpg", blank(), np.zeros((1, 2)))


def test_save_overlay_interrupted_mid_write_leaves_the_old_file_and_no_debris(tmp_path, monkeypatch):
    path = save_overlay(tmp_path / "pose.png", blank(), np.array([[10.0, 20.0]]))
    before = path.read_bytes()

    def broken_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        save_overlay(path, blank(), np.array([[30.0, 30.0]]))
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["pose.png"]
