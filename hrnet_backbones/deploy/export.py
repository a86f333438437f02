"""Export a model to ONNX or OpenVINO IR, verify the runtime against PyTorch, write the sidecar JSON.

Files are built in a hidden staging folder next to the destination and moved into place only after the
verification passes, so a failed export leaves nothing behind and an existing file is never half-replaced.

The ONNX graph comes from torch's TorchScript-based exporter by default: on HRNet-W32 it exports in a tenth of
the time of the torch.export-based one (about 18 s against 90-190 s here) and ONNX Runtime and OpenVINO run both
graphs at the same speed (within 5 %, measured). ``exporter="dynamo"`` selects the torch.export-based exporter,
and it is used automatically where torch no longer ships the TorchScript one.

Relative error, as reported everywhere in this package: ``max |runtime - pytorch| / max |pytorch|`` per output
tensor, the largest over the outputs. fp32 exports must be within 1e-4.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..fileio import atomic_write_text, make_parent_folders, refuse_existing

__all__ = [
    "FP32_TOLERANCE",
    "ExportResult",
    "calibration_crops",
    "check_format",
    "export_model",
    "natural_image",
    "output_files",
    "relative_error",
    "sidecar_path",
]

FP32_TOLERANCE = 1e-4
OPSET = 17
FORMATS = {".onnx": "onnx", ".xml": "openvino"}
INPUT_NAME = "image"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
KEYPOINT_HEADS = ("pose", "landmark")


def sidecar_path(path: str | os.PathLike) -> Path:
    """``model.onnx`` -> ``model.onnx.json`` (the metadata written next to every export)."""
    return Path(f"{os.fspath(path)}.json")


def relative_error(
    got: Sequence[np.ndarray | torch.Tensor], ref: Sequence[np.ndarray | torch.Tensor]
) -> float:
    """``max |got - ref| / max |ref|`` for each pair of outputs, the largest over the pairs."""
    worst = 0.0
    for g, r in zip(got, ref, strict=True):
        g, r = np.asarray(g, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if g.shape != r.shape:
            raise ValueError(f"output shape {g.shape} differs from PyTorch's {r.shape}")
        worst = max(worst, float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12)))
    return worst


def natural_image(
    batch: int,
    size: tuple[int, int],
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    seed: int = 0,
) -> torch.Tensor:
    """A photo-like test batch ``(batch, 3, H, W)``, normalised with ``mean`` / ``std`` as a photo would be.

    Smooth colour fields (random noise at three coarse scales, bilinearly upsampled: large regions, shading)
    with a few hard-edged ellipses on top (object boundaries): the statistics a network sees in a photo, which
    pure noise has not. Values lie in [0, 1] before normalisation.
    """
    g = torch.Generator().manual_seed(seed)
    h, w = size
    img = torch.zeros(batch, 3, h, w)
    for cells, weight in ((3, 1.0), (7, 0.5), (17, 0.25)):
        coarse = torch.rand(batch, 3, cells, max(2, round(cells * w / h)), generator=g)
        img += weight * nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    for b in range(batch):
        for _ in range(5):
            cy, cx, ry, rx = torch.rand(4, generator=g).tolist()
            inside = ((yy - cy) / (0.05 + 0.3 * ry)) ** 2 + ((xx - cx) / (0.05 + 0.3 * rx)) ** 2 < 1
            img[b, :, inside] = torch.rand(3, 1, generator=g) * 1.75
    lo = img.amin(dim=(2, 3), keepdim=True)
    hi = img.amax(dim=(2, 3), keepdim=True)
    img = (img - lo) / (hi - lo).clamp_min(1e-6)
    return (img - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def calibration_crops(
    folder: str | os.PathLike,
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    limit: int = 64,
    udp: bool = False,
) -> torch.Tensor:
    """Model inputs ``(N, 3, H, W)`` from the images of ``folder``: each whole image taken as the person box
    through the top-down crop (:func:`~hrnet_backbones.keypoints.box_to_center_scale` with the model's aspect
    ratio and 1.25 padding, then :func:`~hrnet_backbones.keypoints.crop_image`), normalised. The first
    ``limit`` images in name order.
    """
    from PIL import Image, UnidentifiedImageError

    from ..keypoints import box_to_center_scale, crop_image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"calibration folder not found: {folder}")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}; calibration needs real images"
        )
    h, w = input_size
    crops = []
    for path in files[:limit]:
        try:
            pil = Image.open(path).convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise ValueError(f"cannot read calibration image {path}: {e}") from None
        image = torch.from_numpy(np.asarray(pil, dtype=np.float32) / 255.0).permute(2, 0, 1)[None]
        box = torch.tensor([[0.0, 0.0, pil.width, pil.height]])
        center, scale = box_to_center_scale(box, aspect_ratio=w / h)
        crops.append(crop_image(image, center, scale, (w, h), udp=udp))
    x = torch.cat(crops)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


# ---------------------------------------------------------------------------------------------- metadata
def _json_safe(value: Any) -> Any:
    """``pretrained_cfg`` values as JSON (tuples become lists; what JSON cannot hold is dropped)."""
    if isinstance(value, dict):
        out = {str(k): _json_safe(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v is not _DROP}
    if isinstance(value, (list, tuple)):
        items = [_json_safe(v) for v in value]
        return [v for v in items if v is not _DROP]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else _DROP
    return _DROP


_DROP = object()


def _outputs(y: Any) -> list[torch.Tensor]:
    return [y] if isinstance(y, torch.Tensor) else list(y)


def _output_names(model: nn.Module, features_only: bool, count: int) -> list[str]:
    if features_only:
        names = [str(m).replace(".", "_") for m in model.feature_info.module_name()]
        if len(set(names)) == count:
            return names
        return [f"feature{i}" for i in range(count)]
    head = getattr(model, "head_type", "")
    name = {"pose": "heatmaps", "landmark": "heatmaps", "segmentation": "logits"}.get(head, "logits")
    return [name] if count == 1 else [f"{name}{i}" for i in range(count)]


def _model_cfg(model: nn.Module, input_size: tuple[int, int], features_only: bool) -> dict[str, Any]:
    """The model's ``pretrained_cfg`` with the export's input size, and for keypoint heads the resolved
    keypoint metadata (names, flip pairs, skeleton, codec), so a loaded file needs no layout lookup."""
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    cfg["input_size"] = (3, *input_size)
    num_classes = 0 if features_only else int(getattr(model, "num_classes", 0))
    cfg["num_classes"] = num_classes
    if not features_only and getattr(model, "head_type", None) in KEYPOINT_HEADS and num_classes:
        from ..inference import keypoint_meta

        meta = keypoint_meta(_WithCfg(model, cfg))
        cfg.update(
            keypoint_names=list(meta.keypoint_names),
            flip_pairs=[list(p) for p in meta.flip_pairs],
            skeleton=[list(p) for p in meta.skeleton],
        )
        codec = dict(cfg.get("codec") or {})
        codec.setdefault("type", "UDPHeatmap" if meta.codec == "udp" else "MSRAHeatmap")
        codec.setdefault("sigma", meta.sigma)
        if meta.codec == "dark":
            codec.setdefault("unbiased", True)
        cfg["codec"] = codec
    return _json_safe(cfg)


@dataclass
class _WithCfg:
    """A stand-in carrying a model's ``num_classes`` and an edited ``pretrained_cfg`` (for keypoint_meta)."""

    model: nn.Module
    pretrained_cfg: dict[str, Any]

    @property
    def num_classes(self) -> int:
        return self.model.num_classes


