"""Benchmark contenders that run an exported file: ``ort``, ``ort-int8``, ``openvino``, ``openvino-int8``.

Each builds what ``hrnet-backbones export`` would write for the benchmarked model (fp32 ONNX from the
TorchScript-based exporter, batch, height and width dynamic; int8 by ONNX Runtime's static QDQ quantization
calibrated on 8 :func:`~hrnet_backbones.deploy.export.natural_image` crops of the group's size)
and times the runtime's call on the group's input. ONNX Runtime runs with all graph optimisations, OpenVINO in
fp32 with the latency hint; both with as many intra-op threads as PyTorch. The files of one model and input size
are built once per process and shared by the contenders and batch sizes (ONNX Runtime and OpenVINO run the same
int8 file).
"""

from __future__ import annotations

import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["DEPLOY_IMPLS", "deploy_step"]

#: contender -> (runtime, int8)
DEPLOY_IMPLS: dict[str, tuple[str, bool]] = {
    "ort": ("onnxruntime", False),
    "ort-int8": ("onnxruntime", True),
    "openvino": ("openvino", False),
    "openvino-int8": ("openvino", True),
}

_workdir: tempfile.TemporaryDirectory | None = None
#: model -> {(H, W, int8): file}; weak, so a freed model's entry cannot be mistaken for a new one's
_files: weakref.WeakKeyDictionary[nn.Module, dict[tuple[int, int, bool], Path]] = weakref.WeakKeyDictionary()


def _file(model: nn.Module, x: torch.Tensor, int8: bool) -> Path:
    """The fp32 (or int8) ONNX file of ``model`` at ``x``'s height and width, built on first use."""
    global _workdir
    files = _files.setdefault(model, {})
    key = (*x.shape[-2:], int8)
    if key in files:
        return files[key]
    from .export import _export_onnx, _outputs, natural_image
    from .quantize import quantize_onnx

    if _workdir is None:
        _workdir = tempfile.TemporaryDirectory(prefix="hrnet-bench-")
    stem = Path(tempfile.mkdtemp(dir=_workdir.name)) / "model"
    if int8:
        fp32 = _file(model, x, False)
        h, w = x.shape[-2:]
        crops = natural_image(8, (h, w), seed=3)
        quantize_onnx(fp32, stem.with_suffix(".int8.onnx"), crops)
        path = stem.with_suffix(".int8.onnx")
    else:
        path = stem.with_suffix(".onnx")
        with torch.no_grad():
            n = len(_outputs(model.eval()(x)))
        _export_onnx(model, path, x, [f"output{i}" for i in range(n)], True, "torchscript")
    files[key] = path
    return path


def deploy_step(
    impl: str, model: nn.Module, x: torch.Tensor, precision: str = "fp32"
) -> Callable[[], list[torch.Tensor]]:
    """The timed step of a deployment contender: ``step()`` returns the outputs as CPU tensors.

    Raises ``ValueError`` for rows it cannot run (a GPU input, a precision other than fp32: the int8 rows are
    fp32 rows whose contender quantizes).
    """
    from .runtime import open_session

    if impl not in DEPLOY_IMPLS:
        raise ValueError(f"unknown deployment contender {impl!r}; expected one of {list(DEPLOY_IMPLS)}")
    if x.device.type != "cpu":
        raise ValueError(f"{impl} runs on the CPU only")
    if precision != "fp32":
        raise ValueError(f"{impl} runs fp32 rows (its own int8 where named so), not {precision}")
    runtime, int8 = DEPLOY_IMPLS[impl]
    run = open_session(_file(model, x, int8), runtime, threads=torch.get_num_threads())
    xn = np.ascontiguousarray(x.numpy())

    def step() -> list[torch.Tensor]:
        return [torch.from_numpy(o) for o in run(xn)]

    return step
