"""``hrnet-backbones export``: a model to a verified ONNX / OpenVINO file with its sidecar JSON."""

from __future__ import annotations

import argparse

from ..cliutil import CLIError, check_size, load_model

__all__ = ["export_args", "export_run"]


def _batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--batch-size is a positive integer or 'dynamic', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"--batch-size is a positive integer or 'dynamic', got {text!r}")
    return value


def export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "model",
        metavar="MODEL",
        help="a timm model name (random weights), 'local-dir:DIR', 'hf-hub:ORG/NAME' or a converted folder "
        "(a converted or trained folder keeps its head)",
    )
    p.add_argument("--out", required=True, help="the file to write: PATH.onnx, or PATH.xml for OpenVINO IR")
    p.add_argument(
        "--format", choices=["onnx", "openvino"], default=None, help="default: what the suffix of --out says"
    )
    p.add_argument("--int8", action="store_true", help="static int8 (ONNX Runtime, QDQ, per-channel weights)")
    p.add_argument(
        "--calibration",
        metavar="IMAGE_DIR",
        help="images for int8 calibration (each whole image goes through the top-down crop)",
    )
    p.add_argument(
        "--calibration-images", type=int, default=64, metavar="N", help="use the first N images (default: 64)"
    )
    p.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=None,
        help="traced input size and the sidecar's input size (default: the model's pretrained_cfg); H and W "
        "stay dynamic in the file",
    )
    p.add_argument("--features-only", action="store_true", help="export the feature maps, without the head")
    p.add_argument(
        "--batch-size",
        type=_batch,
        default=None,
        metavar="N|dynamic",
        help="a fixed batch (default: dynamic)",
    )
    p.add_argument(
        "--exporter",
        choices=["torchscript", "dynamo"],
        default="torchscript",
        help="torch's ONNX exporter (default: torchscript, several times faster to export; see the README)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing files")


def export_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..fileio import refuse_existing
    from .export import check_format, export_model, output_files

    size = check_size(args.input_size) if args.input_size is not None else None
    if args.int8 and not args.calibration:
        raise CLIError("--int8 needs --calibration IMAGE_DIR (a folder of images)")
    if args.calibration and not args.int8:
        raise CLIError("--calibration is for --int8; add --int8 or drop --calibration")
    if args.calibration_images < 1:
        raise CLIError(f"--calibration-images must be positive, got {args.calibration_images}")
    if args.calibration and not Path(args.calibration).is_dir():
        raise CLIError(
            f"--calibration {args.calibration}: no such folder (it should hold calibration images)"
        )
    # checked before the model is built, so a mistake costs nothing
    refuse_existing(output_files(args.out, check_format(args.out, args.format)), args.force)
    model = load_model(args.model, features_only=args.features_only)
    try:
        result = export_model(
            model,
            args.out,
            fmt=args.format,
            input_size=size,
            batch_size=args.batch_size,
            features_only=args.features_only,
            int8=args.int8,
            calibration=args.calibration,
            calibration_limit=args.calibration_images,
            force=args.force,
            exporter=args.exporter,
            source=args.model,
            say=print,
        )
    except ImportError as e:
        # onnx / onnxruntime / openvino come with the deploy extra: one line that says so, not a traceback
        raise CLIError(str(e)) from None
    meta = result.metadata
    h, w = meta["input"]["input_size"]
    batch = meta["input"]["shape"][0]
    outputs = ", ".join(f"{o['name']} (stride {o['stride']})" for o in meta["outputs"])
    print(
        f"{meta['format']} {meta['precision']} {h}x{w}, batch {batch if isinstance(batch, int) else 'dynamic'}, outputs {outputs}; "
        f"relative error {meta['verification']['relative_error']:.2e} -> "
        + ", ".join(str(p) for p in result.files)
    )
    return 0
