"""The ``hrnet-backbones`` command.

Every subcommand is a ``(add_arguments, run)`` pair in ``COMMANDS``. Expected failures (bad input, missing files)
raise :class:`CLIError` or ``ValueError``/``FileNotFoundError``; ``main`` prints them as one line on stderr and
exits with status 2, so scripts can rely on the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from .cliutil import (
    DEFAULT_MODEL,
    CLIError,
    check_size,
    format_table,
    input_size_arg,
    load_keypoint_model,
    report_errors,
)

__all__ = ["CLIError", "COMMANDS", "main"]


# ----------------------------------------------------------------------------------------------------- list
def _list_args(p: argparse.ArgumentParser) -> None:
    input_size_arg(p)


def _list_run(args: argparse.Namespace) -> int:
    from .complexity import measure, meta_model
    from .registry import MODELS, trunk_title
    from .representations import REPRESENTATION_LABELS

    size = check_size(args.input_size)
    rows = []
    for name, spec in MODELS.items():
        model = meta_model(name, features_only=True)
        c = measure(model, size)
        default = model.feature_info
        rows.append(
            [
                name,
                REPRESENTATION_LABELS[spec.representation],
                trunk_title(name.removeprefix(f"{spec.prefix}_")),
                f"{c.params_m:.2f}",
                f"{c.gmacs:.2f}",
                f"{c.paper_gflops:.2f}",
                ",".join(map(str, default.channels())),
                ",".join(map(str, default.reduction())),
            ]
        )
    headers = ["model", "variant", "trunk", "params (M)", "GMACs", "GFLOPs*", "channels", "strides"]
    print(f"Backbones (features_only defaults) at {size[0]}x{size[1]}:")
    print(format_table(headers, rows))
    print("* multiply-adds / 2^30, the unit of the HRNet papers' complexity tables")
    return 0


# ----------------------------------------------------------------------------------------------------- info
def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"a registered model name (default: {DEFAULT_MODEL}), or a model folder (DIR or local-dir:DIR) to "
        "check and describe",
    )
    input_size_arg(p)


def _trunk_label(arch) -> str:
    """``HRNet-W18-Small-v1 trunk (w18_small)`` for a registered trunk, else ``custom trunk of width W20``."""
    from .registry import trunk_name, trunk_title

    name = trunk_name(arch)
    return f"HRNet-{trunk_title(name)} trunk ({name})" if name else f"custom trunk of width W{arch.width}"


def _info_run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import timm

    from .complexity import feature_table, measure, meta_model
    from .registry import model_names
    from .representations import REPRESENTATION_LABELS

    size = check_size(args.input_size)
    name, model_args, what = args.name, {}, ""
    folder = Path(name.removeprefix("local-dir:"))
    if name.startswith("local-dir:") or folder.is_dir():
        from .convert.writer import check_folder

        config = check_folder(folder)  # config.json field by field, and the weights' headers against it
        name, model_args = config["architecture"], dict(config["model_args"])
        task = config["pretrained_cfg"].get("task")
        what = f"{folder}: checked (config.json and model.safetensors fit); " + (
            f"{task} model, " if task else ""
        )
    elif name not in model_names() and not timm.is_model(name):
        raise CLIError(f"unknown model {name!r}; `hrnet-backbones list` shows the registered names")
    elif name not in model_names():
        raise CLIError(f"{name!r} is a timm model but not one of this package's; try one of {model_names()}")
    model = meta_model(name, **{**model_args, "head": "none"})
    rows = [
        [r.index, r.module, r.channels, r.stride, "x".join(map(str, r.shape))]
        for r in feature_table(model, size)
    ]
    feats = meta_model(name, **model_args, features_only=True)
    c = measure(feats, size)
    print(
        f"{what}{name}: {REPRESENTATION_LABELS[model.representation]} representation, {_trunk_label(model.arch)}, "
        f"input {size[0]}x{size[1]}"
    )
    print(format_table(["index", "feature", "channels", "stride", "output shape (NCHW)"], rows))
    print(
        f"features_only default out_indices: {list(feats.out_indices)}; "
        f"{c.params_m:.2f} M params, {c.gmacs:.2f} GMACs ({c.paper_gflops:.2f} GFLOPs as in the papers)"
    )
    return 0


# ----------------------------------------------------------------------------------------------------- pose
def _box(text: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a box is x,y,w,h (four numbers), got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"a box needs a positive width and height, got {text!r}")
    return x, y, w, h


def _pose_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image", help="an image file (anything Pillow reads)")
    p.add_argument(
        "--model",
        required=True,
        help="a converted model folder, 'hf-hub:ORG/NAME', 'local-dir:DIR', a registered model name, or an "
        "exported .onnx / .xml file (hrnet-backbones export)",
    )
    p.add_argument(
        "--box",
        type=_box,
        action="append",
        required=True,
        metavar="X,Y,W,H",
        help="a person box in image pixels (repeat for several people)",
    )
    p.add_argument(
        "--out", default=".", help="folder for IMAGE.keypoints.json and IMAGE.pose.png (default: .)"
    )
    p.add_argument(
        "--refine",
        default="auto",
        choices=["auto", "quarter", "dark", "udp", "none"],
        help="heatmap decoding (default: the model's codec)",
    )
    p.add_argument("--no-flip", action="store_true", help="skip the flip test")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.3,
        help="keypoints scoring at or below this are not drawn in the overlay; the JSON keeps them all "
        "(default: 0.3)",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing output files")


def _pose_run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch
    from PIL import Image, UnidentifiedImageError

    from .fileio import atomic_write_text, refuse_existing
    from .inference import check_boxes, keypoint_meta, predict_keypoints, to_image_tensor
    from .keypoints import save_overlay

    image_path = Path(args.image)
    if not image_path.is_file():
        raise CLIError(f"image not found: {image_path}")
    out_dir = Path(args.out)
    json_path = out_dir / f"{image_path.stem}.keypoints.json"
    png_path = out_dir / f"{image_path.stem}.pose.png"
    refuse_existing([json_path, png_path], args.force)
    try:
        with Image.open(image_path) as opened:
            opened.load()
            pil = opened.copy()
    except (UnidentifiedImageError, OSError) as e:
        raise CLIError(f"cannot read {image_path} as an image: {e}") from None
    image = to_image_tensor(pil)  # the conversion predict_keypoints applies to Python callers' images
    check_boxes(
        torch.tensor(args.box), tuple(image.shape[-2:])
    )  # before the model loads (predict_keypoints checks again)
    model = load_keypoint_model(args.model)
    meta = keypoint_meta(model)
    refine = None if args.refine == "none" else args.refine
    keypoints, scores = predict_keypoints(
        model, image, args.box, meta=meta, refine=refine, flip=not args.no_flip
    )

    people = [
        {
            "box": list(box),
            "keypoints": [
                {"name": name, "x": round(float(x), 2), "y": round(float(y), 2), "score": round(float(s), 4)}
                for name, (x, y), s in zip(meta.keypoint_names, kp.tolist(), sc.tolist())
            ],
        }
        for box, kp, sc in zip(args.box, keypoints, scores)
    ]
    record = {
        "image": str(image_path),
        "model": args.model,
        "input_size": list(meta.input_size),
        "refine": args.refine,
        "flip_test": not args.no_flip and bool(meta.flip_pairs),
        "people": people,
    }
    atomic_write_text(json_path, json.dumps(record, indent=2))
    save_overlay(
        png_path,
        pil,
        keypoints.numpy(),
        scores=scores.numpy(),
        skeleton=meta.skeleton or None,
        threshold=args.threshold,
    )
    print(f"{len(people)} person(s), {len(meta.keypoint_names)} keypoints each -> {json_path}, {png_path}")
    return 0


# -------------------------------------------------------------------------------------------- convert, push
def _convert_args(p: argparse.ArgumentParser) -> None:
    from .convert.cli import convert_args

    convert_args(p)


def _convert_run(args: argparse.Namespace) -> int:
    from .convert.cli import convert_run

    return convert_run(args)


def _push_args(p: argparse.ArgumentParser) -> None:
    from .convert.cli import push_args

    push_args(p)


def _push_run(args: argparse.Namespace) -> int:
    from .convert.cli import push_run

    return push_run(args)


# ------------------------------------------------------------------------------------------------- evaluate
def _evaluate_args(p: argparse.ArgumentParser) -> None:
    from .evaluate import add_arguments

    add_arguments(p)


def _evaluate_run(args: argparse.Namespace) -> int:
    from .evaluate import run_cli

    return run_cli(args)


# ---------------------------------------------------------------------------------------------------- bench
def _bench_args(p: argparse.ArgumentParser) -> None:
    from .bench import add_arguments

    add_arguments(p)


def _bench_run(args: argparse.Namespace) -> int:
    from .bench import run_cli

    return run_cli(args)


# ---------------------------------------------------------------------------------------------------- train
def _train_args(p: argparse.ArgumentParser) -> None:
    from .train import add_arguments

    add_arguments(p)


def _train_run(args: argparse.Namespace) -> int:
    from .train import run_cli

    return run_cli(args)


# ---------------------------------------------------------------------------------------------------- synth
def _synth_args(p: argparse.ArgumentParser) -> None:
    from .synth import synth_args

    synth_args(p)


def _synth_run(args: argparse.Namespace) -> int:
    from .synth import synth_run

    return synth_run(args)


# --------------------------------------------------------------------------------------------------- export
def _export_args(p: argparse.ArgumentParser) -> None:
    from .deploy.cli import export_args

    export_args(p)


def _export_run(args: argparse.Namespace) -> int:
    from .deploy.cli import export_run

    return export_run(args)


COMMANDS: dict[
    str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
] = {
    "list": ("registered models with params and complexity", _list_args, _list_run),
    "info": ("feature table of one model: index, channels, stride, output shape", _info_args, _info_run),
    "convert": (
        "official / OpenMMLab HRNet checkpoint to a timm folder (safetensors, config.json, model card)",
        _convert_args,
        _convert_run,
    ),
    "push": ("upload a converted folder to the Hugging Face Hub", _push_args, _push_run),
    "pose": ("keypoints of the people in boxes of an image: JSON and an overlay PNG", _pose_args, _pose_run),
    "evaluate": (
        "COCO AP / AR (or PCKh, or landmark NME) of a keypoint model on a data set; stats and predictions JSON",
        _evaluate_args,
        _evaluate_run,
    ),
    "train": (
        "train a pose / landmark model on COCO-format data (torchrun for several processes); a model folder",
        _train_args,
        _train_run,
    ),
    "export": (
        "ONNX / OpenVINO file (fp32 or int8), verified against PyTorch, with a sidecar JSON",
        _export_args,
        _export_run,
    ),
    "bench": (
        "throughput against timm's built-in HRNet (img/s, latency, memory, TFLOP/s; JSON, CSV, PNG)",
        _bench_args,
        _bench_run,
    ),
    "synth": (
        "synthetic keypoint data that needs no download: figures (COCO JSON) or faces (landmark CSV)",
        _synth_args,
        _synth_run,
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="hrnet-backbones", description="HRNet backbones for timm.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, add_arguments, _) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    import hrnet_backbones  # noqa: F401  (registers the models)

    return report_errors(f"hrnet-backbones {args.command}", lambda: COMMANDS[args.command][2](args))


if __name__ == "__main__":
    sys.exit(main())
