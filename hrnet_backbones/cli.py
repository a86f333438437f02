"""The ``hrnet-backbones`` command.

Every subcommand is a ``(add_arguments, run)`` pair in ``COMMANDS``. Expected failures (bad input, missing files)
raise :class:`CLIError` or ``ValueError``/``FileNotFoundError``; ``main`` prints them as one line on stderr and
exits with status 2, so scripts can rely on the exit code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = ["CLIError", "COMMANDS", "main"]

DEFAULT_MODEL = "hrnet_w32"
DEFAULT_INPUT_SIZE = (256, 192)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def _input_size_arg(parser: argparse.ArgumentParser, default: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
    parser.add_argument(
        "--input-size",
        nargs=2,
        type=int,
        metavar=("H", "W"),
        default=list(default),
        help=f"input height and width (default: {default[0]} {default[1]})",
    )


def _check_size(size: Sequence[int]) -> tuple[int, int]:
    h, w = size
    if h < 1 or w < 1:
        raise CLIError(f"--input-size must be two positive integers, got {h} {w}")
    return h, w


def _format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = [
        "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- list
def _list_args(p: argparse.ArgumentParser) -> None:
    _input_size_arg(p)


def _list_run(args: argparse.Namespace) -> int:
    from .complexity import measure, meta_model
    from .registry import VARIANTS, model_names

    size = _check_size(args.input_size)
    rows = []
    for name in model_names():
        prefix, width = name.rsplit("_w", 1)
        model = meta_model(name, features_only=True)
        c = measure(model, size)
        default = model.feature_info
        rows.append(
            [
                name,
                VARIANTS[prefix].upper(),
                f"W{width}",
                f"{c.params_m:.2f}",
                f"{c.gmacs:.2f}",
                f"{c.paper_gflops:.2f}",
                ",".join(map(str, default.channels())),
                ",".join(map(str, default.reduction())),
            ]
        )
    headers = ["model", "variant", "width", "params (M)", "GMACs", "GFLOPs*", "channels", "strides"]
    print(f"Backbones (features_only defaults) at {size[0]}x{size[1]}:")
    print(_format_table(headers, rows))
    print("* multiply-adds / 2^30, the unit of the HRNet papers' complexity tables")
    return 0


# ----------------------------------------------------------------------------------------------------- info
def _info_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "name", nargs="?", default=DEFAULT_MODEL, help=f"a registered model name (default: {DEFAULT_MODEL})"
    )
    _input_size_arg(p)


def _info_run(args: argparse.Namespace) -> int:
    import timm

    from .complexity import feature_table, measure, meta_model
    from .registry import model_names

    size = _check_size(args.input_size)
    if args.name not in model_names() and not timm.is_model(args.name):
        raise CLIError(f"unknown model {args.name!r}; `hrnet-backbones list` shows the registered names")
    if args.name not in model_names():
        raise CLIError(
            f"{args.name!r} is a timm model but not one of this package's; try one of {model_names()}"
        )
    model = meta_model(args.name, head="none")
    rows = [
        [r.index, r.module, r.channels, r.stride, "x".join(map(str, r.shape))]
        for r in feature_table(model, size)
    ]
    feats = meta_model(args.name, features_only=True)
    c = measure(feats, size)
    print(
        f"{args.name}: {model.representation.upper()} representation, trunk width W{model.arch.width}, "
        f"input {size[0]}x{size[1]}"
    )
    print(_format_table(["index", "feature", "channels", "stride", "output shape (NCHW)"], rows))
    print(
        f"features_only default out_indices: {list(feats.out_indices)}; "
        f"{c.params_m:.2f} M params, {c.gmacs:.2f} GMACs ({c.paper_gflops:.2f} GFLOPs as in the papers)"
    )
    return 0


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
    try:
        import hrnet_backbones  # noqa: F401  (registers the models)

        return COMMANDS[args.command][2](args)
    except (CLIError, ValueError, FileNotFoundError, FileExistsError, PermissionError) as e:
        print(f"hrnet-backbones {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