# ---------------------------------------------------------------------------------------------- exporting
def _torchscript_exporter_available() -> bool:
    import inspect

    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def _export_onnx(
    model: nn.Module,
    path: Path,
    example: torch.Tensor,
    output_names: list[str],
    dynamic_batch: bool,
    exporter: str,
) -> None:
    """``model`` to ONNX with dynamic height and width (and batch when ``dynamic_batch``)."""
    axes = {0: "batch", 2: "height", 3: "width"} if dynamic_batch else {2: "height", 3: "width"}
    if exporter == "torchscript" and _torchscript_exporter_available():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated, and says so
            torch.onnx.export(
                model,
                (example,),
                str(path),
                dynamo=False,
                opset_version=OPSET,
                input_names=[INPUT_NAME],
                output_names=output_names,
                dynamic_axes={INPUT_NAME: axes, **{n: {0: "batch"} for n in output_names if dynamic_batch}},
            )
        return
    from torch.export import Dim

    dims = {i: Dim.DYNAMIC for i in axes}
    # a size of 1 in the example (batch 1, the V2p pyramid's top level) would otherwise be specialised
    with torch.fx.experimental._config.patch(backed_size_oblivious=True):
        program = torch.export.export(model, (example,), dynamic_shapes=(dims,))
    onnx_program = torch.onnx.export(
        program, (example,), input_names=[INPUT_NAME], output_names=output_names, dynamo=True, verbose=False
    )
    onnx_program.save(str(path))


