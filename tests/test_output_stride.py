"""output_stride 16 and 8: the lowest branches stay at that stride and are dilated, with the same weights."""

from __future__ import annotations

import pytest
import timm
import torch

from hrnet_backbones import tiny_config
from hrnet_backbones.trunk import branch_strides
from tests.helpers import expected_feature_size, fixture_expected, fixture_input, fixture_model

NAMES = ("hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32")
FUSIONS = ("nearest", "bilinear", "bilinear_scale")


def _pair(output_stride: int, fusion: str = "nearest", **kwargs):
    """The same random weights at output stride 32 and at ``output_stride``, in eval mode."""
    ref = timm.create_model("hrnet_w32", arch=tiny_config(fusion_upsample=fusion), **kwargs).eval()
    dilated = timm.create_model(
        "hrnet_w32", arch=tiny_config(fusion_upsample=fusion), output_stride=output_stride, **kwargs
    ).eval()
    dilated.load_state_dict(ref.state_dict())
    return ref, dilated


def test_branch_strides_are_capped_at_the_output_stride():
    assert branch_strides(32) == (4, 8, 16, 32)
    assert branch_strides(16) == (4, 8, 16, 16)
    assert branch_strides(8) == (4, 8, 8, 8)


@pytest.mark.parametrize("name", NAMES)
def test_weights_are_the_same_tensors_at_every_output_stride(name):
    with torch.device("meta"):
        ref = timm.create_model(name).state_dict()
        dilated = timm.create_model(name, output_stride=8).state_dict()
    assert {k: v.shape for k, v in ref.items()} == {k: v.shape for k, v in dilated.items()}


@pytest.mark.parametrize("output_stride", [16, 8])
@pytest.mark.parametrize("name", NAMES)
def test_feature_info_reports_the_true_reductions(name, output_stride):
    with torch.device("meta"):
        probe = timm.create_model(name, arch=tiny_config(), head="none", output_stride=output_stride)
    indices = probe.available_feature_indices()
    model = timm.create_model(
        name, arch=tiny_config(), features_only=True, output_stride=output_stride, out_indices=indices
    )
    reductions = model.feature_info.reduction()
    branches = [r for m, r in zip(model.feature_info.module_name(), reductions) if m.startswith("branch")]
    assert branches == [min(s, output_stride) for s in (4, 8, 16, 32)]
    assert reductions == sorted(reductions)  # timm's FeatureInfo order, at every output stride
    size = (70, 90)
    with torch.no_grad():
        feats = model(torch.randn(1, 3, *size))
    assert [tuple(f.shape[-2:]) for f in feats] == [
        expected_feature_size(m, r, size) for m, r in zip(model.feature_info.module_name(), reductions)
    ]


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("output_stride, stage, branch", [(16, "stage4", 3), (8, "stage3", 2)])
def test_a_dilated_branch_is_the_stride_32_branch_computed_densely(output_stride, stage, branch, fusion):
    """Before any fusion feeds it back upwards, the first dilated branch sampled every other pixel is exactly the
    stride-32 network's branch: the "a trous" identity that makes dilation keep pretrained weights valid."""
    ref, dilated = _pair(output_stride, fusion)
    x = torch.randn(2, 3, 100, 76)
    outs = {}
    for key, model in (("ref", ref), ("dilated", dilated)):
        hook = getattr(model, stage)[0].register_forward_hook(
            lambda m, i, o, key=key: outs.__setitem__(key, o)
        )
        with torch.no_grad():
            model(x)
        hook.remove()
    dense, sparse = outs["dilated"][branch], outs["ref"][branch]
    assert dense.shape[-2] > sparse.shape[-2] and dense.shape[-1] > sparse.shape[-1]
    torch.testing.assert_close(dense[..., ::2, ::2], sparse, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("output_stride", [16, 8])
def test_classification_head_keeps_the_output_stride(output_stride):
    _, dilated = _pair(output_stride, head_channels=(3, 6, 12, 24), head_features=80)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = dilated.forward_features(x)
        logits = dilated(x)
    assert feats.shape[-2:] == (64 // output_stride, 96 // output_stride)
    assert logits.shape == (1, 1000) and torch.isfinite(logits).all()


def test_output_stride_32_is_the_published_network():
    default = fixture_model("pose")
    explicit = fixture_model("pose", output_stride=32)
    x = fixture_input("pose")
    with torch.no_grad():
        out = explicit(x)
        assert torch.equal(out, default(x))
    torch.testing.assert_close(out, fixture_expected("pose")["output"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("output_stride", [4, 64, 12])
def test_unsupported_output_stride_is_refused_with_the_choices(output_stride):
    with pytest.raises(ValueError, match=r"output_stride=\d+ is not supported.*\(8, 16, 32\)"):
        timm.create_model("hrnet_w18", output_stride=output_stride)
