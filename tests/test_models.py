"""The timm model surface of every registered HRNet: shapes, features, indices, training, tracing."""

from __future__ import annotations

import copy
import math

import pytest
import timm
import torch
from conftest import randomize
from timm.layers import create_feature_extractor, get_notrace_functions, get_notrace_modules
from torchvision.models.feature_extraction import NodePathTracer

from hrnet_backbones import HRNet, HRNetFeatures, tiny_config

#: every variant on the smallest and a standard trunk (every name: tests/test_timm_contract.py)
SOME_NAMES = [
    f"{prefix}_{trunk}" for prefix in ("hrnet", "hrnetv2", "hrnetv2p") for trunk in ("w18_small", "w32")
]


def expected_shapes(model: HRNet, h: int, w: int, indices: list[int]) -> list[tuple[int, int]]:
    """Spatial sizes from the network's own rounding: ceil at each stride-2 conv; the pyramid floors, never below 1."""

    def at(stride: int) -> tuple[int, int]:
        sh, sw = h, w
        for _ in range(int(math.log2(stride))):
            sh, sw = -(-sh // 2), -(-sw // 2)
        return sh, sw

    sizes = []
    for name, stride in zip(model.feature_names(indices), model.feature_info.reduction(indices)):
        if name.startswith("pyramid"):
            s4 = at(4)
            sizes.append((max(1, s4[0] // (stride // 4)), max(1, s4[1] // (stride // 4))))
        else:
            sizes.append(at(stride))
    return sizes


@pytest.mark.slow
@pytest.mark.parametrize("size", [(256, 192), (250, 330)])
@pytest.mark.parametrize("name", SOME_NAMES)
def test_feature_shapes_match_feature_info(name, size):
    with torch.device("meta"):
        model = timm.create_model(name, head="none")
        default = timm.create_model(name, features_only=True)
    # shapes only: run outside the device context (its per-op dispatch costs more than the meta kernels)
    feats = model.forward_intermediates(torch.empty(2, 3, *size, device="meta"), intermediates_only=True)
    info = model.feature_info
    every = list(range(len(info.info)))
    assert [tuple(f.shape[:2]) for f in feats] == [(2, c) for c in info.channels(every)]
    assert [tuple(f.shape[-2:]) for f in feats] == expected_shapes(model, *size, every)
    assert default.feature_info.channels() == info.channels(list(default.out_indices))
    assert default.feature_info.reduction() == info.reduction(list(default.out_indices))


@pytest.mark.parametrize(
    ("name", "channels", "strides"),
    [
        ("hrnet_w32", [64, 32, 64, 128, 256], [2, 4, 8, 16, 32]),
        ("hrnetv2_w32", [480], [4]),
        ("hrnetv2p_w32", [256] * 5, [4, 8, 16, 32, 64]),
        ("hrnetv2_w18", [270], [4]),
        ("hrnetv2_w48", [720], [4]),
    ],
)
def test_features_only_defaults(name, channels, strides):
    with torch.device("meta"):
        model = timm.create_model(name, features_only=True)
    assert isinstance(model, HRNetFeatures)
    assert model.feature_info.channels() == channels
    assert model.feature_info.reduction() == strides


@pytest.mark.slow
def test_real_forward_on_an_odd_size_full_model():
    model = timm.create_model(
        "hrnetv2p_w18", features_only=True, out_indices=(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
    ).eval()
    with torch.no_grad():
        feats = model(torch.randn(1, 3, 257, 193))
    assert [tuple(f.shape[-2:]) for f in feats] == expected_shapes(model, 257, 193, list(range(10)))
    assert all(torch.isfinite(f).all() for f in feats)


@pytest.mark.parametrize(
    ("out_indices", "expected"),
    [((1, 2), [1, 2]), ((-1,), [4]), ((0, -2), [0, 3]), (2, [3, 4]), (5, [0, 1, 2, 3, 4])],
)
def test_out_indices_as_timm_takes_them(out_indices, expected):
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True, out_indices=out_indices)
    assert list(model.feature_info.out_indices) == expected
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == model.feature_info.channels()


def test_v2_out_indices_reach_the_concatenation_and_branches():
    model = timm.create_model("hrnetv2_w32", arch=tiny_config(), features_only=True, out_indices=(1, 2, -1))
    assert model.feature_info.module_name() == ["branch0", "concat", "branch3"]
    assert model.feature_info.channels() == [4, 60, 32]
    assert model.feature_info.reduction() == [4, 4, 32]


@pytest.mark.parametrize("bad", [(5,), (-7,), 0, 6])
def test_out_of_range_out_indices_are_refused(bad):
    with pytest.raises(ValueError, match="out of range"):
        timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True, out_indices=bad)


@pytest.mark.parametrize("name", ["hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32"])
def test_feature_cls_getter_matches_the_default_extractor(name):
    native = randomize(timm.create_model(name, arch=tiny_config(), features_only=True)).eval()
    getter = timm.create_model(name, arch=tiny_config(), features_only=True, feature_cls="getter").eval()
    getter.model.load_state_dict(native.state_dict(), strict=False)
    assert getter.feature_info.channels() == native.feature_info.channels()
    assert getter.feature_info.reduction() == native.feature_info.reduction()
    x = torch.randn(2, 3, 72, 56)
    with torch.no_grad():
        for a, b in zip(getter(x), native(x), strict=True):
            torch.testing.assert_close(a, b)


def test_feature_cls_dict_names_the_features():
    model = timm.create_model("hrnetv2p_w32", arch=tiny_config(), features_only=True, feature_cls="dict")
    out = model(torch.randn(1, 3, 64, 64))
    assert list(out) == ["pyramid0", "pyramid1", "pyramid2", "pyramid3", "pyramid4"]


@pytest.mark.parametrize(
    "feature_cls, why",
    [("hook", "hooks or fx cannot tap"), ("fx", "hooks or fx cannot tap"), ("bogus", "not a feature_cls")],
)
def test_feature_cls_that_cannot_tap_branches_is_refused_clearly(feature_cls, why):
    with pytest.raises(ValueError, match=rf"feature_cls='{feature_cls}' .*{why}.*'dict' or 'getter'"):
        timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True, feature_cls=feature_cls)


def test_pose_trunk_with_single_scale_last_module_refuses_lower_branch_features():
    arch = tiny_config(multi_scale_last=False)
    model = timm.create_model("hrnet_w32", arch=arch, features_only=True)
    assert list(model.feature_info.out_indices) == [0, 1]
    with pytest.raises(ValueError, match=r"out of range.*branch\(es\) \[0\]"):
        timm.create_model("hrnet_w32", arch=arch, features_only=True, out_indices=(1, 2))
    with pytest.raises(ValueError, match="the V2 representation needs all four branches"):
        timm.create_model("hrnetv2_w32", arch=arch)
    with pytest.raises(ValueError, match="the V2p representation needs all four branches"):
        timm.create_model("hrnetv2p_w32", arch=arch)


@pytest.mark.parametrize("name", SOME_NAMES)
def test_every_model_builds_on_the_meta_device(name):
    with torch.device("meta"):
        model = timm.create_model(name)
    assert all(p.device.type == "meta" for p in model.parameters())
    assert model.pretrained_cfg["architecture"] == name


def test_forward_intermediates_and_forward_features_agree():
    model = randomize(timm.create_model("hrnetv2_w32", arch=tiny_config(), head="none")).eval()
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        final, inter = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))
        assert torch.equal(inter[2], final)  # index 2 is the concatenation
        only = model.forward_intermediates(x, indices=[0], intermediates_only=True, stop_early=True)
        assert torch.equal(only[0], inter[0])


