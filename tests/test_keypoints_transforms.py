"""Top-down transforms: box -> centre/scale, the crop affine, warping and mapping predictions back."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from hrnet_backbones.keypoints import (
    MSRAHeatmap,
    affine_transform_points,
    box_to_center_scale,
    crop_image,
    get_affine_transform,
    transform_preds,
    warp_affine,
)

FIXTURES = Path(__file__).parent / "fixtures" / "codecs"
DECODE_FILES = (
    "decode_realistic",
    "decode_clean",
    "decode_edge",
    "decode_targets_msra",
    "decode_targets_udp",
)
INPUT, HEATMAP = (192, 256), (48, 64)
IMAGE_TOL = 1e-3  # px, float32 affine


@cache
def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def official_affine(center, scale, rot, output_size, inv=False, udp=False) -> np.ndarray:
    """The official three-point construction, solved like cv2.getAffineTransform (float32 points)."""
    src_w = scale[0] * 200.0
    dst_w, dst_h = output_size
    if udp:
        src_w, dst_w, dst_h = src_w - 1, dst_w - 1, dst_h - 1
    rad = np.pi * rot / 180
    sn, cs = np.sin(rad), np.cos(rad)
    src_dir = np.array([src_w * 0.5 * sn, -src_w * 0.5 * cs])
    src = np.zeros((3, 2), np.float32)
    dst = np.zeros((3, 2), np.float32)
    src[0], src[1] = center, center + src_dir
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + [0, -dst_w * 0.5]
    for pts in (src, dst):
        d = pts[0] - pts[1]
        pts[2] = pts[1] + np.array([-d[1], d[0]], np.float32)
    a, b = (dst, src) if inv else (src, dst)
    system = np.zeros((6, 6))
    system[0::2, 0:2], system[0::2, 2] = a, 1
    system[1::2, 3:5], system[1::2, 5] = a, 1
    return np.linalg.solve(system, b.astype(np.float64).reshape(6)).reshape(2, 3)


# ---------------------------------------------------------------------------------------------------------
# Back to the original image
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DECODE_FILES)
@pytest.mark.parametrize(
    ("coords", "expected", "udp"),
    [
        ("quarter_coords_hm", "quarter_preds_img", False),
        ("argmax_coords", "argmax_preds_img", False),
        ("dark_coords_hm", "dark_preds_img_hrnet_affine", False),
        ("dark_coords_hm", "dark_preds_img_darkpose_affine", True),
    ],
)
def test_transform_preds_matches_the_official_image_coordinates(name, coords, expected, udp):
    ref = load(name)
    preds = transform_preds(ref[coords], ref["center"], ref["scale"], HEATMAP, udp=udp)
    np.testing.assert_allclose(preds, ref[expected], rtol=0, atol=IMAGE_TOL)


def test_input_space_keypoints_map_to_the_same_image_points_as_heatmap_coordinates():
    ref = load("decode_realistic")
    keypoints, _ = MSRAHeatmap(INPUT, HEATMAP).decode(ref["heatmaps"])
    preds = transform_preds(keypoints, ref["center"], ref["scale"], INPUT)
    np.testing.assert_allclose(preds, ref["quarter_preds_img"], rtol=0, atol=IMAGE_TOL)


def test_transform_preds_keeps_tensors_on_their_dtype():
    ref = load("decode_clean")
    coords = torch.from_numpy(ref["quarter_coords_hm"])
    preds = transform_preds(coords, torch.from_numpy(ref["center"]), torch.from_numpy(ref["scale"]), HEATMAP)
    assert isinstance(preds, torch.Tensor) and preds.dtype == torch.float32
    np.testing.assert_allclose(preds.numpy(), ref["quarter_preds_img"], atol=IMAGE_TOL)


def test_transform_preds_rejects_a_box_count_that_differs_from_the_instances():
    ref = load("decode_clean")
    with pytest.raises(ValueError, match="one box per instance"):
        transform_preds(ref["quarter_coords_hm"], ref["center"][:3], ref["scale"][:3], HEATMAP)


# ---------------------------------------------------------------------------------------------------------
# The affine itself
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("inv", [False, True])
def test_affine_equals_the_official_three_point_construction(inv, udp):
    rng = np.random.default_rng(11)
    center = rng.uniform(50, 600, size=(16, 2)).astype(np.float32)
    scale = rng.uniform(0.3, 3, size=(16, 2)).astype(np.float32)
    rot = rng.uniform(-60, 60, size=16)
    ours = get_affine_transform(center, scale, rot, INPUT, inv=inv, udp=udp)
    for i in range(16):
        expected = official_affine(center[i], scale[i], rot[i], INPUT, inv=inv, udp=udp)
        np.testing.assert_allclose(ours[i], expected, rtol=1e-4, atol=1e-3)


def test_affine_then_its_inverse_returns_the_points():
    rng = np.random.default_rng(12)
    center = torch.from_numpy(rng.uniform(50, 600, size=(8, 2)))
    scale = torch.from_numpy(rng.uniform(0.3, 3, size=(8, 2)))
    rot = torch.from_numpy(rng.uniform(-90, 90, size=8))
    points = torch.from_numpy(rng.uniform(0, 700, size=(8, 17, 2)))
    forward = get_affine_transform(center, scale, rot, INPUT)
    back = get_affine_transform(center, scale, rot, INPUT, inv=True)
    round_trip = affine_transform_points(affine_transform_points(points, forward), back)
    np.testing.assert_allclose(round_trip.numpy(), points.numpy(), rtol=0, atol=1e-9)


def test_affine_maps_the_box_centre_to_the_crop_centre_and_the_box_width_to_the_crop_width():
    center, scale = np.array([[300.0, 200.0]]), np.array([[0.9, 1.2]])
    trans = get_affine_transform(center, scale, 30.0, INPUT)
    np.testing.assert_allclose(affine_transform_points(center[:, None], trans)[0, 0], [96, 128], atol=1e-9)
    assert np.isclose(np.linalg.det(trans[0, :, :2]), (192 / 180.0) ** 2)


def test_affine_accepts_a_single_number_as_a_square_scale():
    square = get_affine_transform(np.array([[10.0, 20.0]]), np.array([1.5]), 0.0, INPUT)
    pair = get_affine_transform(np.array([[10.0, 20.0]]), np.array([[1.5, 1.5]]), 0.0, INPUT)
    np.testing.assert_array_equal(square, pair)


@pytest.mark.parametrize("udp", [False, True])
@pytest.mark.parametrize("inv", [False, True])
def test_one_box_affine_is_bit_identical_to_the_batched_matrices(inv, udp):
    """A data sample's one NumPy box takes a Python-float path; it must give the batched torch matrices."""
    rng = np.random.default_rng(14)
    for i in range(300):
        center = rng.uniform(-100, 700, size=2)
        scale = rng.uniform(0.05, 4, size=2)
        rot = 0.0 if i % 4 == 0 else float(rng.uniform(-90, 90))
        one = get_affine_transform(center, scale, rot, INPUT, inv=inv, udp=udp)
        batched = get_affine_transform(
            torch.from_numpy(center[None]),
            torch.from_numpy(scale[None]),
            torch.tensor([rot], dtype=torch.float64),
            INPUT,
            inv=inv,
            udp=udp,
        )
        assert isinstance(one, np.ndarray) and one.shape == (2, 3) and one.dtype == np.float64
        np.testing.assert_array_equal(one, batched[0].numpy())
    one = get_affine_transform(
        center.astype(np.float32), scale.astype(np.float32), rot, INPUT, inv=inv, udp=udp
    )
    batched = get_affine_transform(
        center[None].astype(np.float32), scale[None].astype(np.float32), rot, INPUT, inv=inv, udp=udp
    )
    assert one.dtype == np.float32
    np.testing.assert_array_equal(one, batched[0])


