"""Static int8 with ONNX Runtime's quantization tool: QDQ format, per-channel int8 weights.

Why ONNX Runtime's ``quantize_static`` (over NNCF or PyTorch's PT2E): its output is one standard ONNX file
that ONNX Runtime runs with int8 kernels and OpenVINO also reads (QDQ pairs become its FakeQuantize, executed in
int8), so one calibrated file serves both runtimes; and it needs nothing beyond the ``onnxruntime`` that fp32
deployment already uses (NNCF pulls scikit-learn and scipy and writes OpenVINO-only IR; a PT2E graph runs in
PyTorch, not in the runtimes users deploy with). The README gives the measured speed and error.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["quantize_onnx"]

#: the chosen settings (see the README's int8 section for the measurements behind them)
ACTIVATIONS = "QUInt8"
WEIGHTS = "QInt8"
METHOD = "MinMax"


class _Reader:
    """ONNX Runtime's calibration data reader protocol over a tensor of model inputs."""

    def __init__(self, name: str, crops: torch.Tensor, batch: int):
        self.name = name
        self.batches = [crops[i : i + batch].numpy() for i in range(0, len(crops) - batch + 1, batch)]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0


def quantize_onnx(
    fp32_path: str | os.PathLike,
    int8_path: str | os.PathLike,
    crops: torch.Tensor,
    batch: int | None = None,
    activations: str = ACTIVATIONS,
    method: str = METHOD,
) -> dict[str, Any]:
    """Write the static int8 version of ``fp32_path`` to ``int8_path``, calibrated on ``crops``.

    Args:
        crops: ``(N, 3, H, W)`` normalised model inputs (see :func:`~hrnet_backbones.deploy.export.calibration_crops`).
        batch: the file's fixed batch size (``None``: dynamic; calibration then runs in batches of up to 8).
        activations: ``"QUInt8"`` or ``"QInt8"``; method: ``"MinMax"``, ``"Entropy"`` or ``"Percentile"``.

    Returns the settings, for the sidecar.
    """
    try:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError:
        raise ImportError(
            "int8 export needs onnx and onnxruntime: pip install 'hrnet-backbones[deploy]'"
        ) from None

    if len(crops) == 0:
        raise ValueError("int8 calibration needs at least one image")
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    # ONNX Runtime's recommended preparation: shape inference and graph clean-up before quantization
    prepared = int8_path.with_name(f"{int8_path.stem}.prepared.onnx")
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    name = onnx.load(str(prepared), load_external_data=False).graph.input[0].name
    step = batch or min(8, len(crops))
    if batch and len(crops) < batch:
        crops = crops.repeat(-(-batch // len(crops)), 1, 1, 1)
    quantize_static(
        str(prepared),
        str(int8_path),
        _Reader(name, crops, step),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=getattr(QuantType, activations),
        weight_type=getattr(QuantType, WEIGHTS),
        calibrate_method=getattr(CalibrationMethod, method),
    )
    prepared.unlink(missing_ok=True)
    return {
        "tool": "onnxruntime.quantization.quantize_static",
        "format": "QDQ",
        "weights": f"{WEIGHTS} per channel",
        "activations": f"{activations} per tensor",
        "calibration_method": method,
    }