def test_classification_forward_head_pre_logits():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), head_channels=(3, 6, 12, 24), head_features=80)
    feats = model.forward_features(torch.randn(2, 3, 64, 64))
    assert feats.shape == (2, 80, 2, 2)
    assert model.forward_head(feats, pre_logits=True).shape == (2, 80)
    assert model.forward_head(feats).shape == (2, 1000)


def test_prune_intermediate_layers_drops_unused_parameters():
    model = timm.create_model("hrnet_w32", arch=tiny_config())
    before = sum(p.numel() for p in model.parameters())
    kept = model.prune_intermediate_layers([0, 1])
    assert kept == [0, 1]
    assert model.classifier is not None and not any(k.startswith("classifier") for k in model.state_dict())
    assert sum(p.numel() for p in model.parameters()) < before
    assert model.stage4[-1].out_branches == (0,)
    out = model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=[0, 1], intermediates_only=True)
    assert [t.shape[1] for t in out] == [64, 4]
    stem_only = timm.create_model("hrnet_w32", arch=tiny_config())
    stem_only.prune_intermediate_layers(indices=[0])
    assert [k for k in stem_only.state_dict() if not k.startswith(("conv1", "bn1"))] == []


@pytest.mark.parametrize(
    ("name", "out_indices"),
    [
        *(("hrnet_w32", i) for i in (None, (2,), (0, 3))),
        *(("hrnetv2_w32", i) for i in (None, (2,), (0, 2), (0, 3))),  # concat; stem and a branch
        *(("hrnetv2p_w32", i) for i in (None, (4,), (2, 8), (3, 6))),  # pyramid levels; a branch and a level
    ],
)
def test_every_parameter_of_a_feature_extractor_gets_a_gradient(name, out_indices):
    model = timm.create_model(name, arch=tiny_config(), features_only=True, out_indices=out_indices)
    sum(f.float().pow(2).mean() for f in model(torch.randn(2, 3, 64, 64))).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


