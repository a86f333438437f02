"""timm registrations: pretrained tags (``default_cfgs``) and the ``@register_model`` entry points.

``hrnet_w18/w32/w48`` replace timm's built-in entries of the same names (same state-dict keys, same pretrained
tags and files); timm's other HRNet names (``hrnet_w18_small``, ``hrnet_w30``, ...) are left as they are.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet
from timm.models._pretrained import PretrainedCfg

from .config import WIDTHS, hrnet_config
from .loading import damaged_weights_named, fit_checkpoint
from .model import HRNet, HRNetFeatures

__all__ = ["VARIANTS", "default_cfgs", "model_names"]

_logger = logging.getLogger(__name__)

#: model-name prefix -> representation
VARIANTS = {"hrnet": "v1", "hrnetv2": "v2", "hrnetv2p": "v2p"}

_PAPER_IDS = ("arXiv:1902.09212", "arXiv:1904.04514", "arXiv:1908.07919")
_PAPER_NAME = "Deep High-Resolution Representation Learning for Visual Recognition"
_PRETRAINED_CFG_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}


def model_names() -> list[str]:
    """Every model name this package registers, V1 then V2 then V2p, by width."""
    return [f"{prefix}_w{w}" for prefix in VARIANTS for w in WIDTHS]


def _imagenet_cfg(hub_id: str, variant: str, **kwargs: Any) -> dict[str, Any]:
    """An ImageNet-1k tag: timm's published weights of the official classification models (MIT licence)."""
    return {
        "hf_hub_id": hub_id,
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1",
        "classifier": "classifier",
        "license": "mit",
        "paper_name": _PAPER_NAME,
        "paper_ids": _PAPER_IDS,
        "origin_url": "https://github.com/HRNet/HRNet-Image-Classification",
        "description": f"{variant}: trunk and ImageNet head from the official HRNet-W*-C classification model",
        **kwargs,
    }


def _default_cfgs() -> dict[str, dict[str, Any]]:
    cfgs: dict[str, dict[str, Any]] = {}
    for prefix in VARIANTS:
        for w in WIDTHS:
            name = f"{prefix}_w{w}"
            # the V2/V2p variants reuse the V1 files: the trunk and ImageNet head are the same network
            hub = "timm/" if prefix == "hrnet" else f"timm/hrnet_w{w}.ms_in1k"
            if w == 18:
                aug_hub = "timm/" if prefix == "hrnet" else "timm/hrnet_w18.ms_aug_in1k"
                cfgs[f"{name}.ms_aug_in1k"] = _imagenet_cfg(aug_hub, name, crop_pct=0.95)
            cfgs[f"{name}.ms_in1k"] = _imagenet_cfg(hub, name)
    return cfgs


default_cfgs = generate_default_cfgs(_default_cfgs())


def _split_pretrained_cfg(pretrained_cfg: Any) -> tuple[Any, dict[str, Any]]:
    """Separate the keys timm's ``PretrainedCfg`` knows from our extras (keypoint names, flip pairs, ...).

    timm validates a dict ``pretrained_cfg`` by building a ``PretrainedCfg`` from it, which rejects unknown keys;
    converted checkpoints carry task metadata beside timm's keys, so it is set aside here and put back after.
    """
    if not isinstance(pretrained_cfg, dict):
        return pretrained_cfg, {}
    known = {k: v for k, v in pretrained_cfg.items() if k in _PRETRAINED_CFG_FIELDS}
    extra = {k: v for k, v in pretrained_cfg.items() if k not in _PRETRAINED_CFG_FIELDS}
    return known, extra


def checkpoint_filter_fn(state_dict: dict[str, torch.Tensor], model: HRNet) -> dict[str, torch.Tensor]:
    """Fit a checkpoint in timm's key layout to ``model`` before the load (see :func:`loading.fit_checkpoint`).

    Keys of parts the model does not have (a head it was built without, fusions pruned away) are dropped; a head
    or V2p neck the checkpoint lacks keeps its initialisation. Another width, another task, an unconverted file
    or an incomplete trunk is refused with a message naming both sides, rather than loaded half-way: timm loads
    non-strictly whenever num_classes differs from the tag's, so the check cannot be left to ``load_state_dict``.
    """
    return fit_checkpoint(state_dict, model)


def _create_hrnet(variant: str, pretrained: bool = False, **kwargs: Any) -> HRNet:
    num_classes = kwargs.get("num_classes")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0
    ):  # e.g. a string in a config.json's model_args, which timm passes on as it is
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    with damaged_weights_named(kwargs.get("pretrained_cfg")):
        return _build_hrnet(variant, pretrained, **kwargs)


