"""The ``convert`` and ``push`` subcommands (registered in ``hrnet_backbones.cli.COMMANDS``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cliutil import CLIError
from ..config import FUSION_UPSAMPLE_MODES
from .layouts import FAMILIES

__all__ = ["convert_args", "convert_run", "push_args", "push_run"]


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "source", help="checkpoint file (.pth/.pt/.pth.tar/.bin of any official or OpenMMLab HRNet)"
    )
    p.add_argument(
        "--out",
        metavar="DIR",
        help="output folder (default: ./<architecture>.<tag>, e.g. hrnet_w32.coco_pose_256x192)",
    )
    p.add_argument(
        "--family",
        choices=FAMILIES,
        help="the checkpoint's layout, when it must be asserted or to keep only the trunk ('backbone'); "
        "detected from the keys by default",
    )
    p.add_argument(
        "--arch",
        metavar="NAME|JSON|FILE",
        help="assert the architecture (hrnet_w48, w32, tiny, HRNetConfig JSON or a JSON file); it must agree with "
        "the tensors. JSON may also set fusion_upsample / align_corners",
    )
    p.add_argument(
        "--fusion-upsample",
        choices=FUSION_UPSAMPLE_MODES,
        help="how the fusion upsamples (default: the family's: nearest for pose/cls/det, bilinear for seg/face, "
        "bilinear_scale for mmseg)",
    )
    p.add_argument(
        "--align-corners",
        action="store_true",
        default=None,
        help="bilinear fusion and head upsampling with align_corners=True (the HRNet-OCR code's default; the "
        "Cityscapes configs and the other repos use False)",
    )
    p.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        help="training input size to record (default: from the file's config or name, else the dataset's)",
    )
    p.add_argument(
        "--dataset", help="dataset to record (coco, mpii, wflw, 300w, cityscapes, ...; default: inferred)"
    )
    p.add_argument(
        "--repo-id", help="ORG/NAME the folder will be pushed to (used in the model card's usage code)"
    )
    p.add_argument("--force", action="store_true", help="replace the output folder if it exists")


def convert_run(args: argparse.Namespace) -> int:
    from .converter import MAX_INPUT_SIDE, convert_checkpoint
    from .hub import check_repo_id
    from .writer import FOLDER_FILES

    if args.input_size is not None and not all(1 <= v <= MAX_INPUT_SIDE for v in args.input_size):
        raise CLIError(
            f"--input-size must be two integers from 1 to {MAX_INPUT_SIDE} (the training size, H W), got "
            f"{args.input_size[0]} {args.input_size[1]}"
        )
    if args.repo_id is not None:
        check_repo_id(args.repo_id)
    if args.out is not None and not args.out.strip():
        raise CLIError(
            "--out is empty (an unset variable?); name a new folder, or leave --out out for the default"
        )
    model_id = f"hf-hub:{args.repo_id}" if args.repo_id else None
    conversion, folder = convert_checkpoint(
        args.source,
        args.out,
        force=args.force,
        model_id=model_id,
        family=args.family,
        arch=args.arch,
        fusion_upsample=args.fusion_upsample,
        align_corners=args.align_corners,
        dataset=args.dataset,
        input_size=tuple(args.input_size) if args.input_size else None,
    )
    for line in conversion.summary():
        print(line)
    files = ", ".join(f"{name} ({_size((folder / name).stat().st_size)})" for name in FOLDER_FILES)
    print(f"wrote {folder}: {files}")
    print(f'load it with: timm.create_model("local-dir:{folder}", pretrained=True)')
    return 0


def push_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", help="a folder written by `hrnet-backbones convert`")
    p.add_argument("--repo-id", required=True, help="the model repository, ORG/NAME (created if missing)")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--revision", help="branch to commit to (created from main if missing; default: main)")
    p.add_argument("--commit-message", help="commit message (default: 'Add <architecture> converted by ...')")
    p.add_argument(
        "--dry-run", action="store_true", help="list the files that would be uploaded; send nothing"
    )


def push_run(args: argparse.Namespace) -> int:
    from .hub import push_folder

    result = push_folder(
        Path(args.folder),
        args.repo_id,
        private=args.private,
        revision=args.revision,
        commit_message=args.commit_message,
        dry_run=args.dry_run,
    )
    where = f"{result.repo_id}@{result.revision}" + (" (private)" if result.private else "")
    verb = "would upload" if result.dry_run else "uploaded"
    print(f"{verb} {len(result.files)} files to {where}:")
    for name, size in result.files:
        print(f"  {name}  {size} bytes ({_size(size)})")
    if result.commit_url:
        print(f"commit: {result.commit_url}")
    at = "" if result.revision == "main" else f"@{result.revision}"
    print(f'load it with: timm.create_model("hf-hub:{result.repo_id}{at}", pretrained=True)')
    return 0
