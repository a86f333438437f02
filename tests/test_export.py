"""Export and compilers: ONNX (both exporters) with dynamic batch, height and width, torch.export,
torch.compile(fullgraph=True), torch.jit.trace.

Graphs are traced at one size and checked at others: one not a multiple of 32, and one so small that the V2p
pyramid pools a whole side (where a size baked into the graph would go wrong). Weights are the official tiny
fixtures, or random ones with calibrated BatchNorm statistics, so outputs are of order one and the 1e-4
tolerance means what it says. The torch.export-based ONNX exporter (torch's default) costs tens of seconds per
model on CPU, so it runs once, on the micro trunk with every feature index (stem, branches, and the V2p pyramid
built on the V2 concatenation); the TorchScript-based exporter covers each variant, the heads and two registered
full-size names. torch.compile uses the aot_eager backend: dynamo's full graph and AOTAutograd's trace, without
a C++ build per test (inductor compiles and matches eager too; see the README for the measured run).
"""

from __future__ import annotations

import warnings

import numpy as np
import onnxruntime as ort
import pytest
import timm
import torch
from torch.export import Dim

from hrnet_backbones import tiny_config
from hrnet_backbones.loading import fit_checkpoint
from tests.helpers import MICRO, calibrate_batch_norm, fixture_model, timm_state_dict

TRACE_SIZE = (64, 96)
CHECK_SIZES = [
    (64, 96),
    (72, 56),
    (20, 36),
]  # traced; not a multiple of 32; smaller than the pyramid's pooling
ATOL = 1e-4
DYNAMIC = {"x": {0: Dim.DYNAMIC, 2: Dim.DYNAMIC, 3: Dim.DYNAMIC}}


def _as_list(out) -> list[torch.Tensor]:
    return list(out) if isinstance(out, (list, tuple)) else [out]


def _inputs(size: tuple[int, int], batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, *size, generator=torch.Generator().manual_seed(size[0] * 1000 + size[1]))


def _features(name: str, family: str, out_indices: tuple[int, ...], **kwargs) -> torch.nn.Module:
    """A features-only tiny model with the trunk (and neck) of an official fixture checkpoint."""
    model = timm.create_model(name, features_only=True, out_indices=out_indices, **kwargs)
    model.load_state_dict(fit_checkpoint(timm_state_dict(family), model))
    return model.eval()


def _assert_onnx_matches(
    path: str, model: torch.nn.Module, sizes=CHECK_SIZES, relative: bool = False
) -> None:
    """onnxruntime's outputs equal the model's to ATOL at every size (batch 1 at the last one).

    ``relative``: to ATOL times the output's largest magnitude instead; random full-size trunks reach ~100
    through their residual sums, and the two runtimes sum in different orders.
    """
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    for size in sizes:
        x = _inputs(size, batch=1 if size == sizes[-1] else 2)
        with torch.no_grad():
            expected = _as_list(model(x))
        got = session.run(None, {name: x.numpy()})
        assert len(got) == len(expected)
        for g, e in zip(got, expected):
            assert g.shape == tuple(e.shape), (size, g.shape, tuple(e.shape))
            atol = ATOL * max(1.0, e.abs().max().item()) if relative else ATOL
            np.testing.assert_allclose(g, e.numpy(), rtol=0, atol=atol, err_msg=f"input size {size}")


#: variant -> model factory (tiny trunks with the official fixture weights)
VARIANTS = {
    "v1_features": lambda: _features("hrnet_w32", "cls", (0, 1, 2, 3, 4), arch=tiny_config()),
    "v2_features": lambda: _features(
        "hrnetv2_w32", "seg", (0, 1, 2, 3, 4, 5), arch=tiny_config(fusion_upsample="bilinear")
    ),
    "v2p_features": lambda: _features(
        "hrnetv2p_w32", "det", (2, 4, 6, 8, 9), arch=tiny_config(), neck_channels=16
    ),
    "pose_model": lambda: fixture_model("pose"),
    "segmentation_model": lambda: fixture_model("seg"),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_torchscript_onnx_export_with_dynamic_size_matches_pytorch(tmp_path, variant):
    model = VARIANTS[variant]()
    path = str(tmp_path / f"{variant}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated, and says so
        torch.onnx.export(
            model,
            (_inputs(TRACE_SIZE),),
            path,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}},
        )
    _assert_onnx_matches(path, model)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hrnetv2p_w18"])  # the V1 branches and the V2 concatenation run inside it