def _convert_openvino(onnx_path: Path, xml_path: Path) -> None:
    try:
        import openvino as ov
    except ImportError:
        raise ImportError("OpenVINO export needs openvino: pip install 'hrnet-backbones[deploy]'") from None

    # fp32 weights: OpenVINO's default compresses them to fp16, which the 1e-4 check would (rightly) refuse
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path), compress_to_fp16=False)


def _verification_sizes(
    input_size: tuple[int, int], dynamic_batch: bool, batch: int
) -> list[tuple[int, int, int]]:
    """(batch, H, W) checked: the export size, and a second size (not a multiple of 32) proving H / W dynamic."""
    h, w = input_size
    other = (max(8, round(h * 0.75) + 3), max(8, round(w * 1.25) + 5))
    return [(2 if dynamic_batch else batch, h, w), (1 if dynamic_batch else batch, *other)]


def _verify(
    run: Callable[[np.ndarray], list[np.ndarray]],
    model: nn.Module,
    inputs: Sequence[torch.Tensor],
) -> list[dict[str, Any]]:
    checks = []
    for x in inputs:
        with torch.no_grad():
            ref = _outputs(model(x))
        got = run(x.numpy())
        checks.append(
            {
                "input_shape": list(x.shape),
                "relative_error": relative_error(got, ref),
                "max_abs_error": max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref)),
                "max_abs_reference": max(float(r.abs().max()) for r in ref),
                **_agreement(got, ref, model),
            }
        )
    return checks


def _agreement(got: list[np.ndarray], ref: list[torch.Tensor], model: nn.Module) -> dict[str, Any]:
    """For keypoint heads: the share of (image, keypoint) heatmaps whose argmax is the same pixel."""
    if getattr(model, "head_type", None) not in KEYPOINT_HEADS or len(ref) != 1:
        return {}
    g = torch.from_numpy(got[0]).flatten(2).argmax(-1)
    r = ref[0].flatten(2).argmax(-1)
    return {"heatmap_argmax_agreement": float((g == r).float().mean())}


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    path: Path
    sidecar: Path
    metadata: dict[str, Any]
    files: list[Path] = field(default_factory=list)

    @property
    def verification(self) -> dict[str, Any]:
        return self.metadata["verification"]


