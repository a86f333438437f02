"""CPU deployment: export to ONNX (ONNX Runtime) and OpenVINO IR, static int8, and a runtime wrapper.

* :func:`export_model` writes a verified file and its sidecar JSON (``PATH.json``): the runtime's outputs are
  compared with PyTorch's on a photo-like input before the file is put in place.
* :func:`load` opens an exported file as a callable with the PyTorch model's contract (a tensor for a head, a
  list for ``features_only``), carrying ``pretrained_cfg`` and ``num_classes`` from the sidecar, so
  :func:`hrnet_backbones.inference.predict_keypoints` and ``hrnet-backbones pose`` run on it.
* int8 is ONNX Runtime's static quantization (QDQ, per-channel weights), calibrated on images through the
  top-down crop; the file runs in ONNX Runtime and OpenVINO.

Needs the ``deploy`` extra: ``pip install "hrnet-backbones[deploy]"`` (onnx, onnxruntime, openvino).
"""

from __future__ import annotations

from .export import ExportResult, export_model, natural_image, relative_error
from .runtime import DeployedModel, load

__all__ = ["DeployedModel", "ExportResult", "export_model", "load", "natural_image", "relative_error"]