@pytest.mark.parametrize("name", ["hrnet_w32", "hrnetv2_w32", "hrnetv2p_w32"])
def test_backward_pass_of_the_full_model(name):
    model = timm.create_model(name, arch=tiny_config(), head_channels=(3, 6, 12, 24), head_features=40)
    out = model(torch.randn(2, 3, 64, 64))
    out.logsumexp(1).mean().backward()
    # every parameter, so DistributedDataParallel needs no find_unused_parameters (a V2p classifier has no neck)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_a_v2p_classifier_has_no_pyramid_and_says_where_to_get_one():
    model = timm.create_model(
        "hrnetv2p_w32", arch=tiny_config(), head_channels=(3, 6, 12, 24), head_features=40
    )
    assert model.neck is None and not any(k.startswith("neck.") for k in model.state_dict())
    assert model.feature_names() == ["stem", "branch0", "branch1", "branch2", "branch3"]  # what it can return
    feats = model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=(1, 4), intermediates_only=True)
    assert [f.shape[1] for f in feats] == [model.feature_info.info[i]["num_chs"] for i in (1, 4)]
    with pytest.raises(ValueError, match=r"out of range.*no pyramid neck .* features_only=True, head='none'"):
        model.forward_intermediates(torch.randn(1, 3, 64, 64), indices=(5,))


@pytest.mark.parametrize("name", ["hrnet_w32", "hrnetv2p_w32"])
def test_gradient_checkpointing_gives_the_same_gradients(name):
    torch.manual_seed(0)
    model = timm.create_model(name, arch=tiny_config(), features_only=True)
    x = torch.randn(2, 3, 64, 48)

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.zero_grad()
        model.set_grad_checkpointing(checkpointing)
        sum(f.sum() for f in model(x)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    plain, ckpt = grads(False), grads(True)
    for n in plain:
        torch.testing.assert_close(ckpt[n], plain[n], rtol=1e-4, atol=1e-6, msg=n)


def test_gradient_checkpointing_updates_batchnorm_statistics_once_per_step():
    """The recomputing pass in backward must not move the running statistics a second time: a checkpointed
    training step ends with the statistics (and batch counts) of the same step without checkpointing."""
    torch.manual_seed(0)
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True).train()
    x = torch.randn(2, 3, 64, 48)
    start = copy.deepcopy(model.state_dict())

    def step(checkpointing: bool) -> dict[str, torch.Tensor]:
        model.load_state_dict(start)
        model.set_grad_checkpointing(checkpointing)
        sum(f.sum() for f in model(x)).backward()
        return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}

    plain, ckpt = step(False), step(True)
    assert any(not torch.equal(plain[k], start[k]) for k in plain)  # the step did update them
    for k in plain:
        torch.testing.assert_close(ckpt[k], plain[k], rtol=1e-5, atol=1e-6, msg=k)


def test_gradient_checkpointing_saves_fewer_activations_for_backward():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True)
    x = torch.randn(2, 3, 64, 48)

    def saved_bytes(checkpointing: bool) -> int:
        model.set_grad_checkpointing(checkpointing)
        total = 0

        def pack(t: torch.Tensor) -> torch.Tensor:
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            feats = model(x)
        sum(f.sum() for f in feats).backward()  # the recomputation happens here, outside the count
        return total

    plain, checkpointed = saved_bytes(False), saved_bytes(True)
    assert checkpointed < plain / 3, (plain, checkpointed)