# ---------------------------------------------------------------------------------------------------------
# Boxes
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box", [[10.0, 20.0, 300.0, 100.0], [5.0, 5.0, 40.0, 400.0], [0.0, 0.0, 75.0, 100.0]]
)
def test_box_to_center_scale_grows_the_box_to_the_model_aspect_ratio_without_stretching(box):
    center, scale = box_to_center_scale(np.array([box]), aspect_ratio=0.75, padding=1.25)
    x, y, w, h = box
    np.testing.assert_allclose(center[0], [x + w / 2, y + h / 2])
    sw, sh = scale[0] * 200 / 1.25
    assert np.isclose(sw / sh, 0.75)
    assert sw >= w - 1e-9 and sh >= h - 1e-9
    assert np.isclose(sw, w) or np.isclose(sh, h)  # grown along one axis only


def test_box_to_center_scale_in_pixels_with_pixel_std_one():
    _, scale = box_to_center_scale(torch.tensor([[0.0, 0.0, 60.0, 100.0]]), 0.75, padding=1.0, pixel_std=1.0)
    np.testing.assert_allclose(scale.numpy(), [[75.0, 100.0]], rtol=1e-7)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_box_to_center_scale_computes_numpy_as_torch_does(dtype):
    rng = np.random.default_rng(15)
    boxes = rng.uniform(0, 400, size=(64, 4)).astype(dtype)
    boxes[::3, 3] = boxes[::3, 2] / 0.75  # exactly the aspect ratio: neither branch grows the box
    for box in (boxes, boxes[5]):
        center, scale = box_to_center_scale(box, 0.75)
        t_center, t_scale = box_to_center_scale(torch.from_numpy(box), 0.75)
        assert isinstance(center, np.ndarray) and center.dtype == t_center.numpy().dtype
        assert center.shape == scale.shape == box.shape[:-1] + (2,)
        np.testing.assert_array_equal(center, t_center.numpy())
        np.testing.assert_array_equal(scale, t_scale.numpy())


