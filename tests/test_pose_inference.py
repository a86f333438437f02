"""Top-down inference and the `pose` command: boxes in an image -> keypoints in image pixels."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from hrnet_backbones import tiny_config
from hrnet_backbones.cli import main
from hrnet_backbones.inference import (
    FLOAT_RANGE_SLACK,
    check_boxes,
    keypoint_meta,
    predict_keypoints,
    to_image_tensor,
)
from hrnet_backbones.keypoints import COCO_KEYPOINTS
from tests.helpers import fixture_model, write_pose_folder


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


class DarkBrightnessHeatmaps(BrightnessHeatmaps):
    """The same model, its config recording a DARK codec as a folder trained with ``--codec dark`` does."""

    pretrained_cfg = {
        **BrightnessHeatmaps.pretrained_cfg,
        "codec": {"type": "MSRAHeatmap", "sigma": 2.0, "unbiased": True},
    }


def test_a_dark_codec_decodes_with_dark_by_default():
    assert keypoint_meta(DarkBrightnessHeatmaps()).codec == "dark"
    assert keypoint_meta(BrightnessHeatmaps()).codec == "msra"
    image = blob_image(cx=231.3, cy=148.6)
    boxes = [[180.0, 60.0, 90.0, 160.0]]
    auto, _ = predict_keypoints(DarkBrightnessHeatmaps(), image, boxes, flip=False)
    dark, _ = predict_keypoints(BrightnessHeatmaps(), image, boxes, refine="dark", flip=False)
    quarter, _ = predict_keypoints(BrightnessHeatmaps(), image, boxes, flip=False)
    assert torch.equal(auto, dark) and not torch.equal(auto, quarter)


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


# ------------------------------------------------------------------------------------------ the image forms
def photo(h: int = 96, w: int = 128) -> np.ndarray:
    """An (H, W, 3) uint8 RGB image with structure (a bright blob on a gradient, some noise)."""
    yy, xx = np.mgrid[0:h, 0:w]
    blob = 200 * np.exp(-((xx - 0.6 * w) ** 2 + (yy - 0.4 * h) ** 2) / (2 * (0.1 * w) ** 2))
    noise = np.random.default_rng(0).integers(0, 30, (h, w, 3))
    rgb = np.stack([blob + xx / w * 20, blob * 0.8 + yy / h * 20, blob * 0.5], -1) + noise
    return rgb.clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def pose_model():
    """The tiny official pose fixture: a real network, whose keypoints change if the input's scale does; small
    crops keep it fast."""
    model = fixture_model("pose").eval()
    model.pretrained_cfg = {**model.pretrained_cfg, "input_size": (3, 64, 48)}
    return model


BOX = [[30.0, 10.0, 60.0, 80.0]]


def test_uint8_tensor_gives_the_keypoints_of_its_float_division_by_255(pose_model):
    image = torch.from_numpy(photo()).permute(2, 0, 1)
    from_uint8 = predict_keypoints(pose_model, image, BOX)
    from_float = predict_keypoints(pose_model, image.float() / 255, BOX)
    assert torch.equal(from_uint8[0], from_float[0]) and torch.equal(from_uint8[1], from_float[1])
    # and 0-255 values as they are would have given other keypoints: the conversion matters for a real network
    with torch.no_grad():
        crops = torch.rand(1, 3, 64, 48)
        assert not torch.allclose(pose_model(crops), pose_model(crops * 255))


def test_pil_image_gives_the_keypoints_of_its_pixels(pose_model):
    rgb = photo()
    from_pil = predict_keypoints(pose_model, Image.fromarray(rgb), BOX)
    from_tensor = predict_keypoints(pose_model, torch.from_numpy(rgb).permute(2, 0, 1).float() / 255, BOX)
    assert torch.equal(from_pil[0], from_tensor[0])


def test_hwc_uint8_numpy_array_gives_the_keypoints_of_the_chw_tensor(pose_model):
    rgb = photo()
    from_array = predict_keypoints(pose_model, rgb, BOX)
    from_tensor = predict_keypoints(pose_model, torch.from_numpy(rgb).permute(2, 0, 1), BOX)
    assert torch.equal(from_array[0], from_tensor[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hwc_float_numpy_array_in_0_1_is_taken_as_it_is(dtype):
    rgb = photo().astype(dtype) / 255
    assert torch.equal(to_image_tensor(rgb), torch.from_numpy(rgb).float().permute(2, 0, 1))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_float_tensors_of_any_precision_become_float32(dtype):
    image = torch.rand(3, 8, 6).to(dtype)
    out = to_image_tensor(image)
    assert out.dtype == torch.float32 and torch.equal(out, image.float())


def test_uint8_is_divided_by_255_exactly():
    image = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16).expand(3, -1, -1)
    assert torch.equal(to_image_tensor(image), image.float() / 255)


def test_pil_grayscale_and_rgba_become_rgb():
    rgb = photo()
    gray = Image.fromarray(rgb[..., 0])
    assert torch.equal(
        to_image_tensor(gray), torch.from_numpy(rgb[..., 0]).float().div(255).expand(3, -1, -1)
    )
    rgba = Image.fromarray(np.concatenate([rgb, np.full_like(rgb[..., :1], 7)], -1))
    assert torch.equal(to_image_tensor(rgba), to_image_tensor(rgb))


def test_read_only_and_reversed_numpy_views_are_accepted():
    rgb = photo()
    bgr_view = rgb[..., ::-1]  # negative strides, e.g. OpenCV's BGR flipped to RGB
    assert torch.equal(to_image_tensor(bgr_view)[0], to_image_tensor(rgb)[2])
    frozen = np.asarray(Image.fromarray(rgb))  # read-only
    assert not frozen.flags.writeable
    assert torch.equal(to_image_tensor(frozen), to_image_tensor(rgb))


def test_resampling_overshoot_within_the_slack_is_kept_unclipped():
    image = torch.full((3, 4, 4), 0.5)
    image[0, 0, 0], image[1, 0, 0] = 1 + FLOAT_RANGE_SLACK / 2, -FLOAT_RANGE_SLACK / 2
    assert torch.equal(to_image_tensor(image), image)


@pytest.mark.parametrize(
    ("image", "error", "fix"),
    [
        (torch.rand(40, 30, 3), ValueError, "permute(2, 0, 1)"),
        (np.random.rand(3, 40, 30), ValueError, "a.transpose(1, 2, 0)"),
        (torch.rand(1, 3, 40, 30), ValueError, "image[0]"),
        (torch.rand(2, 3, 40, 30), ValueError, "one image at a time"),
        (torch.rand(40, 30), ValueError, "image.expand(3, -1, -1)"),
        (torch.rand(4, 40, 30), ValueError, "image[:3]"),
        (np.zeros((40, 30, 4), np.uint8), ValueError, "a[..., :3]"),
        (np.zeros((40, 30), np.uint8), ValueError, "np.stack([a] * 3, axis=-1)"),
        (torch.randint(0, 255, (3, 40, 30)), TypeError, "to(torch.uint8)"),
        (np.zeros((40, 30, 3), np.uint16), TypeError, "/ 65535"),
        (torch.zeros(3, 40, 30, dtype=torch.bool), TypeError, "floats in [0, 1]"),
        (torch.rand(3, 40, 30) * 255, ValueError, "divide them by 255"),
        ((torch.rand(3, 40, 30) - 0.485) / 0.229, ValueError, "normalised with a mean and std already"),
        (torch.full((3, 4, 4), float("nan")), ValueError, "NaN"),
        (torch.zeros(3, 0, 30), ValueError, "no pixels"),
        (Image.new("I;16", (30, 40)), ValueError, "not 8-bit"),
        ([[[0.5]]], TypeError, "a PIL image, an (H, W, 3) NumPy array or a (3, H, W) torch tensor"),
    ],
    ids=[
        "hwc-tensor",
        "chw-array",
        "batch-of-one",
        "batch",
        "gray-tensor",
        "rgba-tensor",
        "rgba-array",
        "gray-array",
        "int64",
        "uint16",
        "bool",
        "float-0-255",
        "normalised",
        "nan",
        "empty",
        "pil-16-bit",
        "list",
    ],
)
def test_unsupported_images_are_refused_with_the_fix(image, error, fix):
    with pytest.raises(error) as info:
        predict_keypoints(BrightnessHeatmaps(), image, BOX)
    assert fix in str(info.value)


# ------------------------------------------------------------------------------------------------- the boxes
def test_box_outside_the_image_is_refused():
    with pytest.raises(ValueError, match=r"box 1 \(900,900,10,10\) has 0% of its area inside the 512x512"):
        predict_keypoints(
            BrightnessHeatmaps(), torch.zeros(3, 512, 512), [[0, 0, 50, 50], [900, 900, 10, 10]]
        )


def test_box_mostly_outside_the_image_is_refused():
    with pytest.raises(ValueError, match="40% of its area inside"):
        check_boxes(torch.tensor([[-60.0, 0.0, 100.0, 100.0]]), (512, 512))


def test_box_half_inside_the_image_is_kept_unclipped():
    check_boxes(torch.tensor([[-50.0, 0.0, 100.0, 100.0], [462.0, 462.0, 100.0, 100.0]]), (512, 1024))
    with pytest.raises(ValueError, match="25%"):  # the same corner box in a 512-wide image is 3/4 outside
        check_boxes(torch.tensor([[462.0, 462.0, 100.0, 100.0]]), (512, 512))


# ---------------------------------------------------------------------------------------------- the command
@pytest.fixture
def pose_folder(tmp_path):
    """A pose model folder as the converter writes it (tiny architecture, random weights)."""
    model = timm.create_model(
        "hrnet_w32", arch=tiny_config(multi_scale_last=False), head="pose", num_classes=17
    )
    return write_pose_folder(tmp_path / "pose_model", model, input_size=(128, 96))


@pytest.fixture
def image_file(tmp_path):
    path = tmp_path / "people.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(path)
    return path


def pose_argv(image, folder, out, *boxes: str) -> list[str]:
    """``hrnet-backbones pose IMAGE --model FOLDER --box B ... --out OUT``."""
    box_args = [arg for box in boxes for arg in ("--box", box)]
    return ["pose", str(image), "--model", str(folder), *box_args, "--out", str(out)]


def test_pose_command_writes_keypoints_json_and_overlay(pose_folder, image_file, tmp_path, capsys):
    out = tmp_path / "out"
    argv = pose_argv(image_file, pose_folder, out, "20,10,50,90", "90,5,40,80")
    assert main(argv) == 0
    record = json.loads((out / "people.keypoints.json").read_text())
    assert len(record["people"]) == 2 and record["input_size"] == [128, 96] and record["flip_test"] is True
    names = [kp["name"] for kp in record["people"][0]["keypoints"]]
    assert names == list(COCO_KEYPOINTS.keypoint_names)
    with Image.open(out / "people.pose.png") as png:
        assert png.size == (160, 120)
    assert "2 person(s)" in capsys.readouterr().out


def test_pose_command_never_overwrites_without_force(pose_folder, image_file, tmp_path, capsys):
    argv = pose_argv(image_file, pose_folder, tmp_path, "20,10,50,90")
    assert main(argv) == 0
    before = (tmp_path / "people.keypoints.json").read_bytes()
    assert main(argv) == 2
    assert "people.pose.png already exist; pass --force to overwrite" in capsys.readouterr().err
    (tmp_path / "people.pose.png").unlink()
    assert main(argv) == 2
    assert "people.keypoints.json already exists; pass --force to overwrite" in capsys.readouterr().err
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


def test_pose_command_keypoints_are_predict_keypoints_of_the_image_file(pose_folder, image_file, tmp_path):
    assert main(pose_argv(image_file, pose_folder, tmp_path, "20,10,50,90")) == 0
    record = json.loads((tmp_path / "people.keypoints.json").read_text())
    got = torch.tensor([[kp["x"], kp["y"]] for kp in record["people"][0]["keypoints"]])
    model = timm.create_model(f"local-dir:{pose_folder}", pretrained=True)
    with Image.open(image_file) as pil:
        expected, _ = predict_keypoints(model, pil, [[20, 10, 50, 90]])
    assert torch.allclose(got, expected[0], atol=0.006)  # the JSON rounds to 2 decimals


def test_pose_command_refuses_a_box_outside_the_image(pose_folder, image_file, tmp_path, capsys):
    argv = pose_argv(image_file, pose_folder, tmp_path, "900,900,10,10")
    assert main(argv) == 2
    assert "0% of its area inside the 160x120 (WxH) image" in capsys.readouterr().err
    assert list(tmp_path.glob("people.*.*")) == []  # neither people.keypoints.json nor people.pose.png


def test_pose_help_states_the_threshold_default(capsys):
    with pytest.raises(SystemExit):
        main(["pose", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "not drawn in the overlay; the JSON keeps them all (default: 0.3)" in help_text