def test_in_chans_builds_a_matching_first_conv():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), in_chans=1, features_only=True)
    assert model.conv1.weight.shape[1] == 1
    assert model(torch.randn(1, 1, 64, 64))[0].shape == (1, 64, 32, 32)


@pytest.mark.parametrize(
    ("x", "match"),
    [(torch.randn(3, 64, 64), "3-D"), (torch.randn(1, 4, 64, 64), "in_chans=4")],
)
def test_bad_input_gets_a_clear_error(x, match):
    model = timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True)
    with pytest.raises(ValueError, match=match):
        model(x)


def test_reset_classifier_and_get_classifier():
    model = timm.create_model("hrnet_w32", arch=tiny_config(), head_channels=(3, 6, 12, 24), head_features=40)
    model.reset_classifier(7)
    assert model.get_classifier().out_features == 7
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 7)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 40)
    pose = timm.create_model("hrnet_w32", arch=tiny_config(), head="pose", num_classes=17)
    pose.reset_classifier(16)
    assert pose.get_classifier().out_channels == 16
    assert pose(torch.randn(1, 3, 64, 48)).shape == (1, 16, 16, 12)


def test_group_matcher_groups_every_parameter():
    model = timm.create_model("hrnet_w32", arch=tiny_config())
    groups = timm.models.group_parameters(model, model.group_matcher())
    grouped = sum(len(names) for names in groups.values())
    assert grouped == len(list(model.named_parameters()))
    assert len(groups) > 4


def test_train_and_eval_modes_differ_only_through_batchnorm():
    model = randomize(timm.create_model("hrnet_w32", arch=tiny_config(), features_only=True))
    x = torch.randn(4, 3, 64, 64)
    model.train()
    train_out = model(x)
    model.eval()
    with torch.no_grad():
        eval_out = model(x)
    assert not torch.allclose(train_out[-1], eval_out[-1])
    assert model.bn1.num_batches_tracked.item() == 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_forward_is_finite_and_close(dtype):
    model = randomize(timm.create_model("hrnetv2_w32", arch=tiny_config(), features_only=True)).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)[0]
        with torch.autocast("cpu", dtype=dtype):
            low = model(x)[0]
    assert low.dtype == dtype and torch.isfinite(low).all()
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()


@pytest.mark.parametrize("name", ["hrnet_w32", "hrnetv2p_w32"])
@pytest.mark.parametrize("features_only", [False, True])
def test_torch_fx_tracing_as_timm_tests_do(name, features_only):
    """timm's test suite traces with its leaf modules / autowrapped functions and compares with eager."""
    kwargs = dict(arch=tiny_config(), features_only=features_only)
    if not features_only:
        kwargs.update(head_channels=(3, 6, 12, 24), head_features=40)
    model = randomize(timm.create_model(name, **kwargs)).eval()
    # as timm's _create_fx_model: trace, then return the nodes that feed the graph's output
    tracer = NodePathTracer(leaf_modules=get_notrace_modules(), autowrap_functions=get_notrace_functions())
    graph = tracer.trace(model)
    output = list(graph.nodes)[-1]
    return_nodes = [tracer.node_to_qualname[n] for n in output._input_nodes]
    fx_model = create_feature_extractor(model, return_nodes=return_nodes)
    x = torch.randn(1, 3, 72, 56)
    with torch.no_grad():
        eager = model(x)
        traced = list(fx_model(x).values())
    eager = eager if isinstance(eager, list) else [eager]
    for a, b in zip(eager, traced, strict=True):
        torch.testing.assert_close(a, b)


def test_unknown_options_are_refused():
    with pytest.raises(TypeError, match="unexpected keyword"):
        HRNet(tiny_config(), bogus=1)
    with pytest.raises(ValueError, match="representation"):
        HRNet(tiny_config(), representation="v3")
    with pytest.raises(ValueError, match="output_stride"):
        HRNet(
            tiny_config(), output_stride=4
        )  # 8 and 16 dilate the lower branches (tests/test_output_stride.py)
