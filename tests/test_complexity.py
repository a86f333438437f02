"""Params and multiply-adds of the published models at their standard sizes match the papers' figures.

The HRNet papers' "GFLOPs" are multiply-adds / 2^30 (``Complexity.paper_gflops``). Counted on the meta device.
"""

from __future__ import annotations

import pytest

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.complexity import PUBLISHED, ComplexityCheck, measure, meta_model

POSE = dict(head="pose", num_classes=17, multi_scale_last=False)


def _rounded(name: str, size: tuple[int, int], **kwargs) -> tuple[float, float]:
    c = measure(meta_model(name, **kwargs), size)
    return round(c.params_m, 1), round(c.paper_gflops, 1)


def test_pose_hrnet_w32_at_256x192_is_28_5m_params_and_7_1_gflops():
    assert _rounded("hrnet_w32", (256, 192), **POSE) == (28.5, 7.1)


@pytest.mark.slow
def test_pose_hrnet_w48_at_256x192_is_63_6m_params_and_14_6_gflops():
    assert _rounded("hrnet_w48", (256, 192), **POSE) == (63.6, 14.6)


@pytest.mark.slow
def test_segmentation_hrnetv2_w48_at_1024x2048_is_65_9m_params_and_696_gflops():
    params, gflops = _rounded(
        "hrnetv2_w48", (1024, 2048), head="segmentation", num_classes=19, fusion_upsample="bilinear"
    )
    assert params == 65.9
    assert round(gflops) == 696


def test_published_table_lists_the_papers_figures():
    figures = {(f.name, f.input_size): (f.params_m, f.gflops) for f in PUBLISHED}
    assert figures[("pose HRNet-W32", (256, 192))] == (28.5, 7.1)
    assert figures[("pose HRNet-W48", (256, 192))] == (63.6, 14.6)
    assert figures[("seg HRNetV2-W48", (1024, 2048))] == (65.9, 696.0)


@pytest.mark.parametrize(
    ("params", "gflops", "matches"),
    [
        (28.54, 7.12, True),
        (28.44, 7.12, False),
        (28.5, 7.2, False),
        (65.86, 696.2, True),
        (65.86, 697.0, False),
    ],
)
def test_a_check_matches_at_the_published_rounding(params, gflops, matches):
    published = (65.9, 696.0) if gflops > 100 else (28.5, 7.1)
    check = ComplexityCheck("x", "1x1", params, gflops, *published, "paper")
    assert check.matches is matches
