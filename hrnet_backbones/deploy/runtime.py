"""Run an exported file with the PyTorch model's contract: :func:`load` and :class:`DeployedModel`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["RUNTIMES", "DeployedModel", "load", "open_session"]

RUNTIMES = ("onnxruntime", "openvino")


def _missing(module: str) -> ImportError:
    return ImportError(
        f"{module} is not installed; install the deployment extra: pip install 'hrnet-backbones[deploy]'"
    )


def open_session(
    path: str | os.PathLike, runtime: str, threads: int | None = None
) -> Callable[[np.ndarray], list[np.ndarray]]:
    """A function running the file at ``path``: ``(N, 3, H, W)`` float32 array -> list of output arrays.

    ``runtime``: ``"onnxruntime"`` (also ``"onnx"``) for ONNX files, ``"openvino"`` for IR ``.xml`` or ONNX files.
    ONNX Runtime runs with all graph optimisations on its CPU provider; OpenVINO on its CPU plugin in fp32
    (``INFERENCE_PRECISION_HINT=f32``: on CPUs with bf16 or AMX units its default would be bf16) with the
    latency hint. ``threads``: intra-op threads (default: the runtime's own choice, one per physical core).
    """
    path = str(path)
    if runtime in ("onnx", "onnxruntime"):
        try:
            import onnxruntime as ort
        except ImportError:
            raise _missing("onnxruntime") from None
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: x})
    if runtime == "openvino":
        try:
            import openvino as ov
        except ImportError:
            raise _missing("openvino") from None
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        compiled = ov.Core().compile_model(path, "CPU", config)
        request = compiled.create_infer_request()

        def run(x: np.ndarray) -> list[np.ndarray]:
            result = request.infer({0: x})  # copies the outputs (share_outputs=False)
            return [result[o] for o in compiled.outputs]

        return run
    raise ValueError(f"unknown runtime {runtime!r}; expected one of {RUNTIMES}")


class DeployedModel:
    """An exported file behind the PyTorch model's interface.

    ``model(x)`` takes ``(N, 3, H, W)`` normalised images (a tensor or a NumPy array; converted to contiguous
    float32 on the CPU) and returns CPU float32 tensors in the model's structure: one tensor for a head, a list
    for a ``features_only`` export. A file exported with a fixed batch runs any batch in chunks of that size.
    ``pretrained_cfg``, ``num_classes`` and ``feature_info`` come from the sidecar JSON, so
    :func:`~hrnet_backbones.inference.keypoint_meta` and
    :func:`~hrnet_backbones.inference.predict_keypoints` accept it as they accept the model.
    """

    def __init__(self, path: Path, metadata: dict[str, Any], runtime: str, threads: int | None = None):
        self.path = path
        self.metadata = metadata
        self.runtime = runtime
        self.pretrained_cfg: dict[str, Any] = dict(metadata.get("pretrained_cfg") or {})
        self.num_classes = int(metadata.get("num_classes", 0))
        self.features_only = bool(metadata.get("features_only", False))
        self.feature_info = [dict(o) for o in metadata.get("outputs", [])]
        self.input_size = tuple(metadata["input"]["input_size"])
        batch = metadata["input"]["shape"][0]
        self.batch_size: int | None = batch if isinstance(batch, int) else None
        self._run = open_session(path, runtime, threads)

    def __repr__(self) -> str:
        return (
            f"DeployedModel({str(self.path)!r}, runtime={self.runtime!r}, "
            f"precision={self.metadata.get('precision', 'fp32')!r})"
        )

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    def to(self, device: torch.device | str) -> DeployedModel:
        """The runtimes run on the CPU: ``to("cpu")`` is accepted (as model code calls it), any other device not."""
        if torch.device(device).type != "cpu":
            raise ValueError(f"an exported model runs on the CPU, not {device}; move the inputs to the CPU")
        return self

    def parameters(self):
        """No trainable parameters: one empty CPU tensor, for code that reads the model's device from them."""
        yield torch.empty(0)

    def eval(self) -> DeployedModel:
        return self

    def train(self, mode: bool = True) -> DeployedModel:
        if mode:
            raise RuntimeError(
                "an exported model runs inference only; train the PyTorch model and export again"
            )
        return self

    def __call__(self, x: torch.Tensor | np.ndarray) -> torch.Tensor | list[torch.Tensor]:
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float32).numpy()
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) images, got shape {x.shape}")
        if self.batch_size is None or len(x) == self.batch_size:
            outs = self._run(x)
        else:
            outs = self._chunked(x, self.batch_size)
        tensors = [torch.from_numpy(np.ascontiguousarray(o)) for o in outs]
        return tensors if self.features_only else tensors[0]

    def _chunked(self, x: np.ndarray, b: int) -> list[np.ndarray]:
        """Run a fixed-batch file on any batch: chunks of ``b``, the last padded with copies of its first image."""
        parts: list[list[np.ndarray]] = []
        for i in range(0, len(x), b):
            chunk = x[i : i + b]
            n = len(chunk)
            if n < b:
                chunk = np.concatenate([chunk, np.repeat(chunk[:1], b - n, axis=0)])
            parts.append([o[:n] for o in self._run(chunk)])
        return [np.concatenate(o) for o in zip(*parts)]


def load(path: str | os.PathLike, runtime: str | None = None, threads: int | None = None) -> DeployedModel:
    """Open a file written by ``hrnet-backbones export`` (it needs its sidecar ``PATH.json``).

    Args:
        path: an ``.onnx`` file (run by ONNX Runtime by default) or an OpenVINO ``.xml``.
        runtime: ``"onnxruntime"`` or ``"openvino"`` (OpenVINO also runs ONNX files, int8 ones included).
        threads: intra-op threads of the runtime (default: its own choice).
    """
    from .export import sidecar_path

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported model not found: {path}")
    side = sidecar_path(path)
    if not side.is_file():
        raise FileNotFoundError(
            f"{side} (the sidecar with the model's metadata) is missing; export with `hrnet-backbones export`"
        )
    metadata = json.loads(side.read_text())
    if runtime is None:
        runtime = "openvino" if path.suffix.lower() == ".xml" else "onnxruntime"
    if runtime == "onnxruntime" and path.suffix.lower() == ".xml":
        raise ValueError(f"{path} is OpenVINO IR; ONNX Runtime runs .onnx files (use runtime='openvino')")
    return DeployedModel(path, metadata, runtime, threads)