def test_box_to_center_scale_rejects_bad_input():
    with pytest.raises(ValueError, match="aspect_ratio"):
        box_to_center_scale(np.zeros((1, 4)), aspect_ratio=0)
    with pytest.raises(ValueError, match="\\(\\.\\.\\., 4\\)"):
        box_to_center_scale(np.zeros((1, 3)), aspect_ratio=0.75)


# ---------------------------------------------------------------------------------------------------------
# Warping
# ---------------------------------------------------------------------------------------------------------


def bilinear_reference(image: np.ndarray, trans: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT 0) written out, without its 1/32-pixel rounding."""
    a, t = trans[:, :2], trans[:, 2]
    inv_a = np.linalg.inv(a)
    c, h, w = image.shape
    out = np.zeros((c, out_h, out_w))
    for yo in range(out_h):
        for xo in range(out_w):
            sx, sy = inv_a @ (np.array([xo, yo]) - t)
            x0, y0 = int(np.floor(sx)), int(np.floor(sy))
            fx, fy = sx - x0, sy - y0
            for dy, wy in ((0, 1 - fy), (1, fy)):
                for dx, wx in ((0, 1 - fx), (1, fx)):
                    yy, xx = y0 + dy, x0 + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        out[:, yo, xo] += wy * wx * image[:, yy, xx]
    return out


def test_warp_affine_is_bilinear_with_pixel_centres_at_integers_and_zero_outside():
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 1, size=(2, 13, 17))
    trans = get_affine_transform(np.array([[8.0, 6.0]]), np.array([[0.07, 0.09]]), 25.0, (11, 9))
    ours = warp_affine(image[None], trans, (11, 9))[0]
    np.testing.assert_allclose(ours, bilinear_reference(image, trans[0], 11, 9), atol=1e-5)


@pytest.mark.parametrize(
    "center, rot",
    [((40.0, 30.0), 0.0), ((3.0, 55.0), 40.0), ((78.0, 2.0), -70.0), ((200.0, 200.0), 10.0)],
    ids=["inside", "left-edge", "corner", "outside"],
)
def test_warp_affine_of_a_small_crop_of_a_large_image_equals_the_bilinear_reference(center, rot):
    """Only the sampled part of the image is converted and sampled: the same values as the whole image gives."""
    rng = np.random.default_rng(11)
    image = rng.uniform(0, 255, size=(3, 60, 80)).round().astype(np.uint8)
    trans = get_affine_transform(np.array([center]), np.array([[0.08, 0.1]]), rot, (12, 16))
    ours = warp_affine(torch.from_numpy(image)[None], torch.from_numpy(trans), (12, 16), dtype=torch.float64)
    assert ours.dtype == torch.float64
    expected = bilinear_reference(image.astype(np.float64), trans[0], 12, 16)
    np.testing.assert_allclose(ours[0].numpy(), expected, atol=2e-3)  # float32 sampling positions
    if center == (200.0, 200.0):
        assert not ours.any()


def test_single_bright_pixel_lands_where_the_affine_sends_it():
    image = torch.zeros(1, 1, 40, 50)
    image[0, 0, 17, 23] = 1.0
    # Scale 2 plus a translation: the pixel (23, 17) goes to (2 * 23 - 5, 2 * 17 + 3) = (41, 37).
    trans = torch.tensor([[[2.0, 0.0, -5.0], [0.0, 2.0, 3.0]]])
    out = warp_affine(image, trans, (80, 60))[0, 0]
    y, x = divmod(int(out.argmax()), 80)
    assert (x, y) == (41, 37) and out[37, 41] == 1.0
    # Half-way to the next output pixel is half-way between two input pixels.
    assert out[37, 42] == pytest.approx(0.5) and out[38, 41] == pytest.approx(0.5)


def test_crop_image_puts_the_box_centre_at_the_crop_centre_for_any_rotation():
    image = torch.zeros(1, 3, 300, 400)
    image[0, :, 120, 210] = 1.0
    for rot in (0.0, 30.0, -75.0):
        crop = crop_image(image, torch.tensor([[210.0, 120.0]]), torch.tensor([[0.6, 0.8]]), INPUT, rot=rot)
        assert crop.shape == (1, 3, 256, 192)
        # float32 sampling grid: positions are good to ~1e-5 px
        np.testing.assert_allclose(crop[0, :, 128, 96].numpy(), 1.0, rtol=0, atol=1e-4)


def test_warp_affine_keeps_uint8_images_uint8_and_numpy_in_numpy_out():
    image = np.full((3, 20, 30), 200, np.uint8)
    trans = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    out = warp_affine(image, trans, (30, 20))
    assert isinstance(out, np.ndarray) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, image)


def test_warp_affine_rejects_a_trans_per_image_mismatch():
    with pytest.raises(ValueError, match="trans must be"):
        warp_affine(torch.zeros(3, 1, 8, 8), torch.zeros(2, 2, 3), (8, 8))


@pytest.mark.parametrize("udp", [False, True])
def test_transform_preds_inverts_the_crop_affine_with_and_without_rotation(udp):
    rng = np.random.default_rng(13)
    center = rng.uniform(100, 500, size=(6, 2))
    scale = rng.uniform(0.5, 2, size=(6, 2))
    points = rng.uniform(0, 600, size=(6, 17, 2))
    for rot in (0.0, rng.uniform(-45, 45, size=6)):
        crop = affine_transform_points(points, get_affine_transform(center, scale, rot, INPUT, udp=udp))
        back = transform_preds(crop, center, scale, INPUT, rot=rot, udp=udp)
        np.testing.assert_allclose(back, points, rtol=0, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.float64])
def test_warp_affine_numpy_geometry_equals_the_torch_geometry(dtype):
    """On the CPU the inverse, the sampled region and the grid are computed in NumPy; the torch code (used on
    other devices, and here for a trans that requires grad) must give the same bits."""
    rng = np.random.default_rng(16)
    images = torch.from_numpy(rng.uniform(0, 255, size=(4, 3, 90, 120))).round().to(dtype)
    center = rng.uniform(-20, 140, size=(4, 2))
    scale = rng.uniform(0.1, 0.8, size=(4, 2))
    rot = rng.uniform(-90, 90, size=4)
    trans = torch.from_numpy(get_affine_transform(center, scale, rot, (24, 32), udp=True))
    torch_path = warp_affine(images, trans.clone().requires_grad_(True), (24, 32), dtype=torch.float32)
    numpy_path = warp_affine(images, trans, (24, 32), dtype=torch.float32)
    # the same bits here; elsewhere a sampling position may round to the neighbouring float32 (< 0.01 of 255)
    np.testing.assert_allclose(numpy_path.numpy(), torch_path.detach().numpy(), rtol=0, atol=0.01)
    one = warp_affine(images[1].numpy(), trans[1].numpy(), (24, 32))  # NumPy in, NumPy out, one image
    assert isinstance(one, np.ndarray) and one.dtype == images.numpy().dtype
    np.testing.assert_array_equal(one, warp_affine(images[1], trans[1], (24, 32)).numpy())


def test_warp_affine_reads_a_read_only_numpy_image_without_copying_it_whole():
    image = np.random.default_rng(17).integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    image.flags.writeable = False  # as Pillow's arrays are
    trans = get_affine_transform(np.array([20.0, 25.0]), np.array([0.05, 0.05]), 30.0, (8, 8))
    out = warp_affine(image.transpose(2, 0, 1), trans, (8, 8), dtype=torch.float32)
    expected = warp_affine(torch.from_numpy(image.copy()).permute(2, 0, 1), torch.from_numpy(trans), (8, 8))
    np.testing.assert_array_equal(out.round().astype(np.uint8), expected.numpy())


def test_invert_affine_gives_the_same_bits_in_numpy_and_torch():
    from hrnet_backbones.keypoints.transforms import _invert_affine

    rng = np.random.default_rng(18)
    trans = rng.normal(size=(50, 2, 3)) * [[[1, 1, 100]]]
    inv = _invert_affine(trans)
    np.testing.assert_array_equal(inv, _invert_affine(torch.from_numpy(trans)).numpy())
    for one, expected in zip(trans[:10], inv):  # one matrix takes Python floats
        np.testing.assert_array_equal(_invert_affine(one), expected)
    np.testing.assert_allclose(
        inv[:, :, :2] @ trans[:, :, :2], np.broadcast_to(np.eye(2), (50, 2, 2)), atol=1e-9
    )