def _runner(path: Path, fmt: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    from .runtime import open_session

    return open_session(path, fmt, threads=torch.get_num_threads())  # as many threads as PyTorch


def export_model(
    model: nn.Module,
    out: str | os.PathLike,
    *,
    fmt: str | None = None,
    input_size: tuple[int, int] | None = None,
    batch_size: int | None = None,
    features_only: bool = False,
    int8: bool = False,
    calibration: str | os.PathLike | None = None,
    calibration_limit: int = 64,
    force: bool = False,
    exporter: str = "torchscript",
    source: str = "",
    say: Callable[[str], None] = lambda msg: None,
) -> ExportResult:
    """Export ``model`` (eval mode, CPU, fp32) to ``out`` and verify it; write ``out.json`` beside it.

    Args:
        model: a timm model (a head returns one tensor; ``features_only`` a list of feature maps).
        out: ``*.onnx`` (ONNX Runtime) or ``*.xml`` (OpenVINO IR, with its ``.bin``).
        fmt: ``"onnx"`` or ``"openvino"``; defaults to what the suffix of ``out`` says.
        input_size: ``(H, W)`` of the traced input and of the sidecar's ``input_size`` (default: the model's
            ``pretrained_cfg``); height and width stay dynamic in the file.
        batch_size: a fixed batch, or ``None`` for a dynamic one.
        features_only: whether ``model`` is a feature extractor (names the outputs after ``feature_info``).
        int8: quantize statically (ONNX Runtime, QDQ, per-channel int8 weights, uint8 activations) on the
            images of ``calibration`` (see :func:`calibration_crops`); the fp32 graph is verified first.
        force: replace existing files.
        exporter: ``"torchscript"`` (default) or ``"dynamo"`` (torch.export-based).
        source: how the model was named (recorded in the sidecar).

    Raises:
        ValueError: unknown format or suffix, a missing calibration folder, or an fp32 runtime whose outputs
            differ from PyTorch's by more than 1e-4 relative (nothing is written then).
        FileExistsError: ``out`` or its sidecar exists and ``force`` is not set.
    """
    out = Path(out)
    fmt = check_format(out, fmt)
    if exporter not in ("torchscript", "dynamo"):
        raise ValueError(f"exporter must be 'torchscript' or 'dynamo', got {exporter!r}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch size must be a positive integer or dynamic, got {batch_size}")
    if int8 and calibration is None:
        raise ValueError("int8 needs calibration images: pass --calibration IMAGE_DIR")
    if int8 and not Path(calibration).is_dir():
        raise FileNotFoundError(f"calibration folder not found: {calibration}")
    refuse_existing(output_files(out, fmt), force)

    model = model.eval().cpu().float()
    cfg = dict(getattr(model, "pretrained_cfg", None) or {})
    if input_size is None:
        input_size = tuple(int(v) for v in cfg.get("input_size", (3, 256, 192))[-2:])
    mean = tuple(cfg.get("mean", (0.485, 0.456, 0.406)))
    std = tuple(cfg.get("std", (0.229, 0.224, 0.225)))
    dynamic_batch = batch_size is None
    batch = batch_size or 2
    example = natural_image(batch, input_size, mean, std, seed=0)
    with torch.no_grad():
        n_out = len(_outputs(model(example)))
    output_names = _output_names(model, features_only, n_out)

    make_parent_folders(out)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        onnx_path = staging / "model.onnx"
        say(f"exporting to ONNX ({exporter} exporter) ...")
        _export_onnx(model, onnx_path, example, output_names, dynamic_batch, exporter)
        opset = _opset(onnx_path)
        inputs = [
            natural_image(b, (h, w), mean, std, seed=1)
            for b, h, w in _verification_sizes(input_size, dynamic_batch, batch)
        ]
        fp32 = _verify(_runner(onnx_path, "onnx"), model, inputs)
        worst = max(c["relative_error"] for c in fp32)
        say(
            f"ONNX Runtime fp32 vs PyTorch: relative error {worst:.2e} (max |diff| / max |ref|; limit {FP32_TOLERANCE:.0e})"
        )
        if worst > FP32_TOLERANCE:
            raise ValueError(
                f"ONNX Runtime's outputs differ from PyTorch's by {worst:.2e} relative (limit "
                f"{FP32_TOLERANCE:.0e}); nothing was written"
            )
        verification: dict[str, Any] = {
            "metric": "max |runtime - pytorch| / max |pytorch| per output, largest over the outputs",
            "input": "natural_image(): smooth colour fields with hard-edged ellipses, normalised like a photo",
            "onnxruntime_fp32": fp32,
            "relative_error": worst,
            "tolerance": FP32_TOLERANCE,
        }
        quant: dict[str, Any] | None = None
        if int8:
            from .quantize import quantize_onnx

            crops = calibration_crops(
                calibration, input_size, mean, std, limit=calibration_limit, udp=_is_udp(cfg)
            )
            say(f"int8: calibrating on {len(crops)} crop(s) from {calibration} ...")
            int8_path = staging / "model.int8.onnx"
            quant = quantize_onnx(onnx_path, int8_path, crops, batch=None if dynamic_batch else batch)
            checks = _verify(
                _runner(int8_path, "onnx"),
                model,
                _batches(crops, min(16, len(crops)) if dynamic_batch else batch),
            )
            checks += _verify(_runner(int8_path, "onnx"), model, inputs)
            verification["onnxruntime_int8"] = checks
            verification["int8_inputs"] = (
                "the calibration crops (the images int8 was calibrated on), then the natural_image inputs"
            )
            verification["relative_error"] = max(c["relative_error"] for c in checks)
            verification["tolerance"] = None
            say("ONNX Runtime int8 vs PyTorch fp32: " + _summary(checks))
            onnx_path = int8_path
        final = staging / "model.xml" if fmt == "openvino" else onnx_path
        if fmt == "openvino":
            say("converting to OpenVINO IR ...")
            _convert_openvino(onnx_path, final)
            checks = _verify(
                _runner(final, "openvino"),
                model,
                inputs
                if not int8
                else [*_batches(crops, min(16, len(crops)) if dynamic_batch else batch), *inputs],
            )
            key = "openvino_int8" if int8 else "openvino_fp32"
            verification[key] = checks
            rel = max(c["relative_error"] for c in checks)
            say(f"OpenVINO {'int8' if int8 else 'fp32'} vs PyTorch: " + _summary(checks))
            if not int8 and rel > FP32_TOLERANCE:
                raise ValueError(
                    f"OpenVINO's outputs differ from PyTorch's by {rel:.2e} relative (limit "
                    f"{FP32_TOLERANCE:.0e}); nothing was written"
                )
            verification["relative_error"] = max(verification["relative_error"], rel)

        metadata = _metadata(
            model, fmt, out, input_size, batch_size, features_only, output_names, exporter, source, cfg
        )
        metadata["opset"] = opset
        metadata["precision"] = "int8" if int8 else "fp32"
        metadata["verification"] = verification
        if quant is not None:
            metadata["quantization"] = {
                **quant,
                "calibration": {"folder": str(calibration), "images": len(crops)},
            }
        # into place: the weights file first, the file that names it next, the sidecar last
        files = []
        if fmt == "openvino":
            os.replace(final.with_suffix(".bin"), out.with_suffix(".bin"))
            files.append(out.with_suffix(".bin"))
        os.replace(final, out)
        files.append(out)
        side = atomic_write_text(sidecar_path(out), json.dumps(metadata, indent=2) + "\n")
        return ExportResult(out, side, metadata, [*files, side])
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _opset(path: Path) -> int:
    """The ONNX operator set version the file uses (the dynamo exporter picks its own)."""
    try:
        import onnx
    except ImportError:
        raise ImportError("ONNX export needs onnx: pip install 'hrnet-backbones[deploy]'") from None

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def _summary(checks: list[dict[str, Any]]) -> str:
    rel = max(c["relative_error"] for c in checks)
    text = f"relative error {rel:.2e} (max |diff| / max |ref|)"
    agree = [c["heatmap_argmax_agreement"] for c in checks if "heatmap_argmax_agreement" in c]
    if agree:
        text += f", heatmap argmax agreement {min(agree):.1%}"
    return text


def _batches(x: torch.Tensor, size: int) -> list[torch.Tensor]:
    """``x`` in whole batches of ``size`` (repeated first when it has fewer images)."""
    if len(x) < size:
        x = x.repeat(math.ceil(size / len(x)), 1, 1, 1)
    return [x[i : i + size] for i in range(0, len(x) - size + 1, size)]


def _is_udp(cfg: dict[str, Any]) -> bool:
    return "udp" in str((cfg.get("codec") or {}).get("type", "")).lower()


def output_files(out: str | os.PathLike, fmt: str) -> list[Path]:
    """Every file an export to ``out`` writes: the model (with OpenVINO's ``.bin``) and the sidecar."""
    out = Path(out)
    return [out, *([out.with_suffix(".bin")] if fmt == "openvino" else []), sidecar_path(out)]


def check_format(out: str | os.PathLike, fmt: str | None) -> str:
    """The format of an export to ``out``: ``fmt``, or what the suffix says; the two must agree."""
    out = Path(out)
    by_suffix = FORMATS.get(out.suffix.lower())
    if fmt is None:
        if by_suffix is None:
            raise ValueError(f"--out {out} needs a .onnx (ONNX Runtime) or .xml (OpenVINO IR) suffix")
        return by_suffix
    if fmt not in FORMATS.values():
        raise ValueError(f"unknown format {fmt!r}; expected onnx or openvino")
    if by_suffix != fmt:
        want = {v: k for k, v in FORMATS.items()}[fmt]
        raise ValueError(f"--format {fmt} writes a {want} file; --out {out} should end in {want}")
    return fmt


def _metadata(
    model: nn.Module,
    fmt: str,
    out: Path,
    input_size: tuple[int, int],
    batch_size: int | None,
    features_only: bool,
    output_names: list[str],
    exporter: str,
    source: str,
    cfg: dict[str, Any],
) -> dict[str, Any]:
    from .. import __version__

    versions = {"hrnet_backbones": __version__, "torch": torch.__version__}
    for mod in ("onnx", "onnxruntime", "openvino"):
        with contextlib.suppress(ImportError):
            versions[mod] = __import__(mod).__version__
    info = getattr(model, "feature_info", None)
    if features_only:
        outputs = [
            {"name": n, "channels": int(d["num_chs"]), "stride": int(d["reduction"]), "module": d["module"]}
            for n, d in zip(output_names, info.get_dicts())
        ]
    else:
        stride = 4 if getattr(model, "head_type", None) in (*KEYPOINT_HEADS, "segmentation") else None
        outputs = [
            {"name": n, "channels": int(getattr(model, "num_classes", 0)), "stride": stride}
            for n in output_names
        ]
    batch_dim: int | str = batch_size if batch_size is not None else "batch"
    return {
        "format": fmt,
        "file": out.name,
        "weights": out.with_suffix(".bin").name if fmt == "openvino" else None,
        "opset": OPSET,
        "exporter": f"torch.onnx ({exporter})",
        "versions": versions,
        "source": source,
        "architecture": cfg.get("architecture") or type(model).__name__,
        "features_only": features_only,
        "head": None if features_only else getattr(model, "head_type", None),
        "num_classes": 0 if features_only else int(getattr(model, "num_classes", 0)),
        "input": {
            "name": INPUT_NAME,
            "shape": [batch_dim, 3, "height", "width"],
            "input_size": list(input_size),
            "layout": "NCHW",
            "dtype": "float32",
            "mean": list(cfg.get("mean", (0.485, 0.456, 0.406))),
            "std": list(cfg.get("std", (0.229, 0.224, 0.225))),
            "normalisation": "(rgb in [0, 1] - mean) / std",
        },
        "outputs": outputs,
        "output_structure": "list" if features_only else "tensor",
        "pretrained_cfg": _model_cfg(model, input_size, features_only),
    }
