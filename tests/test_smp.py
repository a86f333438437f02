"""segmentation_models_pytorch: ``tu-hrnet_w*`` encoders in every decoder that takes a timm universal encoder."""

from __future__ import annotations

import warnings

import pytest
import segmentation_models_pytorch as smp
import timm
import torch
from safetensors.torch import save_file

from hrnet_backbones import tiny_config
from tests.helpers import timm_state_dict

ENCODER = "tu-hrnet_w18"
# smp forwards extra keyword arguments to timm.create_model: the tiny trunk keeps these tests fast
TINY = dict(encoder_weights=None, arch=tiny_config(), classes=3)

#: decoder -> small decoder widths (the encoder path does not depend on them)
DECODERS = {
    "Unet": dict(decoder_channels=(16, 16, 16, 16, 16)),
    "UnetPlusPlus": dict(decoder_channels=(8, 8, 8, 8, 8)),
    "MAnet": dict(decoder_channels=(16, 16, 16, 16, 16), decoder_pab_channels=8),
    "Linknet": {},
    "FPN": dict(decoder_pyramid_channels=16, decoder_segmentation_channels=32),  # GroupNorm(32),
    "PSPNet": dict(psp_out_channels=16),
    "UPerNet": dict(decoder_channels=16),
    "Segformer": dict(decoder_segmentation_channels=16),
    # these three ask the encoder for output_stride 8 or 16 (dilated lower branches)
    "PAN": dict(decoder_channels=16),
    "DeepLabV3": dict(decoder_channels=16),
    "DeepLabV3Plus": dict(decoder_channels=16),
}


def _build(decoder: str, **kwargs) -> torch.nn.Module:
    return getattr(smp, decoder)(ENCODER, **TINY, **{**DECODERS[decoder], **kwargs})


def test_smp_sees_five_features_at_strides_2_to_32():
    model = _build("Unet").eval()
    assert model.encoder.out_channels == [3, 64, 4, 8, 16, 32]
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        feats = model.encoder(x)
    assert [64 // f.shape[-2] for f in feats] == [1, 2, 4, 8, 16, 32]
    assert [96 // f.shape[-1] for f in feats] == [1, 2, 4, 8, 16, 32]


def test_readme_encoder_weights_true_loads_the_pretrained_trunk_without_a_warning(tmp_path):
    """The README's ``smp.Unet("tu-hrnet_w32", encoder_weights=True, ...)``: smp 0.6 wants True (or None) for a
    ``tu-`` encoder and warns on a string like "imagenet". The pretrained file is given offline."""
    checkpoint = timm_state_dict("cls")
    path = tmp_path / "hrnet_tiny_in1k.safetensors"
    save_file({k: v.contiguous() for k, v in checkpoint.items()}, str(path))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = smp.Unet(
            ENCODER,
            encoder_weights=True,
            arch=tiny_config(),
            classes=3,
            pretrained_cfg_overlay=dict(file=str(path)),
            **DECODERS["Unet"],
        )
    assert not [w for w in caught if "encoder_weights" in str(w.message)]
    encoder = model.encoder.model.state_dict()
    assert set(encoder) <= set(checkpoint)
    assert all(torch.equal(encoder[k], checkpoint[k]) for k in encoder)


def test_smp_encoder_returns_our_features_unchanged():
    model = _build("Unet").eval()
    ours = timm.create_model("hrnet_w18", arch=tiny_config(), features_only=True).eval()
    ours.load_state_dict(model.encoder.model.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model.encoder(x)[1:], ours(x)):
            assert torch.equal(a, b)


@pytest.mark.parametrize("size", [(256, 256), (250, 330)])
def test_unet_segments_inputs_of_any_size(size):
    model = _build("Unet").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size))
    assert out.shape == (1, 3, *size)


def test_unet_trains_every_encoder_weight():
    model = _build("Unet").train()
    loss = model(torch.randn(2, 3, 64, 64)).square().mean()
    loss.backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


@pytest.mark.parametrize("decoder", sorted(DECODERS))
def test_every_timm_universal_decoder_builds_and_runs(decoder):
    model = _build(decoder).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 128, 128))  # PAN's pyramid attention pools its stride-16 map by 8
    assert out.shape == (2, 3, 128, 128)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("decoder, output_stride", [("DeepLabV3", 8), ("DeepLabV3Plus", 16), ("PAN", 16)])
def test_dilated_decoders_get_the_output_stride_they_ask_for(decoder, output_stride):
    model = _build(decoder).eval()
    assert model.encoder.model.output_stride == output_stride
    reductions = model.encoder.model.feature_info.reduction()
    assert reductions == [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    with torch.no_grad():
        feats = model.encoder(torch.randn(1, 3, 64, 64))
    assert feats[-1].shape[-2:] == (64 // output_stride, 64 // output_stride)


def test_dilated_encoder_loads_the_stride_32_weights():
    model = _build("DeepLabV3")
    plain = timm.create_model("hrnet_w18", arch=tiny_config(), features_only=True)
    model.encoder.model.load_state_dict(plain.state_dict())  # strict: same keys, same shapes
