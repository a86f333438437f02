"""What is registered with timm, as data: model names, their trunks, pretrained tags (``default_cfgs``) and the
builder the entry points call.

Every model name is ``{prefix}_{trunk}``: a prefix of :data:`VARIANTS` (``hrnet`` V1, ``hrnetv2`` V2, ``hrnetv2p``
V2p) and a trunk of :data:`config.TRUNKS` (``w18_small``, ``w18_small_v2``, ``w18`` ... ``w64``), plus the V1
weight variants of :data:`WEIGHT_VARIANTS` (``hrnet_w18_ssld``, ``hrnet_w48_ssld``). The V1 names are timm's own
HRNet names, taken over with the same state-dict keys, logits and pretrained tags (a strict superset). Adding a
model is adding an entry here or in ``config.TRUNKS``; the entry points themselves are generated in
:mod:`hrnet_backbones.hrnet`.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import build_model_with_cfg, generate_default_cfgs
from timm.models._builder import pretrained_cfg_for_features
from timm.models._features import FeatureGetterNet
from timm.models._pretrained import PretrainedCfg

from .config import TRUNKS, HRNetConfig
from .folder import check_model_source
from .loading import damaged_weights_named, fit_checkpoint
from .model import HRNet, HRNetFeatures

__all__ = [
    "MODELS",
    "VARIANTS",
    "WEIGHT_VARIANTS",
    "ModelSpec",
    "create_hrnet",
    "default_cfgs",
    "model_names",
    "nearest_trunk",
    "trunk_differences",
    "trunk_name",
    "trunk_title",
]

_logger = logging.getLogger(__name__)

#: model-name prefix -> representation
VARIANTS = {"hrnet": "v1", "hrnetv2": "v2", "hrnetv2p": "v2p"}
#: representation -> its name in the papers

#: V1 models whose weights need a slightly different head: name suffix -> (trunk, model keyword defaults).
#: PaddleClas' SSLD-distilled ImageNet models have no bias in the classification head's convolutions.
WEIGHT_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "w18_ssld": ("w18", {"head_conv_bias": False}),
    "w48_ssld": ("w48", {"head_conv_bias": False}),
}

_HRNET_PAPER = ("Deep High-Resolution Representation Learning for Visual Recognition", "arXiv:1908.07919")
_SSLD_PAPER = (
    "Beyond Self-Supervision: A Simple Yet Effective Network Distillation Alternative to Improve Backbones",
    "arXiv:2103.05959",
)
_SOURCES = {
    "ms": ("mit", "https://github.com/HRNet/HRNet-Image-Classification", _HRNET_PAPER),
    "gluon": ("apache-2.0", "https://github.com/dmlc/gluon-cv", _HRNET_PAPER),
    "paddle": ("mit", "https://github.com/PaddlePaddle/PaddleClas", _SSLD_PAPER),  # timm's licence field
}
_SSLD_EVAL = dict(crop_pct=0.95, test_crop_pct=1.0, test_input_size=(3, 288, 288))

#: ImageNet-1k tags of timm's published HRNet weights, per V1 name suffix, default tag first (as timm lists them;
#: the values are the fields that differ from :func:`_imagenet_cfg`'s). V2 / V2p names of the same trunk get the
#: same tags and files: the trunk and ImageNet head are the same network.
IMAGENET_TAGS: dict[str, dict[str, dict[str, Any]]] = {
    "w18_small": {"gluon_in1k": dict(interpolation="bicubic"), "ms_in1k": {}},
    "w18_small_v2": {"gluon_in1k": dict(interpolation="bicubic"), "ms_in1k": {}},
    "w18": {"ms_aug_in1k": dict(crop_pct=0.95), "ms_in1k": {}},
    **{trunk: {"ms_in1k": {}} for trunk in ("w30", "w32", "w40", "w44", "w48", "w64")},
    "w18_ssld": {"paddle_in1k": _SSLD_EVAL},
    "w48_ssld": {"paddle_in1k": _SSLD_EVAL},
}

_PRETRAINED_CFG_FIELDS = {f.name for f in dataclasses.fields(PretrainedCfg)}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One registered model: its representation, trunk (a ``config.TRUNKS`` key) and keyword defaults."""

    prefix: str
    trunk: str
    defaults: tuple[tuple[str, Any], ...] = ()
    weights: str = ""  # the V1 suffix whose ImageNet files it takes ("" for none)

    @property
    def representation(self) -> str:
        return VARIANTS[self.prefix]

    @property
    def arch(self) -> HRNetConfig:
        return TRUNKS[self.trunk]


