"""Heatmap codecs against the reference fixtures (official HRNet / DarkPose, mmpose, HRNet-Facial) and the
behaviours the fixtures do not pin down. Fixture meanings: tests/fixtures/codecs/README.md."""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch

from hrnet_backbones.keypoints import (
    MSRAHeatmap,
    UDPHeatmap,
    decode_heatmaps,
    gaussian_blur,
    gaussian_kernel1d,
    get_heatmap_maximum,
    refine_dark,
    refine_dark_udp,
    refine_quarter_offset,
)

FIXTURES = Path(__file__).parent / "fixtures" / "codecs"
INPUT, HEATMAP, SIGMA = (192, 256), (48, 64), 2.0
W, H = HEATMAP
DECODE_FILES = (
    "decode_realistic",
    "decode_clean",
    "decode_edge",
    "decode_targets_msra",
    "decode_targets_udp",
)
STRIDE = 4.0  # 192 / 48 = 256 / 64
DARK_TOL = 1e-5  # heatmap px: DarkPose float64 blur vs mmpose float32 blur differ by up to 3.9e-6
UDP_TOL = 2e-5  # heatmap px: mmpose's float32 log-derivatives at the edge-padded border (1.3e-5 seen)


@cache
def load(name: str) -> dict[str, np.ndarray]:
    with np.load(FIXTURES / f"{name}.npz", allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def detected(fixture: dict[str, np.ndarray]) -> np.ndarray:
    """Keypoints whose heatmap maximum is > 0: where the official (0, 0) and mmpose (-1, -1) rules agree."""
    return fixture["maxvals"][..., 0] > 0


def argmax_xy(fixture: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    coords = fixture["argmax_coords"]
    return coords[..., 0], coords[..., 1]


# ---------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("convention", ["official", "mmpose"])
def test_msra_targets_are_bit_identical_to_official_generate_target(convention):
    ref = load("targets_msra")
    heatmaps, weights = MSRAHeatmap(INPUT, HEATMAP, SIGMA, convention=convention).encode(
        ref["keypoints"], ref["visible"]
    )
    np.testing.assert_array_equal(heatmaps, ref["target"])
    np.testing.assert_array_equal(weights, ref["target_weight"][..., 0])


def test_msra_joint_weights_multiply_the_target_weight_like_the_official_option():
    ref = load("targets_msra")
    _, weights = MSRAHeatmap(INPUT, HEATMAP, SIGMA).encode(
        ref["keypoints"], ref["visible"], joint_weights=ref["joints_weight"]
    )
    np.testing.assert_array_equal(weights, ref["target_weight_joints_weight"][..., 0])


def test_msra_integer_centre_truncates_toward_zero():
    ref = load("targets_msra")
    heatmaps, weights = MSRAHeatmap(INPUT, HEATMAP, SIGMA).encode(ref["keypoints"], ref["visible"])
    drawn = (weights > 0) & (heatmaps.max(axis=(2, 3)) == 1.0)
    peak = heatmaps.reshape(*heatmaps.shape[:2], -1).argmax(-1)
    np.testing.assert_array_equal(peak[drawn] % W, ref["mu_int"][..., 0][drawn])
    np.testing.assert_array_equal(peak[drawn] // W, ref["mu_int"][..., 1][drawn])
    # Instance 1, keypoint 4: x / 4 + 0.5 = 0.375 -> 0 (floor of x / 4 would give -1)
    assert ref["mu_int"][1, 4, 0] == 0 and peak[1, 4] % W == 0


def test_msra_window_ending_on_column_zero_keeps_weight_one_with_an_empty_map():
    # x_hm = -7.5: mu = int(-7) and the window [-13, -1] ends just left of the map (official quirk).
    codec = MSRAHeatmap(INPUT, HEATMAP, SIGMA)
    heatmaps, weights = codec.encode(torch.tensor([[[-30.0, 80.0], [-34.0, 80.0]]]))
    assert weights[0, 0] == 1 and heatmaps[0, 0].abs().max() == 0
    assert weights[0, 1] == 0  # x_hm = -8.5 -> mu = -8, window ends at column -1 < 0


def test_invisible_keypoints_get_zero_weight_and_an_empty_map():
    codec = MSRAHeatmap(INPUT, HEATMAP, SIGMA)
    kp = torch.tensor([[[96.0, 128.0], [40.0, 40.0]]])
    heatmaps, weights = codec.encode(kp, torch.tensor([[0.0, 1.0]]))
    assert weights.tolist() == [[0.0, 1.0]]
    assert heatmaps[0, 0].abs().max() == 0 and heatmaps[0, 1].max() == 1


@pytest.mark.parametrize("codec", [MSRAHeatmap(INPUT, HEATMAP), UDPHeatmap(INPUT, HEATMAP)], ids=repr)
def test_non_finite_keypoints_are_treated_as_invisible(codec):
    kp = torch.tensor([[[float("nan"), 10.0], [50.0, float("inf")], [60.0, 70.0]]])
    heatmaps, weights = codec.encode(kp)
    assert weights.tolist() == [[0.0, 0.0, 1.0]]
    assert heatmaps[0, :2].abs().max() == 0 and heatmaps[0, 2].max() > 0.5


@pytest.mark.parametrize("convention", ["official", "mmpose"])
def test_dark_targets_follow_the_reference_formula_on_and_off_the_map(convention):
    """The in-bounds test at its exact boundaries (int() truncation or float comparison), far and non-finite
    keypoints, and the maps: exp(-((x - mu_x)^2 + (y - mu_y)^2) / (2 sigma^2)) in float32, as DarkPose."""
    codec = MSRAHeatmap(INPUT, HEATMAP, SIGMA, unbiased=True, convention=convention)
    stride = INPUT[0] / W
    r = 3 * SIGMA
    edges = [-r - 2, -r - 1.5, -r - 1, -r - 0.5, -7.5, 0.0, W - 1, W + r - 0.5, W + r, W + r + 0.5, 1e6]
    hm_x = np.array([e + d for e in edges for d in (-1e-3, 0.0, 1e-3)], np.float32)
    kp = np.stack((hm_x * stride, np.full_like(hm_x, H / 2) * stride), -1)
    kp = np.concatenate((kp, kp[:, ::-1] * [H / W, W / H], [[np.nan, 5.0], [5.0, np.inf], [-np.inf, 5.0]]))
    kp = kp.astype(np.float32)[None]
    heatmaps, weights = codec.encode(torch.from_numpy(kp))
    mu = torch.from_numpy(kp[0]) / torch.tensor((stride, stride), dtype=torch.float32)
    for m, (mx, my) in enumerate(mu.tolist()):
        if not (math.isfinite(mx) and math.isfinite(my)):
            on = False
        elif convention == "official":
            on = not (int(mx - r) >= W or int(my - r) >= H or int(mx + r + 1) < 0 or int(my + r + 1) < 0)
        else:
            on = not (mx - r >= W or my - r >= H or mx + r + 1 < 0 or my + r + 1 < 0)
        assert weights[0, m] == float(on), (m, mx, my)
        if on:
            d2 = (torch.arange(H)[:, None] - mu[m, 1]) ** 2 + (torch.arange(W)[None, :] - mu[m, 0]) ** 2
            expected = torch.exp(-d2 / torch.tensor(2 * SIGMA**2, dtype=torch.float32).item())
            assert torch.equal(heatmaps[0, m], expected), m
        else:
            assert not heatmaps[0, m].any(), m
    assert 0 < weights.sum() < weights.numel()


@pytest.mark.parametrize("convention", ["official", "mmpose"])
def test_udp_targets_are_bit_identical_to_mmpose(convention):
    ref = load("targets_udp")
    heatmaps, weights = UDPHeatmap(INPUT, HEATMAP, SIGMA, convention=convention).encode(
        ref["keypoints"], ref["visible"]
    )
    np.testing.assert_array_equal(heatmaps, ref["target"])
    np.testing.assert_array_equal(weights, ref["target_weight"])


def test_udp_scale_factor_is_mmpose_float32_one():
    ref = load("targets_udp")
    assert UDPHeatmap(INPUT, HEATMAP).scale_factor == tuple(float(v) for v in ref["udp_scale_factor"])


@pytest.mark.parametrize(
    ("convention", "target", "weight"),
    [
        ("official", "target_darkpose", "target_weight_darkpose"),
        ("mmpose", "target_mmpose_unbiased", "target_weight_mmpose_unbiased"),
    ],
)
def test_dark_targets_match_their_reference_within_two_ulps(convention, target, weight):
    ref = load("targets_dark")
    heatmaps, weights = MSRAHeatmap(INPUT, HEATMAP, SIGMA, unbiased=True, convention=convention).encode(
        ref["keypoints"], ref["visible"]
    )
    np.testing.assert_array_equal(weights, ref[weight].reshape(weights.shape))
    np.testing.assert_array_max_ulp(heatmaps, ref[target], maxulp=2)


def test_dark_official_target_matches_mmpose_except_where_truncation_and_float_bounds_disagree():
    ref = load("targets_dark")
    mu = ref["keypoints_hm"].astype(np.float64)
    r = 3 * SIGMA
    off_trunc = (np.trunc(mu - r) >= [W, H]).any(-1) | (np.trunc(mu + r + 1) < 0).any(-1)
    off_float = (mu - r >= [W, H]).any(-1) | (mu + r + 1 < 0).any(-1)
    agree = off_trunc == off_float
    assert (~agree).sum() == 1  # the x_hm = -7.5 keypoint, instance 1 k9
    heatmaps, weights = MSRAHeatmap(INPUT, HEATMAP, SIGMA, unbiased=True).encode(
        ref["keypoints"], ref["visible"]
    )
    np.testing.assert_array_equal(weights[agree], ref["target_weight_mmpose_unbiased"][agree])
    np.testing.assert_array_max_ulp(heatmaps[agree], ref["target_mmpose_unbiased"][agree], maxulp=2)


CODECS = {
    "msra": lambda: MSRAHeatmap(INPUT, HEATMAP),
    "dark": lambda: MSRAHeatmap(INPUT, HEATMAP, unbiased=True),
    "udp": lambda: UDPHeatmap(INPUT, HEATMAP),
}


@pytest.mark.parametrize("name", CODECS)
def test_batched_encode_equals_encoding_one_instance_at_a_time(name):
    ref = load("targets_msra")
    codec = CODECS[name]()
    heatmaps, weights = codec.encode(ref["keypoints"], ref["visible"])
    for n in range(len(ref["keypoints"])):
        one_h, one_w = codec.encode(ref["keypoints"][n : n + 1], ref["visible"][n : n + 1])
        np.testing.assert_array_equal(one_h[0], heatmaps[n])
        np.testing.assert_array_equal(one_w[0], weights[n])


@pytest.mark.parametrize("name", CODECS)
def test_encode_returns_numpy_for_numpy_and_tensors_for_tensors(name):
    ref = load("targets_msra")
    codec = CODECS[name]()
    h_np, w_np = codec.encode(ref["keypoints"], ref["visible"])
    h_t, w_t = codec.encode(torch.from_numpy(ref["keypoints"]), torch.from_numpy(ref["visible"]))
    assert isinstance(h_np, np.ndarray) and isinstance(w_np, np.ndarray)
    assert isinstance(h_t, torch.Tensor) and h_t.dtype == torch.float32 and w_t.dtype == torch.float32
    np.testing.assert_array_equal(h_t.numpy(), h_np)


def test_encode_follows_float64_keypoints():
    heatmaps, weights = MSRAHeatmap(INPUT, HEATMAP).encode(torch.full((1, 2, 2), 60.0, dtype=torch.float64))
    assert heatmaps.dtype == torch.float64 and weights.dtype == torch.float64


def test_encode_without_visibility_draws_every_keypoint():
    kp = load("targets_msra")["keypoints"][2:3]  # instance 2: all inside the crop
    _, weights = MSRAHeatmap(INPUT, HEATMAP).encode(kp)
    assert (weights == 1).all()


@pytest.mark.parametrize(
    ("keypoints", "visible", "kwargs", "message"),
    [
        (np.zeros((17, 2)), None, {}, "shape \\(N, K, 2\\)"),
        (np.zeros((2, 17, 1)), None, {}, "shape \\(N, K, 2\\)"),
        (np.zeros((2, 17, 2)), np.ones((2, 16)), {}, "visible must have shape"),
        (np.zeros((2, 17, 2)), None, {"joint_weights": np.ones(16)}, "joint_weights must have shape"),
    ],
)
def test_encode_rejects_mismatched_shapes_with_a_clear_error(keypoints, visible, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MSRAHeatmap(INPUT, HEATMAP).encode(keypoints, visible, **kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": (192,), "heatmap_size": HEATMAP}, "input_size"),
        ({"input_size": INPUT, "heatmap_size": (48.5, 64)}, "heatmap_size"),
        ({"input_size": INPUT, "heatmap_size": (0, 64)}, "heatmap_size"),
        ({"input_size": INPUT, "heatmap_size": HEATMAP, "sigma": 0}, "sigma"),
        ({"input_size": INPUT, "heatmap_size": HEATMAP, "sigma": float("nan")}, "sigma"),
        ({"input_size": INPUT, "heatmap_size": HEATMAP, "blur_kernel_size": 10}, "blur_kernel_size"),
        ({"input_size": INPUT, "heatmap_size": HEATMAP, "convention": "mmcv"}, "convention"),
    ],
)
def test_codec_constructors_reject_bad_arguments(kwargs, message):
    for cls in (MSRAHeatmap, UDPHeatmap):
        with pytest.raises(ValueError, match=message):
            cls(**kwargs)


# ---------------------------------------------------------------------------------------------------------
# Decoding: argmax and quarter offset (exact)
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DECODE_FILES)
def test_argmax_matches_official_get_max_preds(name):
    ref = load(name)
    coords, maxvals = get_heatmap_maximum(ref["heatmaps"])
    np.testing.assert_array_equal(coords, ref["argmax_coords"])
    np.testing.assert_array_equal(maxvals, ref["maxvals"][..., 0])


def test_argmax_ties_go_to_the_first_pixel_in_row_major_order():
    ref = load("decode_edge")  # k10 has equal peaks at (10, 10) and (30, 50)
    coords, _ = get_heatmap_maximum(ref["heatmaps"][:1])
    assert coords[0, 10].tolist() == [10.0, 10.0]


def test_argmax_invalid_value_marks_nonpositive_maxima():
    ref = load("decode_edge")
    coords, maxvals = get_heatmap_maximum(ref["heatmaps"], invalid_value=-1.0)
    assert (maxvals <= 0).sum() >= 2  # all-zero and all-negative maps
    np.testing.assert_array_equal(coords[maxvals <= 0], -1.0)
    np.testing.assert_array_equal(coords[maxvals > 0], ref["argmax_coords"][maxvals > 0])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_quarter_offset_matches_official_get_final_preds(name):
    ref = load(name)
    coords, scores = decode_heatmaps(ref["heatmaps"], "quarter")
    np.testing.assert_array_equal(coords, ref["quarter_coords_hm"])
    np.testing.assert_array_equal(scores, ref["maxvals"][..., 0])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_quarter_offset_matches_mmpose_where_the_border_rules_agree(name):
    ref = load(name)
    x, y = argmax_xy(ref)
    both = (x > 1) & (x < W - 1) & (y > 1) & (y < H - 1)
    mm_x = (x > 1) & (x < W - 1) & (y > 0) & (y < H)
    mm_y = (y > 1) & (y < H - 1) & (x > 0) & (x < W)
    agree = detected(ref) & (both | (~mm_x & ~mm_y))
    keypoints, scores = MSRAHeatmap(INPUT, HEATMAP).decode(ref["heatmaps"])
    np.testing.assert_array_equal(keypoints[agree], ref["mmpose_msra_kpts_input"][agree])
    np.testing.assert_array_equal(scores, ref["mmpose_msra_scores"])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_mmpose_convention_reproduces_mmpose_msra_decode_exactly(name):
    ref = load(name)
    keypoints, scores = MSRAHeatmap(INPUT, HEATMAP, convention="mmpose").decode(ref["heatmaps"])
    np.testing.assert_array_equal(keypoints, ref["mmpose_msra_kpts_input"])
    np.testing.assert_array_equal(scores, ref["mmpose_msra_scores"])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_quarter_offset_matches_hrnet_facial_after_the_one_and_a_half_pixel_shift(name):
    ref = load(name)
    x, y = argmax_xy(ref)
    official = (x > 1) & (x < W - 1) & (y > 1) & (y < H - 1)
    facial = (x > 0) & (x < W - 1) & (y > 0) & (y < H - 1)  # its 1-based test, 1 < px < W
    agree = detected(ref) & (official == facial)
    coords, _ = decode_heatmaps(ref["heatmaps"], "quarter")
    np.testing.assert_array_equal(coords[agree], ref["facial_hrnet_coords_hm_1based"][agree] - 1.5)


def test_quarter_offset_on_integer_centred_targets_equals_argmax():
    ref = load("decode_targets_msra")
    coords, _ = decode_heatmaps(ref["heatmaps"], "quarter")
    np.testing.assert_array_equal(coords, ref["argmax_coords"])


# ---------------------------------------------------------------------------------------------------------
# Decoding: DARK and UDP
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", DECODE_FILES)
def test_dark_matches_official_darkpose(name):
    ref = load(name)
    coords, scores = decode_heatmaps(ref["heatmaps"], "dark")
    np.testing.assert_allclose(coords, ref["dark_coords_hm"], rtol=0, atol=DARK_TOL)
    np.testing.assert_array_equal(scores, ref["maxvals"][..., 0])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_dark_decode_matches_mmpose_unbiased_where_the_maximum_is_positive(name):
    ref = load(name)
    keypoints, scores = MSRAHeatmap(INPUT, HEATMAP, unbiased=True).decode(ref["heatmaps"])
    ok = detected(ref)
    np.testing.assert_allclose(
        keypoints[ok], ref["mmpose_dark_kpts_input"][ok], rtol=0, atol=DARK_TOL * STRIDE
    )
    np.testing.assert_array_equal(scores, ref["mmpose_dark_scores"])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_mmpose_convention_reproduces_mmpose_dark_decode_including_undetected(name):
    ref = load(name)
    keypoints, _ = MSRAHeatmap(INPUT, HEATMAP, unbiased=True, convention="mmpose").decode(ref["heatmaps"])
    np.testing.assert_allclose(keypoints, ref["mmpose_dark_kpts_input"], rtol=0, atol=DARK_TOL * STRIDE)


@pytest.mark.parametrize("name", DECODE_FILES)
def test_udp_refinement_matches_mmpose_where_the_maximum_is_positive(name):
    ref = load(name)
    coords, scores = decode_heatmaps(ref["heatmaps"], "udp")
    ok = detected(ref)
    np.testing.assert_allclose(coords[ok], ref["udp_coords_hm"][ok], rtol=0, atol=UDP_TOL)
    np.testing.assert_array_equal(scores, ref["udp_scores"])


@pytest.mark.parametrize("name", DECODE_FILES)
def test_udp_mmpose_convention_returns_mmpose_input_coordinates(name):
    ref = load(name)
    keypoints, _ = UDPHeatmap(INPUT, HEATMAP, convention="mmpose").decode(ref["heatmaps"])
    ok = detected(ref)
    tol = UDP_TOL * INPUT[0] / (W - 1)
    np.testing.assert_allclose(keypoints[ok], ref["udp_kpts_input"][ok], rtol=0, atol=tol)


def test_udp_official_decode_inverts_the_encoding_scale():
    ref = load("decode_targets_udp")
    codec = UDPHeatmap(INPUT, HEATMAP)
    keypoints, _ = codec.decode(ref["heatmaps"])
    coords, _ = decode_heatmaps(ref["heatmaps"], "udp")
    np.testing.assert_allclose(keypoints, coords * np.float32(codec.scale_factor), rtol=1e-7)
    ok = ref["valid"] & (ref["gt_hm"] > 8).all(-1) & (ref["gt_hm"] < [W - 9, H - 9]).all(-1)
    assert ok.sum() >= 10
    np.testing.assert_allclose(keypoints[ok], ref["gt_keypoints_input"][ok], atol=0.01)


def test_udp_leaves_undetectable_keypoints_at_the_origin_instead_of_nan():
    ref = load("decode_edge")  # k0 all zero (mmpose: NaN), k1 all negative
    coords, scores = decode_heatmaps(ref["heatmaps"], "udp")
    assert np.isnan(ref["udp_coords_hm"][0, 0]).all()
    np.testing.assert_array_equal(coords[:, :2], 0.0)
    assert (scores[:, :2] <= 0).all()


@pytest.mark.parametrize(("refine", "key"), [(None, "argmax_coords"), ("quarter", "quarter_coords_hm")])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_heatmaps_are_upcast_and_decoded_in_float32(dtype, refine, key):
    ref = load("decode_clean")
    half = torch.from_numpy(ref["heatmaps"]).to(dtype)
    coords, scores = decode_heatmaps(half, refine)
    expected, _ = decode_heatmaps(half.float(), refine)
    assert coords.dtype == torch.float32 and scores.dtype == torch.float32
    assert torch.equal(coords, expected)


@pytest.mark.parametrize("refine", ["dark", "udp"])
def test_half_precision_sub_pixel_decoding_stays_close_to_float32(refine):
    ref = load("decode_clean")
    coords, _ = decode_heatmaps(torch.from_numpy(ref["heatmaps"]).half(), refine)
    expected, _ = decode_heatmaps(ref["heatmaps"], refine)
    np.testing.assert_allclose(coords.numpy(), expected, atol=0.05)


def test_decode_keeps_float64():
    coords, scores = decode_heatmaps(torch.from_numpy(load("decode_clean")["heatmaps"]).double(), "dark")
    assert coords.dtype == torch.float64 and scores.dtype == torch.float64


@pytest.mark.parametrize("refine", [None, "quarter", "dark", "udp"])
def test_decode_accepts_numpy_and_returns_numpy(refine):
    ref = load("decode_realistic")
    coords_np, scores_np = decode_heatmaps(ref["heatmaps"], refine)
    coords_t, scores_t = decode_heatmaps(torch.from_numpy(ref["heatmaps"]), refine)
    assert isinstance(coords_np, np.ndarray) and isinstance(scores_np, np.ndarray)
    np.testing.assert_array_equal(coords_np, coords_t.numpy())


def test_decode_does_not_modify_its_input():
    heatmaps = torch.from_numpy(load("decode_realistic")["heatmaps"].copy())
    before = heatmaps.clone()
    for refine in (None, "quarter", "dark", "udp"):
        decode_heatmaps(heatmaps, refine)
    assert torch.equal(heatmaps, before)


@pytest.mark.parametrize(
    ("heatmaps", "kwargs", "message"),
    [
        (np.zeros((17, 64, 48), np.float32), {}, "shape \\(N, K, H, W\\)"),
        (np.zeros((1, 17, 64, 48), np.float32), {"refine": "taylor"}, "refine must be one of"),
        (np.zeros((1, 17, 64, 48), np.float32), {"convention": "mmcv"}, "convention"),
        (np.zeros((1, 17, 64, 48), np.float32), {"blur_kernel_size": 4}, "blur_kernel_size"),
    ],
)
def test_decode_heatmaps_rejects_bad_input(heatmaps, kwargs, message):
    with pytest.raises(ValueError, match=message):
        decode_heatmaps(heatmaps, **kwargs)


def test_codec_decode_rejects_heatmaps_of_another_size():
    with pytest.raises(ValueError, match="heatmap_size"):
        MSRAHeatmap(INPUT, HEATMAP).decode(np.zeros((1, 17, 48, 64), np.float32))


def test_refine_rejects_coordinates_for_other_instances():
    heatmaps = np.zeros((2, 17, 64, 48), np.float32)
    with pytest.raises(ValueError, match="disagree on \\(N, K\\)"):
        refine_dark(heatmaps, np.zeros((2, 16, 2), np.float32))


def _interior_keypoints(codec, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = codec.input_size
    margin = 4 * STRIDE + 2
    return rng.uniform([margin, margin], [w - margin, h - margin], size=(count, 17, 2)).astype(np.float32)


@pytest.mark.parametrize(
    ("codec", "refine"),
    [(MSRAHeatmap(INPUT, HEATMAP, unbiased=True), "dark"), (UDPHeatmap(INPUT, HEATMAP), "udp")],
    ids=["dark", "udp"],
)
def test_encode_decode_round_trip_is_within_five_hundredths_of_a_heatmap_pixel(codec, refine):
    keypoints = _interior_keypoints(codec, 8, seed=3)
    heatmaps, _ = codec.encode(keypoints)
    decoded, scores = codec.decode(heatmaps, refine=refine)
    error_hm = np.linalg.norm((decoded - keypoints) / STRIDE, axis=-1)
    assert error_hm.max() < 0.05
    assert (scores > 0.9).all()


def test_quarter_round_trip_of_integer_targets_is_exact():
    codec = MSRAHeatmap(INPUT, HEATMAP)
    keypoints = np.round(_interior_keypoints(codec, 2, seed=4) / STRIDE) * STRIDE
    decoded, _ = codec.decode(codec.encode(keypoints)[0])
    np.testing.assert_array_equal(decoded, keypoints)


# ---------------------------------------------------------------------------------------------------------
# The blur and the local-window shortcut
# ---------------------------------------------------------------------------------------------------------


def test_gaussian_kernel_of_size_eleven_has_sigma_two_and_unit_sum():
    g = gaussian_kernel1d(11).numpy()
    x = np.arange(11) - 5.0
    np.testing.assert_allclose(g, np.exp(-(x**2) / 8) / np.exp(-(x**2) / 8).sum(), rtol=1e-15)


@pytest.mark.parametrize("size", [3, 5])
def test_small_gaussian_kernels_are_opencv_fixed_binomial_ones(size):
    binomial = np.array([math.comb(size - 1, k) for k in range(size)], dtype=np.float64)
    np.testing.assert_array_equal(gaussian_kernel1d(size).numpy(), binomial / binomial.sum())


def _blur_reference(hm: np.ndarray, size: int) -> np.ndarray:
    """Zero-padded 2-D correlation with the outer-product kernel, rescaled to the original max (float64)."""
    g = gaussian_kernel1d(size).numpy()
    k2 = np.outer(g, g)
    r = size // 2
    n, k, h, w = hm.shape
    padded = np.zeros((n, k, h + 2 * r, w + 2 * r))
    padded[:, :, r:-r, r:-r] = hm
    out = np.zeros((n, k, h, w))
    for dy in range(size):
        for dx in range(size):
            out += k2[dy, dx] * padded[:, :, dy : dy + h, dx : dx + w]
    return out * (hm.max(axis=(2, 3), keepdims=True) / out.max(axis=(2, 3), keepdims=True))


def test_gaussian_blur_equals_zero_padded_2d_correlation_rescaled_to_the_original_max():
    hm = load("decode_realistic")["heatmaps"][:2]
    np.testing.assert_allclose(gaussian_blur(hm.astype(np.float64), 11), _blur_reference(hm, 11), atol=1e-12)


def _dark_reference(hm: np.ndarray, size: int = 11) -> np.ndarray:
    """DarkPose get_final_preds step by step on whole blurred maps (float64)."""
    coords, _ = get_heatmap_maximum(hm)
    lg = np.log(np.maximum(_blur_reference(hm, size), 1e-10))
    out = coords.astype(np.float64)
    for n, k in np.ndindex(*hm.shape[:2]):
        px, py = (int(v) for v in coords[n, k])
        if 1 < px < hm.shape[3] - 2 and 1 < py < hm.shape[2] - 2:
            m = lg[n, k]
            dx = 0.5 * (m[py, px + 1] - m[py, px - 1])
            dy = 0.5 * (m[py + 1, px] - m[py - 1, px])
            dxx = 0.25 * (m[py, px + 2] - 2 * m[py, px] + m[py, px - 2])
            dyy = 0.25 * (m[py + 2, px] - 2 * m[py, px] + m[py - 2, px])
            dxy = 0.25 * (m[py + 1, px + 1] - m[py - 1, px + 1] - m[py + 1, px - 1] + m[py - 1, px - 1])
            hess = np.array([[dxx, dxy], [dxy, dyy]])
            if np.linalg.det(hess) != 0:
                out[n, k] -= np.linalg.solve(hess, [dx, dy])
    return out


def _udp_reference(hm: np.ndarray, size: int = 11) -> np.ndarray:
    """mmpose refine_keypoints_dark_udp step by step on whole blurred maps (float64), detected keypoints only."""
    coords, maxvals = get_heatmap_maximum(hm)
    lg = np.log(np.clip(_blur_reference(hm, size), 1e-3, 50))
    lg = np.pad(lg, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    out = coords.astype(np.float64)
    for n, k in np.ndindex(*hm.shape[:2]):
        if maxvals[n, k] <= 0:
            continue
        x, y = (int(v) + 1 for v in coords[n, k])
        m = lg[n, k]
        dx = 0.5 * (m[y, x + 1] - m[y, x - 1])
        dy = 0.5 * (m[y + 1, x] - m[y - 1, x])
        dxx = m[y, x + 1] - 2 * m[y, x] + m[y, x - 1]
        dyy = m[y + 1, x] - 2 * m[y, x] + m[y - 1, x]
        dxy = 0.5 * (m[y + 1, x + 1] - m[y, x + 1] - m[y + 1, x] + 2 * m[y, x] - m[y, x - 1] - m[y - 1, x])
        dxy += 0.5 * m[y - 1, x - 1]
        hess = np.array([[dxx, dxy], [dxy, dyy]]) + np.finfo(np.float32).eps * np.eye(2)
        out[n, k] -= np.linalg.solve(hess, [dx, dy])
    return out


def _awkward_maps(seed: int) -> np.ndarray:
    """Maps where the reference's rescale and floors matter: negative backgrounds, tiny peaks, huge peaks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    maps = []
    for amp, background in [(1.0, -1.0), (0.5, -0.2), (4e-4, 0.0), (80.0, 0.0), (1.0, 0.0), (0.02, -0.01)]:
        cx, cy = rng.uniform(4, W - 5), rng.uniform(4, H - 5)
        g = amp * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rng.uniform(0.4, 2.5) ** 2))
        maps.append(np.where(g > 1e-3 * amp, g, background) + rng.normal(0, 1e-3 * amp, g.shape))
    return np.stack(maps)[None].astype(np.float32)


@pytest.mark.parametrize("seed", range(4))
def test_dark_window_shortcut_equals_blurring_whole_maps(seed):
    hm = np.concatenate(
        [_awkward_maps(seed), load("decode_realistic")["heatmaps"][seed : seed + 1, :6]], axis=1
    )
    coords, _ = get_heatmap_maximum(hm)
    ours = refine_dark(hm.astype(np.float64), coords)
    np.testing.assert_allclose(ours, _dark_reference(hm.astype(np.float64)), atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_udp_window_shortcut_equals_blurring_whole_maps(seed):
    hm = np.concatenate([_awkward_maps(seed), load("decode_edge")["heatmaps"][:1, 2:10]], axis=1)
    coords, _ = get_heatmap_maximum(hm)
    ours = refine_dark_udp(hm.astype(np.float64), coords)
    np.testing.assert_allclose(ours, _udp_reference(hm.astype(np.float64)), atol=1e-9)


def test_refine_quarter_offset_per_axis_moves_only_the_axis_inside_its_range():
    hm = np.zeros((1, 1, 8, 8), np.float32)
    hm[0, 0, 1, 3], hm[0, 0, 1, 4], hm[0, 0, 2, 3] = 1.0, 0.5, 0.5  # peak on row 1: x may move, y may not
    coords = np.array([[[3.0, 1.0]]], np.float32)
    np.testing.assert_array_equal(refine_quarter_offset(hm, coords, border="both"), coords)
    np.testing.assert_array_equal(refine_quarter_offset(hm, coords, border="per_axis"), [[[3.25, 1.0]]])


@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_targets_for_other_sigmas_are_centred_gaussians_in_a_three_sigma_window(sigma):
    codec = MSRAHeatmap(INPUT, HEATMAP, sigma=sigma)
    heatmaps, _ = codec.encode(np.array([[[100.0, 120.0]]], np.float32))  # mu = (25, 30)
    window = int(3 * sigma)
    yy, xx = np.mgrid[0:H, 0:W]
    inside = (np.abs(xx - 25) <= window) & (np.abs(yy - 30) <= window)
    expected = np.where(inside, np.exp(-((xx - 25) ** 2 + (yy - 30) ** 2) / (2 * sigma**2)), 0.0)
    np.testing.assert_allclose(heatmaps[0, 0], expected, rtol=1e-6, atol=0)


@pytest.mark.parametrize("refine", [None, "quarter", "dark", "udp"])
def test_the_torch_only_path_used_off_the_cpu_gives_the_same_results(refine, monkeypatch):
    import hrnet_backbones.keypoints.codecs as codecs

    ref = load("decode_edge")  # ties, all-zero and negative maps, borders
    expected = decode_heatmaps(ref["heatmaps"], refine)
    monkeypatch.setattr(codecs, "_NUMPY_ARGMAX_ON_CPU", False)
    coords, scores = decode_heatmaps(ref["heatmaps"], refine)
    np.testing.assert_array_equal(coords, expected[0])
    np.testing.assert_array_equal(scores, expected[1])
