"""optimize_for_inference: same outputs as the eager model (fp32 within 1e-4 relative), every variant and head."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from conftest import randomize
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import hrnet_backbones
from hrnet_backbones import fast as fast_module
from hrnet_backbones import optimize_for_inference, tiny_config
from hrnet_backbones.fast import FusedConv2d, add_nearest_upsampled
from tests.helpers import fixture_expected, fixture_input, fixture_model

# (name, kwargs): every representation, every head, features_only (default, pruned, dict, getter, incre),
# dilated output strides
CASES = {
    "v1-classification": ("hrnet_w32", dict(head_channels=(3, 6, 12, 24), head_features=80)),
    "v1-pose": ("hrnet_w32", dict(arch=tiny_config(multi_scale_last=False), head="pose", num_classes=17)),
    "v1-pose-kernel3": ("hrnet_w32", dict(head="pose", num_classes=5, head_kernel_size=3)),
    "v1-features": ("hrnet_w32", dict(features_only=True)),
    "v1-features-pruned": ("hrnet_w32", dict(features_only=True, out_indices=(0, 2))),
    "v1-features-dict": ("hrnet_w32", dict(features_only=True, feature_cls="dict")),
    "v1-features-getter": ("hrnet_w32", dict(features_only=True, feature_cls="getter")),
    "v1-features-incre": ("hrnet_w32", dict(features_only=True, feature_location="incre")),
    "v2-segmentation": (
        "hrnetv2_w32",
        dict(arch=tiny_config(fusion_upsample="bilinear"), head="segmentation", num_classes=19),
    ),
    "v2-landmark-bilinear-scale": (
        "hrnetv2_w32",
        dict(
            arch=tiny_config(fusion_upsample="bilinear_scale", align_corners=True),
            head="landmark",
            num_classes=7,
        ),
    ),
    "v2-features": ("hrnetv2_w32", dict(features_only=True)),
    "v1-features-os16": ("hrnet_w32", dict(features_only=True, output_stride=16)),
    "v2-segmentation-os8": (
        "hrnetv2_w32",
        dict(
            arch=tiny_config(fusion_upsample="bilinear"), head="segmentation", num_classes=3, output_stride=8
        ),
    ),
    "v2p-neck": ("hrnetv2p_w32", dict(head="none", neck_channels=16)),
    "v2p-features-pruned": ("hrnetv2p_w32", dict(features_only=True, out_indices=(2, 6), neck_channels=16)),
}


def _tiny(case: str) -> nn.Module:
    name, kwargs = CASES[case]
    kwargs = {"arch": tiny_config(), **kwargs}
    torch.manual_seed(0)
    return randomize(timm.create_model(name, **kwargs)).eval()


def _flat(y) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return list(y.values())
    return [t for item in y for t in _flat(item)]


def assert_close_rel(actual, expected, rel: float) -> None:
    """Every output within ``rel`` of the largest magnitude of the expected output (a relative tolerance that does
    not blow up at the zeros a ReLU network is full of)."""
    actual, expected = _flat(actual), _flat(expected)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        assert a.shape == e.shape
        scale = e.float().abs().max().item()
        torch.testing.assert_close(a.float(), e.float(), rtol=rel, atol=rel * scale)


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("size", [(64, 64), (67, 45)])
def test_fast_path_matches_eager_model_fp32(case, size):
    model = _tiny(case)
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        assert_close_rel(fast(x), model(x), rel=1e-4)


@pytest.mark.parametrize("family", ["pose", "seg", "face", "det", "cls"])
def test_fast_path_reproduces_official_fixture_outputs(family):
    fast = optimize_for_inference(fixture_model(family))
    expected = fixture_expected(family)
    with torch.no_grad():
        out = fast(fixture_input(family))
    if family == "det":
        assert_close_rel(out, [expected[f"p{i}"] for i in range(5)], rel=1e-4)
    else:
        assert_close_rel(out, expected["output"], rel=1e-4)


def test_portable_path_matches_onednn_path(monkeypatch):
    """The conv2d + in-place add/ReLU path (GPUs, autograd, builds without oneDNN) computes the same thing."""
    model = _tiny("v2p-neck")
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, 67, 45)
    with torch.no_grad():
        monkeypatch.setattr(fast_module, "SMALL_CONV_MACS", 0)  # oneDNN for every convolution
        fused = fast(x)
        monkeypatch.setattr(fast_module, "ONEDNN_FUSION", False)
        portable = fast(x)
    assert_close_rel(portable, fused, rel=1e-5)


class _OneDNNConvCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func.namespace == "mkldnn" and "convolution_pointwise" in func.__name__
        return func(*args, **(kwargs or {}))


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_small_float32_convolutions_skip_onednn_and_large_ones_use_it(monkeypatch, one_thread):
    """oneDNN's fused op has a fixed cost per call that outweighs its kernel on small convolutions."""
    fast = optimize_for_inference(_tiny("v1-pose"))
    x = torch.randn(2, 3, 64, 48)
    sizes = []
    hooks = [
        m.register_forward_pre_hook(lambda m, args: sizes.append(m._macs(args[0])))
        for m in fast.modules()
        if isinstance(m, fast_module.FusedConv2d)
    ]
    with torch.no_grad():
        fast(x)
        for h in hooks:
            h.remove()
        threshold = sorted(sizes)[len(sizes) // 2]  # half the calls below, half at or above
        monkeypatch.setattr(fast_module, "SMALL_CONV_MACS", threshold)
        counter = _OneDNNConvCount()
        with counter:
            out = fast(x)
        assert counter.calls == sum(size >= threshold for size in sizes) > 0
        assert counter.calls < len(sizes)
        assert_close_rel(out, _tiny("v1-pose")(x), rel=1e-4)


@pytest.fixture(params=["onednn-bf16", "fp32-compute"])
def cpu_bf16_path(request, monkeypatch):
    """Both bfloat16 paths on any machine: oneDNN's bfloat16 kernels (skipped where this CPU or
    HRNET_BACKBONES_CPU_BF16=0 rules them out) and the float32-compute fallback of CPUs without them (forced)."""
    if request.param == "onednn-bf16":
        if not fast_module.ONEDNN_BF16:
            pytest.skip("oneDNN has no bfloat16 kernels for this CPU (or HRNET_BACKBONES_CPU_BF16=0)")
    else:
        monkeypatch.setattr(fast_module, "ONEDNN_BF16", False)
    assert fast_module.cpu_bf16_path() == request.param
    return request.param


class _OneDNNCalls(TorchDispatchMode):
    """Records the dtypes of the tensors passed to every oneDNN op called inside the mode."""

    def __init__(self):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.namespace == "mkldnn":
            self.dtypes |= {a.dtype for a in args if isinstance(a, torch.Tensor)}
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("case", ["v1-pose", "v2p-neck", "v2-segmentation"])
def test_bfloat16_fast_path_is_close_to_fp32(case, cpu_bf16_path, monkeypatch):
    monkeypatch.setattr(fast_module, "native_bf16_cpu", lambda: True)
    model = _tiny(case)
    fast = optimize_for_inference(model, dtype=torch.bfloat16)
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        out = fast(x)
        ref = model(x)
    assert all(o.dtype == torch.bfloat16 for o in _flat(out))
    assert_close_rel(out, ref, rel=5e-2)


@pytest.mark.filterwarnings("ignore:dtype=torch.bfloat16 on a CPU without native bfloat16")
def test_bfloat16_fallback_calls_onednn_in_float32_only(monkeypatch):
    """What makes the fallback run on an AVX2-only CPU: no bfloat16 tensor ever reaches a oneDNN kernel."""
    monkeypatch.setattr(fast_module, "ONEDNN_BF16", False)
    fast = optimize_for_inference(_tiny("v1-pose"), dtype=torch.bfloat16)
    calls = _OneDNNCalls()
    with torch.no_grad(), calls:
        out = fast(torch.randn(1, 3, 64, 48))
    assert out.dtype == torch.bfloat16
    assert calls.dtypes == {torch.float32}


@pytest.mark.filterwarnings("ignore:dtype=torch.bfloat16 on a CPU without native bfloat16")
def test_bfloat16_fallback_keeps_bfloat16_weights(monkeypatch):
    monkeypatch.setattr(fast_module, "ONEDNN_BF16", False)
    fast = optimize_for_inference(_tiny("v1-features"), dtype=torch.bfloat16)
    with torch.no_grad():
        fast(torch.randn(1, 3, 64, 64))
    assert all(p.dtype == torch.bfloat16 for p in fast.parameters())


@pytest.mark.skipif(not fast_module.ONEDNN_BF16, reason="oneDNN has no bfloat16 kernels for this CPU")
def test_bfloat16_fallback_rounds_like_the_onednn_bfloat16_kernels(monkeypatch):
    """Both accumulate in float32 and round each convolution's result to bfloat16 once."""
    model = _tiny("v1-pose")
    x = torch.randn(2, 3, 64, 48)
    native = optimize_for_inference(model, dtype=torch.bfloat16)
    monkeypatch.setattr(fast_module, "ONEDNN_BF16", False)
    fallback = optimize_for_inference(model, dtype=torch.bfloat16)
    with torch.no_grad():
        a, b = fallback(x), native(x)
    assert_close_rel(a, b, rel=1e-2)


@pytest.mark.parametrize("value", ["0", "auto", "", "yes"])
def test_the_cpu_bf16_environment_variable(value, monkeypatch):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", value)
    if value == "yes":
        with pytest.raises(ValueError, match="HRNET_BACKBONES_CPU_BF16='yes'.*0.*auto"):
            fast_module.cpu_bf16_forced_off()
        return
    assert fast_module.cpu_bf16_forced_off() is (value == "0")
    if value == "0":
        assert not fast_module._probe_onednn_bf16() and not fast_module.native_bf16_cpu()


def test_bfloat16_on_a_cpu_without_native_support_warns(monkeypatch):
    monkeypatch.setattr(fast_module, "native_bf16_cpu", lambda: False)
    with pytest.warns(UserWarning, match="without native bfloat16.*slower than float32"):
        optimize_for_inference(_tiny("v1-features"), dtype=torch.bfloat16)


def test_bfloat16_fallback_warning_says_it_computes_in_float32(monkeypatch):
    monkeypatch.setattr(fast_module, "native_bf16_cpu", lambda: False)
    monkeypatch.setattr(fast_module, "ONEDNN_BF16", False)
    with pytest.warns(UserWarning, match="AVX512BW/VL/DQ.*computes each convolution in float32"):
        optimize_for_inference(_tiny("v1-features"), dtype=torch.bfloat16)


def test_outputs_are_channels_last():
    fast = optimize_for_inference(_tiny("v1-features"))
    with torch.no_grad():
        feats = fast(torch.randn(1, 3, 64, 64))
    assert all(f.is_contiguous(memory_format=torch.channels_last) for f in feats)


def test_channels_last_false_keeps_nchw():
    fast = optimize_for_inference(_tiny("v1-features"), channels_last=False)
    with torch.no_grad():
        feats = fast(torch.randn(1, 3, 64, 64))
    assert all(f.is_contiguous() for f in feats)


@pytest.mark.parametrize("built_in_inference_mode", [False, True])
def test_a_model_optimised_under_inference_mode_runs_in_every_mode(built_in_inference_mode, monkeypatch):
    """Optimised (or even created) under torch.inference_mode, the weights must still be normal tensors: the
    packed-weight cache reads their version counter, which inference tensors lack."""
    monkeypatch.setattr(
        fast_module, "SMALL_CONV_MACS", 0
    )  # every convolution through oneDNN's packed weights
    if built_in_inference_mode:
        with torch.inference_mode():
            model = _tiny("v1-pose")
    else:
        model = _tiny("v1-pose")
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        expected = model(x)
    with torch.inference_mode():
        fast = optimize_for_inference(model)
        assert_close_rel(fast(x), expected, rel=1e-4)
    assert not any(p.is_inference() for p in fast.parameters())
    with torch.no_grad():
        assert_close_rel(fast(x), expected, rel=1e-4)
    assert_close_rel(fast(x), expected, rel=1e-4)


def test_every_batchnorm_is_folded_and_nothing_requires_grad():
    fast = optimize_for_inference(_tiny("v1-classification"))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    assert not any(p.requires_grad for p in fast.parameters())
    assert not fast.training


def test_the_original_model_is_left_untouched():
    model = _tiny("v1-pose")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    optimize_for_inference(model)
    after = model.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_inplace_returns_the_same_object_optimised():
    model = _tiny("v1-features")
    fast = optimize_for_inference(model, inplace=True)
    assert fast is model
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_optimising_twice_changes_nothing():
    once = optimize_for_inference(_tiny("v2-features"))
    twice = optimize_for_inference(once)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert all(torch.equal(a, b) for a, b in zip(_flat(once(x)), _flat(twice(x))))


def test_the_input_tensor_is_not_modified():
    fast = optimize_for_inference(_tiny("v1-features"))
    x = torch.randn(1, 3, 64, 64).contiguous(memory_format=torch.channels_last)
    x0 = x.clone()
    with torch.no_grad():
        fast(x)
    assert torch.equal(x, x0)


def test_a_fused_stage_does_not_modify_the_tensors_it_is_given():
    fast = optimize_for_inference(_tiny("v1-features"))
    xs = [
        torch.randn(1, c, 16 // 2**i, 16 // 2**i).contiguous(memory_format=torch.channels_last)
        for i, c in enumerate((4, 8, 16))
    ]
    copies = [x.clone() for x in xs]
    with torch.no_grad():
        fast.stage3(xs)
    assert all(torch.equal(a, b) for a, b in zip(xs, copies))


def test_model_in_training_mode_is_refused_with_a_clear_message():
    model = _tiny("v1-features").train()
    with pytest.raises(ValueError, match=r"training mode.*model\.eval\(\)"):
        optimize_for_inference(model)


def test_a_model_of_another_library_is_refused():
    with pytest.raises(TypeError, match="model of this package"):
        optimize_for_inference(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).eval())


def test_forward_intermediates_still_work_on_the_fast_model():
    model = _tiny("v2-segmentation")
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        got = fast.forward_intermediates(x, indices=[0, 1, 4, 5], intermediates_only=True)
        want = model.forward_intermediates(x, indices=[0, 1, 4, 5], intermediates_only=True)
    assert_close_rel(got, want, rel=1e-4)


def test_input_gradients_flow_through_the_portable_path():
    model = _tiny("v1-pose")
    fast = optimize_for_inference(model)
    x = torch.randn(1, 3, 64, 48, requires_grad=True)
    fast(x).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    model(x_ref).sum().backward()
    assert_close_rel(x.grad, x_ref.grad, rel=1e-4)


@pytest.mark.slow
def test_a_full_size_model_keeps_its_feature_shapes():
    """A full-width model (on the meta device: shapes only) goes through the fast path with its interface intact:
    branches, pyramid levels and their feature_info."""
    with torch.device("meta"):
        model = timm.create_model("hrnetv2p_w48", features_only=True, out_indices=(1, 2, 3, 5, 7, 9)).eval()
        fast = optimize_for_inference(model)
        x = torch.empty(1, 3, 256, 192)
        shapes = [f.shape for f in fast(x)]
        want = [f.shape for f in model(x)]
    assert shapes == want
    assert fast.feature_info.channels() == model.feature_info.channels()


@pytest.mark.parametrize("size", [(8, 6), (7, 5), (9, 12), (1, 3)])
@pytest.mark.parametrize("factor", [2, 4])
def test_nearest_upsampled_add_equals_interpolate_and_crop(size, factor):
    h, w = size
    base = torch.randn(2, 3, h, w).contiguous(memory_format=torch.channels_last)
    low = torch.randn(2, 3, -(-h // factor), -(-w // factor)).contiguous(memory_format=torch.channels_last)
    want = base + F.interpolate(low, scale_factor=float(factor), mode="nearest")[..., :h, :w]
    assert torch.equal(add_nearest_upsampled(base, low, factor), want)
    assert torch.equal(add_nearest_upsampled(base, low, factor, relu=True), want.relu())
    assert torch.equal(add_nearest_upsampled(base.clone(), low, factor, inplace=True), want)


def test_folded_convolution_equals_conv_then_batchnorm():
    conv, bn = nn.Conv2d(5, 6, 3, 2, 1, bias=False), randomize(nn.BatchNorm2d(6)).eval()
    fused = FusedConv2d.fold(conv, bn, relu=True)
    x = torch.randn(2, 5, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(fused(x), torch.relu(bn(conv(x))), rtol=1e-5, atol=1e-5)


def test_exported_from_the_package():
    assert hrnet_backbones.optimize_for_inference is optimize_for_inference


@pytest.mark.slow
def test_the_fast_model_traces_into_one_torch_compile_graph():
    """``compile=`` must see the whole model: no graph breaks (which would recompile per layer)."""
    fast = optimize_for_inference(_tiny("v2p-neck"))
    with torch.inference_mode():
        explanation = torch._dynamo.explain(fast)(torch.randn(1, 3, 67, 45))
    assert explanation.graph_break_count == 0, [b.reason for b in explanation.break_reasons]


def test_on_several_threads_every_convolution_uses_onednn(monkeypatch):
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        fast = optimize_for_inference(_tiny("v1-pose"))
        n = sum(isinstance(m, fast_module.FusedConv2d) for m in fast.modules())
        counter = _OneDNNConvCount()
        with torch.no_grad(), counter:
            fast(torch.randn(1, 3, 64, 48))
        assert counter.calls >= n > 0  # every module called at least once; none took the portable path
    finally:
        torch.set_num_threads(threads)