def _build_hrnet(variant: str, pretrained: bool = False, **kwargs: Any) -> HRNet:
    prefix, width = variant.rsplit("_w", 1)
    kwargs.setdefault("arch", hrnet_config(int(width)))
    kwargs.setdefault("representation", VARIANTS[prefix])
    pretrained_cfg, extra_cfg = _split_pretrained_cfg(kwargs.pop("pretrained_cfg", None))

    features_only = kwargs.pop("features_only", False)
    feature_cls = kwargs.pop("feature_cls", None)
    if isinstance(feature_cls, str):
        feature_cls = feature_cls.lower()
    if features_only and feature_cls not in (None, "list", "dict", "getter"):
        if feature_cls in ("hook", "fx"):
            why = (
                "its branches leave the last fused module together, so hooks or fx cannot tap them one by one"
            )
        else:
            why = "it is not a feature_cls timm or this package knows"
        raise ValueError(
            f"feature_cls={feature_cls!r} is not supported for HRNet: {why}; "
            "use the default ('list'), 'dict' or 'getter'"
        )
    build_kwargs: dict[str, Any] = dict(
        pretrained_cfg=pretrained_cfg,
        pretrained_filter_fn=checkpoint_filter_fn,
        pretrained_strict=True,
    )
    if features_only and feature_cls == "getter":
        # timm's generic wrapper around forward_intermediates; built here so the default indices are ours
        out_indices = kwargs.pop("out_indices", None)
        kwargs.update(head="none")
        kwargs.pop("num_classes", None)
        model = build_model_with_cfg(HRNet, variant, pretrained, **build_kwargs, **kwargs)
        cfg = pretrained_cfg_for_features(model.pretrained_cfg)
        model = FeatureGetterNet(
            model, out_indices=model.default_feature_indices() if out_indices is None else out_indices
        )
        model.pretrained_cfg = model.default_cfg = cfg
    elif features_only:
        model = build_model_with_cfg(
            HRNetFeatures,
            variant,
            pretrained,
            kwargs_filter=("num_classes", "global_pool"),
            return_dict=feature_cls == "dict",
            **build_kwargs,
            **kwargs,
        )
        model.pretrained_cfg = model.default_cfg = pretrained_cfg_for_features(model.pretrained_cfg)
    else:
        model = build_model_with_cfg(HRNet, variant, pretrained, **build_kwargs, **kwargs)
    if extra_cfg:
        model.pretrained_cfg = {**model.pretrained_cfg, **extra_cfg}
        model.default_cfg = model.pretrained_cfg
    return model


def _register(fn):
    # timm already registers hrnet_w18/w32/w48; re-registering them warns. Ours are a strict superset by design,
    # so that one expected warning is silenced (and only it).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"Overwriting hrnet_w(18|32|48) in registry")
        return register_model(fn)


@_register
def hrnet_w18(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV1-W18: the four parallel branches (18, 36, 72, 144 channels)."""
    return _create_hrnet("hrnet_w18", pretrained, **kwargs)


@_register
def hrnet_w32(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV1-W32: the four parallel branches (32, 64, 128, 256 channels)."""
    return _create_hrnet("hrnet_w32", pretrained, **kwargs)


@_register
def hrnet_w48(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV1-W48: the four parallel branches (48, 96, 192, 384 channels)."""
    return _create_hrnet("hrnet_w48", pretrained, **kwargs)


@_register
def hrnetv2_w18(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV2-W18: branches upsampled to stride 4 and concatenated (270 channels)."""
    return _create_hrnet("hrnetv2_w18", pretrained, **kwargs)


@_register
def hrnetv2_w32(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV2-W32: branches upsampled to stride 4 and concatenated (480 channels)."""
    return _create_hrnet("hrnetv2_w32", pretrained, **kwargs)


@_register
def hrnetv2_w48(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV2-W48: branches upsampled to stride 4 and concatenated (720 channels)."""
    return _create_hrnet("hrnetv2_w48", pretrained, **kwargs)


@_register
def hrnetv2p_w18(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV2p-W18: the V2 map as a 5-level, 256-channel pyramid (strides 4-64)."""
    return _create_hrnet("hrnetv2p_w18", pretrained, **kwargs)


@_register
def hrnetv2p_w32(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV2p-W32: the V2 map as a 5-level, 256-channel pyramid (strides 4-64)."""
    return _create_hrnet("hrnetv2p_w32", pretrained, **kwargs)


@_register
def hrnetv2p_w48(pretrained: bool = False, **kwargs: Any) -> HRNet:
    """HRNetV2p-W48: the V2 map as a 5-level, 256-channel pyramid (strides 4-64)."""
    return _create_hrnet("hrnetv2p_w48", pretrained, **kwargs)
