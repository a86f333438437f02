"""Top-down inference and the `pose` command: boxes in an image -> keypoints in image pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from hrnet_backbones import tiny_config
from hrnet_backbones.cli import main
from hrnet_backbones.inference import keypoint_meta, predict_keypoints
from hrnet_backbones.keypoints import COCO_KEYPOINTS


class BrightnessHeatmaps(torch.nn.Module):
    """A stand-in pose model: every heatmap is the crop's brightness at stride 4 (heatmap pixel j <-> input pixel 4j,
    HRNet's own alignment), so its peaks are where the image's are."""

    num_classes = 17
    pretrained_cfg = {"input_size": (3, 256, 192), "mean": (0.0, 0.0, 0.0), "std": (1.0, 1.0, 1.0)}

    def forward(self, x):
        return x[:, :1, ::4, ::4].expand(-1, 17, -1, -1)


def blob_image(cx: float, cy: float, size=(300, 400), sigma=8.0) -> torch.Tensor:
    h, w = size
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))
    return blob.expand(3, -1, -1).contiguous()


@pytest.mark.parametrize("refine", ["dark", "quarter"])
def test_keypoints_land_on_the_image_point_the_model_sees(refine):
    image = blob_image(cx=231.3, cy=148.6)
    boxes = [[180.0, 60.0, 90.0, 160.0], [200.0, 100.0, 60.0, 70.0]]
    keypoints, scores = predict_keypoints(BrightnessHeatmaps(), image, boxes, refine=refine, flip=False)
    assert keypoints.shape == (2, 17, 2) and scores.shape == (2, 17)
    err = (keypoints - torch.tensor([231.3, 148.6])).norm(dim=-1)
    # one heatmap pixel covers 1.25 * box / 48 image pixels (box grown to 3:4): DARK is sub-pixel exact on a Gaussian
    pixel = torch.tensor([1.25 * 160 / 64, 1.25 * 70 / 48 * 4 / 3]).view(2, 1)
    assert (err < (0.01 if refine == "dark" else 0.4) * pixel).all(), err


def test_meta_falls_back_to_the_layout_of_the_keypoint_count():
    meta = keypoint_meta(BrightnessHeatmaps())
    assert meta.keypoint_names == COCO_KEYPOINTS.keypoint_names
    assert meta.flip_pairs == COCO_KEYPOINTS.flip_pairs
    assert meta.input_size == (256, 192)


def test_flip_test_runs_and_stays_close():
    image = blob_image(cx=150.0, cy=150.0)
    plain, _ = predict_keypoints(
        BrightnessHeatmaps(), image, [[100, 80, 100, 140]], flip=False, refine="dark"
    )
    flipped, _ = predict_keypoints(
        BrightnessHeatmaps(), image, [[100, 80, 100, 140]], flip=True, refine="dark"
    )
    assert (plain - flipped).norm(
        dim=-1
    ).max() < 2.0  # the official one-pixel shift moves it by < 1 heatmap px


@pytest.fixture
def pose_folder(tmp_path):
    """A pose model folder as the converter writes it (tiny architecture, random weights)."""
    model = timm.create_model(
        "hrnet_w32", arch=tiny_config(multi_scale_last=False), head="pose", num_classes=17
    )
    folder = tmp_path / "pose_model"
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))
    config = {
        "architecture": "hrnet_w32",
        "num_classes": 17,
        "model_args": {"arch": model.arch.to_dict(), "head": "pose"},
        "pretrained_cfg": {
            "input_size": [3, 128, 96],
            "mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225],
            "keypoint_names": list(COCO_KEYPOINTS.keypoint_names),
            "flip_pairs": [list(p) for p in COCO_KEYPOINTS.flip_pairs],
            "skeleton": [list(p) for p in COCO_KEYPOINTS.skeleton],
            "classifier": "head.final_layer",
            "first_conv": "conv1",
        },
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "people.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


def test_pose_command_writes_keypoints_json_and_overlay(pose_folder, image_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [
        "pose",
        str(image_file),
        "--model",
        str(pose_folder),
        "--box",
        "20,10,50,90",
        "--box",
        "90,5,40,80",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    record = json.loads((out / "people.keypoints.json").read_text())
    assert len(record["people"]) == 2 and record["input_size"] == [128, 96] and record["flip_test"] is True
    names = [kp["name"] for kp in record["people"][0]["keypoints"]]
    assert names == list(COCO_KEYPOINTS.keypoint_names)
    with Image.open(out / "people.pose.png") as png:
        assert png.size == (160, 120)
    assert "2 person(s)" in capsys.readouterr().out


def test_pose_command_never_overwrites_without_force(pose_folder, image_file, tmp_path, capsys):
    argv = [
        "pose",
        str(image_file),
        "--model",
        str(pose_folder),
        "--box",
        "20,10,50,90",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 0
    before = (tmp_path / "people.keypoints.json").read_bytes()
    assert main(argv) == 2
    assert "--force" in capsys.readouterr().err
    assert (tmp_path / "people.keypoints.json").read_bytes() == before
    assert main([*argv, "--force", "--no-flip"]) == 0


@pytest.mark.parametrize(
    ("argv_tail", "message"),
    [
        (["--model", "no/such/folder"], "neither a folder"),
        (["--model", "resnet50x"], "neither a folder"),
    ],
)
def test_pose_command_bad_model_exits_2(image_file, tmp_path, argv_tail, message, capsys):
    assert main(["pose", str(image_file), "--box", "1,1,10,10", "--out", str(tmp_path), *argv_tail]) == 2
    assert message in capsys.readouterr().err


def test_pose_command_bad_image_and_box(pose_folder, tmp_path, capsys):
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    assert main(["pose", str(not_an_image), "--model", str(pose_folder), "--box", "1,1,5,5"]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["pose", str(tmp_path / "missing.png"), "--model", str(pose_folder), "--box", "1,1,5,5"]) == 2
    with pytest.raises(SystemExit) as exit_info:
        main(["pose", str(not_an_image), "--model", str(pose_folder), "--box", "1,1,0,5"])
    assert exit_info.value.code == 2
