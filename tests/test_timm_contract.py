"""timm's model contract, point by point, for every registered name (timm 1.0.31's own tests/test_models.py runs
the whole of it: benchmarks/timm_contract.sh).

Every name is checked on the meta device (shapes only, no memory); real forwards use the tiny trunk.
"""

from __future__ import annotations

import pytest
import timm
import torch
from timm.models import FeatureInfo
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import hrnet_backbones
from hrnet_backbones import model_names, tiny_config
from hrnet_backbones.registry import MODELS

NAMES = model_names()
VARIANT_NAMES = ("hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32")
#: every head each variant can carry (pose reads branch 0, landmark / segmentation the stride-4 map)
HEADS = {
    "hrnet_w32": ("classification", "none", "pose"),
    "hrnetv2_w32": ("classification", "none", "landmark", "segmentation"),
    "hrnetv2p_w32": ("classification", "none", "pose", "segmentation"),
}
CASES = [(name, head) for name, heads in HEADS.items() for head in heads]


class _RecordTensors(TorchDispatchMode):
    """Records the device and dtype of every tensor any operation creates while it is active."""

    def __init__(self):
        super().__init__()
        self.created: set[tuple[str, torch.dtype]] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.created.add((t.device.type, t.dtype))
        return out


def _build(name: str, head: str, **kwargs) -> torch.nn.Module:
    num_classes = {"classification": 10, "none": 0}.get(head, 5)
    return timm.create_model(name, arch=tiny_config(), head=head, num_classes=num_classes, **kwargs)


# ---------------------------------------------------------------------------------------- device and dtype
@pytest.mark.parametrize("name", NAMES)
def test_every_name_builds_directly_on_the_meta_device_in_the_dtype_asked(name):
    with _RecordTensors() as record:
        model = timm.create_model(name, device="meta", dtype=torch.bfloat16)
    tensors = dict(model.named_parameters()) | dict(model.named_buffers())
    assert {t.device.type for t in tensors.values()} == {"meta"}
    assert {t.dtype for t in tensors.values() if t.is_floating_point()} == {torch.bfloat16}
    # nothing was built elsewhere first and moved: every tensor ever created was a meta tensor
    assert {device for device, _ in record.created} == {"meta"}
    assert {dtype for _, dtype in record.created if dtype.is_floating_point} == {torch.bfloat16}


@pytest.mark.parametrize("kwargs", [dict(features_only=True), dict(features_only=True, feature_cls="getter")])
@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_feature_extractors_build_on_the_device_and_dtype_asked(name, kwargs):
    with _RecordTensors() as record:
        model = timm.create_model(name, device="meta", dtype=torch.float16, **kwargs)
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.float16)}
    assert {device for device, _ in record.created} == {"meta"}


@pytest.mark.parametrize(("name", "head"), CASES)
def test_every_head_builds_in_the_dtype_asked_and_runs_in_it(name, head):
    model = _build(name, head, device="cpu", dtype=torch.float64).eval()
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 48, dtype=torch.float64))
    assert all(t.dtype == torch.float64 for t in (out if isinstance(out, list) else [out]))


# ------------------------------------------------------------------------------------------ reset_classifier
@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize(("name", "head"), [c for c in CASES if c[1] != "none"])
def test_reset_classifier_keeps_the_train_or_eval_mode_of_every_module(name, head, training):
    model = _build(name, head).train(training)
    model.reset_classifier(7)
    assert {m.training for m in model.modules()} == {training}
    if head == "classification":
        model.reset_classifier(0, "")
        assert {m.training for m in model.modules()} == {training}


@pytest.mark.parametrize(("name", "head"), [c for c in CASES if c[1] != "none"])
def test_reset_classifier_builds_on_the_models_device_and_dtype(name, head):
    model = _build(name, head, device="meta", dtype=torch.float64)
    model.reset_classifier(3)
    assert {(p.device.type, p.dtype) for p in model.get_classifier().parameters()} == {
        ("meta", torch.float64)
    }


