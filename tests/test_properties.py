"""Property tests (hypothesis): output shapes for any input size and batch, and the keypoint codec round trip.

Shapes are checked on the meta device (no compute, so every variant and output stride gets many examples) and
on a few real forwards; the rule they must follow is written out independently in
``tests.helpers.expected_feature_size``: ceil(side / stride) for the stem and branches, max(1, floor(stride-4
side / 2^i)) for V2p pyramid level i.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hrnet_backbones.keypoints import MSRAHeatmap, UDPHeatmap
from tests.helpers import MICRO, ceil_div, expected_feature_size

VARIANTS = ("hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32")
SIDES = st.integers(min_value=32, max_value=512)
BATCH = st.integers(min_value=1, max_value=3)
SHAPE_SETTINGS = settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# the micro trunk: every stride, fusion and representation of the full layout, a third of the ops to trace
@cache
def _meta_features(name: str, output_stride: int) -> torch.nn.Module:
    with torch.device("meta"):
        probe = timm.create_model(name, arch=MICRO, head="none", output_stride=output_stride)
        indices = probe.available_feature_indices()
        return timm.create_model(
            name, arch=MICRO, features_only=True, out_indices=indices, output_stride=output_stride
        ).eval()


@cache
def _meta_model(name: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model(name, arch=MICRO, **kwargs).eval()


def _assert_features_follow_feature_info(model: torch.nn.Module, n: int, size: tuple[int, int], device: str):
    with torch.no_grad():
        feats = model(torch.empty(n, 3, *size, device=device))
    info = model.feature_info
    assert len(feats) == len(model.out_indices)
    for f, m, c, r in zip(feats, info.module_name(), info.channels(), info.reduction()):
        assert tuple(f.shape) == (n, c, *expected_feature_size(m, r, size)), (m, size)


@pytest.mark.slow
@pytest.mark.parametrize("name", VARIANTS)
@SHAPE_SETTINGS
@given(h=SIDES, w=SIDES, n=BATCH, output_stride=st.sampled_from([32, 16, 8]))
def test_every_feature_has_the_shape_feature_info_predicts(name, h, w, n, output_stride):
    _assert_features_follow_feature_info(_meta_features(name, output_stride), n, (h, w), "meta")


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, head",
    [
        ("hrnet_w32", "pose"),
        ("hrnetv2_w32", "segmentation"),
        ("hrnetv2_w32", "landmark"),
        ("hrnetv2p_w32", "pose"),
    ],
)
@SHAPE_SETTINGS
@given(h=SIDES, w=SIDES, n=BATCH)
def test_dense_heads_return_one_stride_4_map_per_output(name, head, h, w, n):
    model = _meta_model(name, head=head, num_classes=7)
    with torch.no_grad():
        out = model(torch.empty(n, 3, h, w, device="meta"))
    assert tuple(out.shape) == (n, 7, ceil_div(h, 4), ceil_div(w, 4))


@pytest.mark.slow
@SHAPE_SETTINGS
@given(h=SIDES, w=SIDES, n=BATCH)
def test_the_classifier_returns_one_row_per_image(h, w, n):
    model = _meta_model("hrnet_w32", num_classes=11)
    with torch.no_grad():
        assert tuple(model(torch.empty(n, 3, h, w, device="meta")).shape) == (n, 11)


@pytest.mark.parametrize("name", VARIANTS)
@settings(max_examples=4, deadline=None)
@given(h=st.integers(32, 160), w=st.integers(32, 160), n=BATCH)
def test_real_forwards_follow_the_same_rule(name, h, w, n):
    model = timm.create_model(
        name, arch=MICRO, features_only=True, out_indices=_meta_features(name, 32).out_indices
    )
    _assert_features_follow_feature_info(model.eval(), n, (h, w), "cpu")


# ------------------------------------------------------------------------------------------------ keypoints
CODECS = {
    "dark": lambda size, hm, sigma, k: MSRAHeatmap(size, hm, sigma=sigma, unbiased=True, blur_kernel_size=k),
    "udp": lambda size, hm, sigma, k: UDPHeatmap(size, hm, sigma=sigma, blur_kernel_size=k),
}


@pytest.mark.parametrize("refine", sorted(CODECS))
@settings(max_examples=30, deadline=None)
@given(
    heatmap_w=st.integers(24, 64),  # room for an interior 3 sigma + 2 pixels from every side
    heatmap_h=st.integers(24, 64),
    sigma_and_kernel=st.sampled_from([(2.0, 11), (3.0, 17)]),
    seed=st.integers(0, 2**31 - 1),
)
def test_keypoint_encode_decode_round_trip_is_within_five_hundredths_of_a_heatmap_pixel(
    refine, heatmap_w, heatmap_h, sigma_and_kernel, seed
):
    """Keypoints at least 3 sigma + 2 heatmap pixels from the border (where the Gaussian is not cut off)."""
    sigma, kernel = sigma_and_kernel
    stride = 4
    codec = CODECS[refine]((heatmap_w * stride, heatmap_h * stride), (heatmap_w, heatmap_h), sigma, kernel)
    margin = (3 * sigma + 2) * stride
    rng = np.random.default_rng(seed)
    keypoints = rng.uniform(
        [margin, margin], [heatmap_w * stride - margin, heatmap_h * stride - margin], size=(2, 5, 2)
    ).astype(np.float32)
    heatmaps, _ = codec.encode(keypoints)
    decoded, scores = codec.decode(heatmaps, refine=refine)
    scale = np.array(getattr(codec, "scale_factor", None) or codec.stride)
    error = np.linalg.norm((decoded - keypoints) / scale, axis=-1)
    assert error.max() < 0.05
    assert (scores > 0.9).all()