def _model_specs() -> dict[str, ModelSpec]:
    specs: dict[str, ModelSpec] = {}
    for prefix in VARIANTS:
        for trunk in TRUNKS:
            specs[f"{prefix}_{trunk}"] = ModelSpec(
                prefix, trunk, weights=trunk if trunk in IMAGENET_TAGS else ""
            )
        if prefix == "hrnet":
            for suffix, (trunk, defaults) in WEIGHT_VARIANTS.items():
                specs[f"hrnet_{suffix}"] = ModelSpec(prefix, trunk, tuple(defaults.items()), weights=suffix)
    return specs


#: every registered model name -> its specification, V1 then V2 then V2p, by trunk
MODELS: dict[str, ModelSpec] = _model_specs()


def model_names() -> list[str]:
    """Every model name this package registers, V1 then V2 then V2p, by trunk."""
    return list(MODELS)


def trunk_title(trunk: str) -> str:
    """The papers' name of a trunk: ``w18_small_v2`` -> ``W18-Small-v2``, ``w48_ssld`` -> ``W48-ssld``."""
    first, *rest = trunk.split("_")
    return "-".join([first.upper(), *(p.capitalize() if p == "small" else p for p in rest)])


def trunk_name(arch: HRNetConfig) -> str | None:
    """The ``config.TRUNKS`` name of ``arch``'s layout (stem, stages; fusion settings aside), or None."""
    layout = ("stem_width", "stage1", "stage2", "stage3", "stage4")
    want = {k: v for k, v in arch.to_dict().items() if k in layout}
    for name, trunk in TRUNKS.items():
        if {k: v for k, v in trunk.to_dict().items() if k in layout} == want:
            return name
    return None


def trunk_differences(arch: HRNetConfig, trunk: str) -> list[str]:
    """How ``arch``'s layout differs from the registered trunk ``trunk``, one phrase per difference (stem, each
    stage's modules, blocks and block type; fusion settings aside): ``"stage 4 has 2 modules where HRNet-W32 has
    3"``. Empty when they are the same layout."""
    ref, title = TRUNKS[trunk], f"HRNet-{trunk_title(trunk)}"

    def modules(n: int) -> str:
        return f"{n} module{'s' if n != 1 else ''}"

    out = []
    if arch.stem_width != ref.stem_width:
        out.append(f"the stem has {arch.stem_width} channels where {title} has {ref.stem_width}")
    for s, (a, r) in enumerate(zip((arch.stage1, *arch.stages), (ref.stage1, *ref.stages)), start=1):
        if a.num_modules != r.num_modules:
            out.append(f"stage {s} has {modules(a.num_modules)} where {title} has {r.num_modules}")
        if a.num_blocks != r.num_blocks:
            out.append(
                f"stage {s} has {list(a.num_blocks)} blocks per branch where {title} has {list(r.num_blocks)}"
            )
        if a.block != r.block:
            out.append(f"stage {s} has {a.block} blocks where {title} has {r.block}")
        if a.num_channels != r.num_channels:
            out.append(
                f"stage {s} has channels {list(a.num_channels)} where {title} has {list(r.num_channels)}"
            )
    return out


