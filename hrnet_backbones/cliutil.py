"""Pieces every ``hrnet-backbones`` command shares: the user-facing error, argument helpers, table layout.

Command modules (``cli``, ``bench``, ``convert.cli`` ...) import from here, never from each other, so the
dependencies point one way: ``cli`` -> command modules -> ``cliutil``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

__all__ = [
    "CLIError",
    "DEFAULT_INPUT_SIZE",
    "DEFAULT_MODEL",
    "check_size",
    "format_table",
    "input_size_arg",
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
        print(f"{prog}: error: {e}", file=sys.stderr)
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
