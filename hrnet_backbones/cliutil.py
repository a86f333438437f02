"""Pieces every ``hrnet-backbones`` command shares: the user-facing error, argument helpers, table layout.

Command modules (``cli``, ``bench``, ``convert.cli`` ...) import from here, never from each other, so the
dependencies point one way: ``cli`` -> command modules -> ``cliutil``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CLIError",
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_MODEL",
    "check_size",
    "format_table",
    "input_size_arg",
    "load_keypoint_model",
    "load_model",
    "report_errors",
]

DEFAULT_MODEL = "hrnet_w32"
DEFAULT_INPUT_SIZE = (256, 192)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def report_errors(prog: str, run: Callable[[], int]) -> int:
    """``run()``'s exit status; a :class:`CLIError`, ``ValueError`` or ``OSError`` (missing files, permissions, a
    full disk) becomes one line ``PROG: error: ...`` on stderr and exit status 2, Ctrl-C exit status 130."""
    try:
        return run()
    except (CLIError, ValueError, OSError) as e:
        # one line, always: a newline in a file name (or any message) is shown escaped
        message = str(e).replace("\r", "\\r").replace("\n", "\\n")
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def input_size_arg(parser: argparse.ArgumentParser, default: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=list(default),
        help=f"input height and width (default: {default[0]} {default[1]})",
    )


def check_size(size: Sequence[int]) -> tuple[int, int]:
    h, w = size
    if h < 1 or w < 1:
        raise CLIError(f"--input-size must be two positive integers, got {h} {w}")
    return h, w


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned, a dashed rule under the
    header."""
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def load_model(spec: str, features_only: bool = False, **name_kwargs: Any) -> Any:
    """The model a ``--model`` / ``MODEL`` argument names, in eval mode.

    ``spec`` is ``hf-hub:ORG/NAME``, ``local-dir:DIR``, a folder holding a converted ``config.json`` (each loads
    its weights and keeps its head), or a timm model name (random weights, with a warning; ``name_kwargs`` such
    as ``head="pose", num_classes=17`` go to ``timm.create_model`` for names only). ``features_only``: the
    feature extractor of the same model (the head dropped). A folder's ``config.json`` is checked field by field
    first (:func:`hrnet_backbones.folder.check_model_config`), so a damaged one is a one-line error.
    """
    import timm

    from .folder import check_model_source

    kwargs: dict[str, Any] = {"features_only": True} if features_only else {}
    if Path(spec).is_dir():
        if not (Path(spec) / "config.json").is_file():
            raise CLIError(f"{spec} has no config.json; convert a checkpoint first (hrnet-backbones convert)")
        spec = f"local-dir:{spec}"
    if spec.startswith(("hf-hub:", "local-dir:")):
        # timm parses config.json's top level before any entry point of ours runs: check all of it here first
        check_model_source(spec)
        return timm.create_model(spec, pretrained=True, **kwargs).eval()
    if timm.is_model(spec):
        print(
            f"warning: {spec} is built with random weights (give a converted folder for real outputs)",
            file=sys.stderr,
        )
        return timm.create_model(spec, **name_kwargs, **kwargs).eval()
    raise CLIError(
        f"model {spec!r} is neither a folder, a hub id (hf-hub:ORG/NAME, local-dir:DIR) nor a registered "
        "model name; `hrnet-backbones list` shows the names"
    )


def load_keypoint_model(spec: str, num_keypoints: int = 17) -> Any:
    """A keypoint model: what :func:`load_model` accepts (a name gets a ``num_keypoints`` pose head), or a file
    written by ``hrnet-backbones export`` (``.onnx`` / OpenVINO ``.xml``, run by :func:`hrnet_backbones.deploy.load`).
    """
    if spec.endswith((".onnx", ".xml")):
        from .deploy import load

        try:
            return load(spec)
        except ImportError as e:  # the runtime is an optional dependency: one line, not a traceback
            raise CLIError(str(e)) from None
    return load_model(spec, head="pose", num_classes=num_keypoints)