def nearest_trunk(arch: HRNetConfig) -> tuple[str, list[str]] | None:
    """The registered trunk of ``arch``'s width (the same branch channels) whose layout differs least from it, with
    the differences (:func:`trunk_differences`); None when no registered trunk has these branch channels."""
    same_width = [name for name, trunk in TRUNKS.items() if trunk.branch_channels == arch.branch_channels]
    ranked = sorted((len(trunk_differences(arch, n)), n) for n in same_width)
    return (ranked[0][1], trunk_differences(arch, ranked[0][1])) if ranked else None


def _imagenet_cfg(name: str, hub_id: str, source: str, **kwargs: Any) -> dict[str, Any]:
    """An ImageNet-1k tag of timm's published weights (the fields and values of timm's own HRNet tags)."""
    license_, origin, (paper_name, paper_id) = _SOURCES[source]
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
        "license": license_,
        "paper_name": paper_name,
        "paper_ids": ("arXiv:1902.09212", "arXiv:1904.04514", paper_id),
        "origin_url": origin,
        "description": f"{name}: trunk and ImageNet head of timm's hrnet_* weights ({source})",
        **kwargs,
    }


def _default_cfgs() -> dict[str, dict[str, Any]]:
    cfgs: dict[str, dict[str, Any]] = {}
    for name, spec in MODELS.items():
        for tag, fields in IMAGENET_TAGS.get(spec.weights, {}).items():
            # V1 names complete "timm/" to their own repository; V2 / V2p point at the V1 one
            hub = "timm/" if spec.prefix == "hrnet" else f"timm/hrnet_{spec.weights}.{tag}"
            cfgs[f"{name}.{tag}"] = _imagenet_cfg(name, hub, tag.split("_")[0], **fields)
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


def _check_config_file(pretrained_cfg: Any) -> None:
    """Check the ``config.json`` a ``local-dir:`` / ``hf-hub:`` model comes from (:mod:`hrnet_backbones.folder`).

    timm has merged the file into ``pretrained_cfg`` and the keyword arguments by now, so a wrong value can no
    longer be traced to its field; the file itself (already read by timm: a local file, or the Hub cache) can.
    """
    if not isinstance(pretrained_cfg, dict):
        return
    source = pretrained_cfg.get("source")
    if source == "local-dir" and pretrained_cfg.get("file"):
        check_model_source(f"local-dir:{pretrained_cfg['file']}")
    elif source == "hf-hub" and pretrained_cfg.get("hf_hub_id"):
        check_model_source(f"hf-hub:{pretrained_cfg['hf_hub_id']}", download=False)


def create_hrnet(variant: str, pretrained: bool = False, **kwargs: Any) -> HRNet:
    """Build the registered model ``variant`` through timm's ``build_model_with_cfg`` (what the entry points call).

    ``kwargs`` are :class:`~hrnet_backbones.model.HRNet` arguments (``device`` and ``dtype`` included) and timm's
    ``features_only`` / ``feature_cls`` / ``out_indices`` / ``pretrained_cfg``. The ``config.json`` of a
    ``local-dir:`` / ``hf-hub:`` model is checked field by field
    (:func:`~hrnet_backbones.folder.check_model_config`) and a damaged weights file is named in the error
    (:func:`~hrnet_backbones.loading.damaged_weights_named`).
    """
    _check_config_file(kwargs.get("pretrained_cfg"))
    num_classes = kwargs.get("num_classes")
    if num_classes is not None and (
        isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0
    ):  # e.g. a string in a config.json's model_args, which timm passes on as it is
        raise ValueError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    with damaged_weights_named(kwargs.get("pretrained_cfg")):
        return _build_hrnet(variant, pretrained, **kwargs)


def _build_hrnet(variant: str, pretrained: bool = False, **kwargs: Any) -> HRNet:
    spec = MODELS[variant]
    kwargs.setdefault("arch", spec.arch)
    kwargs.setdefault("representation", spec.representation)
    for key, value in spec.defaults:
        kwargs.setdefault(key, value)
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