def test_registered_full_size_models_export_to_onnx(tmp_path, name):
    model = calibrate_batch_norm(timm.create_model(name, features_only=True), input_size=(64, 64), steps=1)
    path = str(tmp_path / f"{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (_inputs((64, 64)),),
            path,
            dynamo=False,
            input_names=["x"],
            dynamic_axes={"x": {0: "batch", 2: "height", 3: "width"}},
        )
    _assert_onnx_matches(path, model, sizes=[(64, 64), (40, 72)], relative=True)


@pytest.mark.slow
def test_torch_export_and_the_default_onnx_exporter_work_at_every_size(tmp_path):
    """torch.export with dynamic batch, height and width, then the torch.export-based ONNX exporter on it.

    torch.export specialises any size that is 0 or 1 in the example (here the 1-pixel top pyramid level, and a
    batch of one) unless told not to: ``backed_size_oblivious`` (PyTorch's documented switch for it) gives a
    program valid for every size, which is what an exported backbone is for.
    """
    model = calibrate_batch_norm(
        timm.create_model("hrnetv2p_w32", arch=MICRO, features_only=True, out_indices=tuple(range(10)))
    )
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program = torch.export.export(model, (_inputs(TRACE_SIZE),), dynamic_shapes=DYNAMIC)
    for size in [*CHECK_SIZES, (1, 1)]:
        x = _inputs(size, batch=1)
        with torch.no_grad():
            for a, b in zip(program.module()(x), model(x)):
                torch.testing.assert_close(a, b, rtol=0, atol=ATOL)
    path = str(tmp_path / "micro.onnx")
    torch.onnx.export(program, (_inputs(TRACE_SIZE),), path, dynamo=True, verbose=False)
    _assert_onnx_matches(path, model)


#: compile cases: the micro trunk (dynamo traces every op; the tiny one takes several times longer); the second
#: covers the stem, every branch and the V2p pyramid built on the V2 concatenation
COMPILE_CASES = {
    "pose": lambda: timm.create_model(
        "hrnet_w32", arch=MICRO.replace(multi_scale_last=False), head="pose", num_classes=3
    ),
    "all_features": lambda: timm.create_model(
        "hrnetv2p_w32", arch=MICRO, features_only=True, out_indices=tuple(range(10))
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(COMPILE_CASES))
def test_torch_compile_fullgraph_matches_eager(case):
    model = calibrate_batch_norm(COMPILE_CASES[case]())
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: a graph break raises
    x = _inputs(CHECK_SIZES[1])
    with torch.no_grad():
        for a, b in zip(_as_list(compiled(x)), _as_list(model(x))):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


@pytest.mark.slow
def test_torch_compile_trains():
    model = calibrate_batch_norm(COMPILE_CASES["pose"]()).train()
    compiled = torch.compile(model, fullgraph=True, backend="eager")  # training-mode forward: no graph break
    compiled(_inputs(TRACE_SIZE)).square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.slow
def test_jit_trace_generalises_to_other_sizes():
    """TorchScript consumers (libtorch) can trace; torch.jit.script is not supported (see the README)."""
    model = calibrate_batch_norm(COMPILE_CASES["all_features"]())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, _inputs(TRACE_SIZE))
    for size in CHECK_SIZES[1:]:
        x = _inputs(size)
        with torch.no_grad():
            for a, b in zip(traced(x), model(x)):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