# ------------------------------------------------------------------------------------------------- features
def _assert_feature_info_is_what_the_model_returns(model: torch.nn.Module, size=(64, 48)) -> None:
    info = FeatureInfo(model.feature_info, len(model.feature_info))  # what timm's contract test wraps it in
    x = torch.randn(2, 3, *size, device=next(model.parameters()).device)
    with torch.no_grad():
        feats = model.forward_intermediates(x, intermediates_only=True)
    assert len(feats) == len(info)
    assert [f.shape[1] for f in feats] == info.channels()
    for f, r in zip(feats, info.reduction()):
        assert f.shape[-2] <= -(-size[0] // r) + 1 and f.shape[-2] > size[0] / (2 * r)


@pytest.mark.parametrize("output_stride", [32, 8])
@pytest.mark.parametrize(("name", "head"), CASES)
def test_feature_info_lists_exactly_what_forward_intermediates_returns(name, head, output_stride):
    model = _build(name, head, output_stride=output_stride).eval()
    _assert_feature_info_is_what_the_model_returns(model)
    with pytest.raises(ValueError, match="out of range"):
        model.forward_intermediates(torch.randn(1, 3, 32, 32), indices=[len(model.feature_info)])


@pytest.mark.parametrize("name", NAMES)
def test_feature_info_of_every_name_is_timms_and_follows_its_trunk(name):
    with torch.device("meta"):
        model = timm.create_model(name)
        headless = timm.create_model(name, head="none")
    spec = MODELS[name]
    branch_chs = list(spec.arch.branch_channels)
    for m in (model, headless):
        info = FeatureInfo(m.feature_info, len(m.feature_info))
        chs = dict(zip(m.feature_names(), info.channels()))
        assert [chs[f"branch{b}"] for b in range(4)] == branch_chs
        assert chs.get("concat", sum(branch_chs)) == sum(branch_chs)
        assert all(c == 256 for n, c in chs.items() if n.startswith("pyramid"))


@pytest.mark.parametrize("trunk", ["w18_small", "w18_small_v2", "w64"])
def test_every_kind_of_trunk_returns_what_its_feature_info_lists(trunk):
    """The V2p headless model has every kind of tap (stem, branches, pyramid); shapes only, on the meta device.
    The standard trunks differ only in their widths, which the test above checks for every name."""
    with torch.device("meta"):
        model = timm.create_model(f"hrnetv2p_{trunk}", head="none")
    _assert_feature_info_is_what_the_model_returns(model, (96, 80))


def test_a_v2p_classifier_lists_the_trunk_features_only():
    model = _build("hrnetv2p_w32", "classification")
    assert model.feature_names() == ["stem", "branch0", "branch1", "branch2", "branch3"]


@pytest.mark.parametrize(
    ("name", "names"),
    [
        ("hrnet_w32", ["stem", "branch0", "branch1", "branch2", "branch3"]),
        ("hrnetv2_w32", ["stem", "branch0", "concat", "branch1", "branch2", "branch3"]),
        (
            "hrnetv2p_w32",
            [
                "stem",
                "branch0",
                "pyramid0",
                "branch1",
                "pyramid1",
                "branch2",
                "pyramid2",
                "branch3",
                "pyramid3",
            ]
            + ["pyramid4"],
        ),
    ],
)
def test_features_are_numbered_by_stride(name, names):
    model = _build(name, "none")
    assert model.feature_names() == names
    assert model.feature_info.reduction() == sorted(model.feature_info.reduction())


@pytest.mark.parametrize("kwargs", [{}, dict(feature_cls="getter"), dict(feature_cls="dict")])
@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_features_only_feature_info_matches_its_outputs(name, kwargs):
    model = timm.create_model(name, arch=tiny_config(), features_only=True, **kwargs).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 64, 48))
    feats = list(feats.values()) if isinstance(feats, dict) else feats
    assert [f.shape[1] for f in feats] == model.feature_info.channels()
    FeatureInfo(
        model.feature_info.info, model.feature_info.out_indices
    )  # accepted: reductions never decrease


# ------------------------------------------------------------------------------------------------- registry
def test_list_models_by_module_hrnet_lists_every_name():
    assert sorted(timm.list_models(module="hrnet")) == sorted(NAMES)
    assert all(timm.models.is_model_in_modules(name, ["hrnet"]) for name in NAMES)
    assert "hrnet" in timm.list_modules()


def test_every_entry_point_is_ours_and_lives_in_the_hrnet_module():
    for name in NAMES:
        entrypoint = timm.models.model_entrypoint(name)
        assert entrypoint.__module__ == "hrnet_backbones.hrnet"
        assert entrypoint is getattr(hrnet_backbones.hrnet, name)


def test_timms_other_modules_keep_their_models():
    assert "resnet18" in timm.list_models(module="resnet")
    assert timm.models.is_model_in_modules("resnet18", ["resnet"])


def test_names_cover_every_trunk_in_every_variant():
    trunks = ("w18_small", "w18_small_v2", "w18", "w30", "w32", "w40", "w44", "w48", "w64")
    for prefix in ("hrnet", "hrnetv2", "hrnetv2p"):
        assert {f"{prefix}_{t}" for t in trunks} <= set(NAMES)
    assert {"hrnet_w18_ssld", "hrnet_w48_ssld"} <= set(NAMES)
    assert len(NAMES) == 3 * len(trunks) + 2


def test_unknown_arguments_are_a_type_error_as_timm_requires():
    with pytest.raises(TypeError, match="not_a_model_arg"):
        timm.create_model("hrnetv2p_w18_small", device="meta", not_a_model_arg=1)
