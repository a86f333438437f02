"""torchvision detection: HRNet backbones inside Faster R-CNN, RetinaNet and Mask R-CNN."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import timm
import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN, RetinaNet
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.misc import FrozenBatchNorm2d

from hrnet_backbones import tiny_config
from hrnet_backbones.detection import TRAINABLE_GROUPS, hrnet_detection_backbone
from tests.helpers import fixture_input, fixture_model

NAMES = ("hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32")
# few proposals and detections keep the heads cheap on CPU; the backbone path is the same as with the defaults
SMALL_HEADS = dict(
    min_size=64,
    max_size=96,
    rpn_pre_nms_top_n_train=64,
    rpn_post_nms_top_n_train=32,
    rpn_pre_nms_top_n_test=64,
    rpn_post_nms_top_n_test=32,
    box_batch_size_per_image=16,
    box_detections_per_img=8,
)


def _backbone(name: str, **kwargs) -> nn.Module:
    neck = dict(neck_channels=16) if name.startswith("hrnetv2p") else {}
    return hrnet_detection_backbone(name, arch=tiny_config(), out_channels=16, **neck, **kwargs)


def _images_and_targets(masks: bool = False):
    gen = torch.Generator().manual_seed(0)
    images = [torch.rand(3, 60, 90, generator=gen), torch.rand(3, 72, 56, generator=gen)]
    targets = [
        dict(boxes=torch.tensor([[10.0, 8.0, 50.0, 40.0]]), labels=torch.tensor([1])),
        dict(
            boxes=torch.tensor([[4.0, 10.0, 30.0, 60.0], [20.0, 5.0, 50.0, 30.0]]),
            labels=torch.tensor([2, 1]),
        ),
    ]
    if masks:
        for img, t in zip(images, targets):
            m = torch.zeros(len(t["boxes"]), *img.shape[-2:], dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(t["boxes"].int().tolist()):
                m[k, y0:y1, x0:x1] = 1
            t["masks"] = m
    return images, targets


def _train_step_then_eval(detector: nn.Module, masks: bool = False) -> list[dict[str, torch.Tensor]]:
    images, targets = _images_and_targets(masks)
    detector.train()
    params = [p for p in detector.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3)
    losses = detector(images, targets)
    loss = sum(losses.values())
    assert torch.isfinite(loss), losses
    loss.backward()
    trunk_grads = [p.grad for n, p in detector.backbone.body.named_parameters() if p.requires_grad]
    assert trunk_grads and all(g is not None for g in trunk_grads), (
        "every trainable backbone weight gets a gradient"
    )
    opt.step()
    detector.eval()
    with torch.no_grad():
        return detector(images)


@pytest.mark.parametrize("name", NAMES)
def test_backbone_returns_an_ordered_dict_of_out_channels_maps_at_its_strides(name):
    backbone = _backbone(name)
    x = torch.randn(2, 3, 128, 192)
    out = backbone(x)
    assert isinstance(out, OrderedDict)
    assert list(out) == ["0", "1", "2", "3", "pool"]
    assert backbone.strides == [4, 8, 16, 32, 64]
    for (_, fmap), stride in zip(out.items(), backbone.strides):
        assert fmap.shape == (2, backbone.out_channels, 128 // stride, 192 // stride)


def test_v2p_passes_its_pyramid_through_and_v1_gets_a_torchvision_fpn():
    v2p = _backbone("hrnetv2p_w32")
    v1 = _backbone("hrnet_w32")
    assert v2p.fpn is None and v2p.out_channels == 16
    assert isinstance(v1.fpn, FeaturePyramidNetwork)
    x = torch.randn(1, 3, 64, 64)
    # the V2p levels are exactly the model's own pyramid (feature indices 2, 4, 6, 8, 9)
    feats = v2p.body.forward_intermediates(x, indices=[2, 4, 6, 8, 9], intermediates_only=True)
    assert all(torch.equal(a, b) for a, b in zip(v2p(x).values(), feats))


def test_official_detection_weights_reach_the_pyramid_unchanged():
    model = fixture_model("det")
    backbone = hrnet_detection_backbone(model)
    x = fixture_input("det")
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(backbone.eval()(x).values(), model(x)))


@pytest.mark.parametrize("name", NAMES)
def test_faster_rcnn_trains_one_step_and_detects(name):
    detector = FasterRCNN(_backbone(name), num_classes=3, **SMALL_HEADS)
    results = _train_step_then_eval(detector)
    assert {"boxes", "labels", "scores"} <= set(results[0])


def test_retinanet_trains_one_step_and_detects():
    anchors = AnchorGenerator(((16,), (32,), (64,), (128,), (256,)), ((0.5, 1.0, 2.0),) * 5)
    detector = RetinaNet(
        _backbone("hrnetv2p_w32"),
        num_classes=3,
        anchor_generator=anchors,
        min_size=64,
        max_size=96,
        detections_per_img=8,
        topk_candidates=32,
    )
    results = _train_step_then_eval(detector)
    assert {"boxes", "labels", "scores"} <= set(results[0])


def test_mask_rcnn_trains_one_step_and_segments():
    detector = MaskRCNN(_backbone("hrnet_w32"), num_classes=3, **SMALL_HEADS)
    results = _train_step_then_eval(detector, masks=True)
    assert {"boxes", "labels", "scores", "masks"} <= set(results[0])
    assert results[1]["masks"].shape[-2:] == (72, 56)


def test_freeze_batch_norm_uses_torchvision_frozen_batch_norm_with_the_same_statistics():
    model = fixture_model("det")
    frozen = hrnet_detection_backbone(model, freeze_batch_norm=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in frozen.modules())
    assert sum(isinstance(m, FrozenBatchNorm2d) for m in frozen.modules()) == sum(
        isinstance(m, nn.BatchNorm2d) for m in model.modules()
    )
    x = fixture_input("det")
    frozen.train()  # frozen statistics: training mode changes nothing
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(frozen(x).values(), model(x)))


def test_trainable_layers_freezes_the_trunk_from_the_bottom_up():
    backbone = _backbone("hrnet_w32", trainable_layers=2)
    trainable = {
        n.split(".", 2)[1] for n, p in backbone.named_parameters() if p.requires_grad and "body." in n
    }
    frozen = {n.split(".", 2)[1] for n, p in backbone.named_parameters() if not p.requires_grad}
    assert trainable == {"stage4", "transition3", "stage3", "transition2"}
    assert frozen == {"stage2", "transition1", "layer1", "conv1", "bn1", "conv2", "bn2"}
    assert all(p.requires_grad for p in backbone.fpn.parameters())
    assert len(TRAINABLE_GROUPS) == 5


def test_trainable_layers_out_of_range_is_refused():
    with pytest.raises(ValueError, match="trainable_layers must be between 0 and 5"):
        _backbone("hrnet_w32", trainable_layers=6)


def test_a_given_model_is_copied_not_pruned_in_place():
    model = timm.create_model("hrnetv2_w32", arch=tiny_config(), head="segmentation", num_classes=5)
    keys = set(model.state_dict())
    backbone = hrnet_detection_backbone(model, out_channels=16)
    assert set(model.state_dict()) == keys
    assert not any(k.startswith("head.") for k in backbone.state_dict())


def test_single_scale_features_are_refused_for_a_pyramid():
    with pytest.raises(ValueError, match="do not belong in a detection pyramid"):
        _backbone("hrnetv2_w32", out_indices=(1, 2, 3))
