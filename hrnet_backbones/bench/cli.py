"""``hrnet-backbones bench`` (also ``python benchmarks/throughput.py``): options, progress lines, the run."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TextIO

import torch

from ..fileio import refuse_existing
from .contenders import contender_names
from .report import (
    checkpointing_summary,
    complexity_lines,
    format_table,
    result_paths,
    scaling_report,
    write_results,
)
from .runner import run_benchmark
from .spec import INFER_IMPLS, PRECISIONS, TASK_SIZES, TRAIN_IMPLS, BenchSpec, parse_size

__all__ = ["DEFAULT_OUT", "ProgressPrinter", "add_arguments", "run_cli", "spec_from_args"]

#: Where ``hrnet-backbones bench`` writes unless ``--out`` says otherwise (git-ignored in this repository).
DEFAULT_OUT = "bench-results"


class ProgressPrinter:
    """Progress lines on stderr: every group line, and the steps inside a group (building, first call, each
    warm-up and timed round of each contender) at most one every ``interval`` seconds, so a quick run stays
    short and a slow one (emulated bf16, a compile) still says what it is doing. A step line also gives how long
    the previous step took."""

    def __init__(
        self, interval: float = 5.0, stream: TextIO | None = None, clock: Callable[[], float] = time.monotonic
    ):
        self.interval = interval
        self.stream = stream
        self.clock = clock
        self._last_line = self._last_step = clock()

    def _print(self, msg: str) -> None:
        print(msg, file=self.stream or sys.stderr, flush=True)
        self._last_line = self.clock()

    def group(self, msg: str) -> None:
        self._print(msg)
        self._last_step = self._last_line

    def step(self, msg: str) -> None:
        now = self.clock()
        previous, self._last_step = now - self._last_step, now
        if now - self._last_line >= self.interval:
            self._print(f"{msg} (previous step {previous:.1f} s)")


def add_arguments(p: argparse.ArgumentParser, out_default: str = DEFAULT_OUT) -> None:
    """Options of ``hrnet-backbones bench``; ``python benchmarks/throughput.py`` passes its own ``out_default``."""
    p.add_argument(
        "--models",
        nargs="+",
        default=["hrnet_w32"],
        metavar="NAME",
        help="registered model names, or 'all' (default: hrnet_w32)",
    )
    p.add_argument(
        "--sizes",
        nargs="+",
        default=["pose"],
        metavar="SIZE",
        help=f"input sizes: {', '.join(f'{k} ({h}x{w})' for k, (h, w) in TASK_SIZES.items())} or HxW (default: pose)",
    )
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8], metavar="N", help="(default: 1 8)")
    p.add_argument(
        "--precision",
        nargs="+",
        default=["fp32"],
        choices=list(PRECISIONS),
        help="fp32, or fp16 / bf16 autocast (the fast path casts its weights instead) (default: fp32)",
    )
    p.add_argument(
        "--impls",
        nargs="+",
        default=list(INFER_IMPLS),
        metavar="IMPL",
        help=f"inference contenders: {', '.join(contender_names('infer'))} (default: {' '.join(INFER_IMPLS)})",
    )
    p.add_argument(
        "--compile",
        nargs="+",
        default=[],
        metavar="MODE",
        help="also time torch.compile(eager model, mode=MODE) for each MODE (default, reduce-overhead, max-autotune)",
    )
    p.add_argument(
        "--modes", nargs="+", default=["infer"], choices=["infer", "train"], help="(default: infer)"
    )
    p.add_argument(
        "--train-impls",
        nargs="+",
        default=list(TRAIN_IMPLS),
        metavar="IMPL",
        help=f"training contenders: {', '.join(contender_names('train'))} (default: {' '.join(TRAIN_IMPLS)})",
    )
    p.add_argument(
        "--channels-last", action="store_true", help="run timm / eager / compiled models channels_last"
    )
    p.add_argument("--repeats", type=int, default=10, help="timed rounds per contender (default: 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds per contender first (default: 2)")
    p.add_argument("--device", default="auto", help="cpu, cuda[:N] or auto (default: auto)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--arch", choices=["tiny"], default=None, help="the fixtures' tiny trunk (smoke tests)")
    p.add_argument("--no-ceiling", action="store_true", help="skip measuring the convolution ceiling")
    p.add_argument("--no-complexity", action="store_true", help="skip the published-complexity table")
    p.add_argument(
        "--scaling", action="store_true", help="print the scaling report (time / memory vs pixels, batch)"
    )
    p.add_argument(
        "--emulated-bf16",
        action="store_true",
        help="measure bf16 groups even on a CPU without native bfloat16 (no AVX512-BF16 or AMX), where they are "
        "emulated and take minutes each; skipped otherwise",
    )
    p.add_argument(
        "--progress-interval",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="at most one progress line per SECONDS inside a group; 0 prints every step (default: 5)",
    )
    p.add_argument(
        "--out", default=out_default, help=f"folder for NAME.json/.csv/.png (default: {out_default})"
    )
    p.add_argument("--name", default="throughput", help="file name stem of the results (default: throughput)")
    p.add_argument("--no-files", action="store_true", help="print only; write no files")
    p.add_argument("--force", action="store_true", help="overwrite existing result files")


def spec_from_args(args: argparse.Namespace) -> BenchSpec:
    from ..registry import model_names

    models = tuple(model_names()) if args.models == ["all"] else tuple(args.models)
    impls = tuple(dict.fromkeys([*args.impls, *(f"compile:{m}" for m in args.compile)]))
    return BenchSpec(
        models=models,
        sizes=tuple(parse_size(s) for s in args.sizes),
        batch_sizes=tuple(args.batch_sizes),
        precisions=tuple(args.precision),
        modes=tuple(args.modes),
        impls=impls,
        train_impls=tuple(args.train_impls),
        channels_last=args.channels_last,
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        arch=args.arch,
        ceiling=not args.no_ceiling,
        emulated_bf16=args.emulated_bf16,
    )


def run_cli(args: argparse.Namespace) -> int:
    """``hrnet-backbones bench``: check the options and the destination, run, print the table and summaries,
    write the files. Existing result files are refused before any work unless ``--force``."""
    spec = spec_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.progress_interval < 0:
        raise ValueError(f"--progress-interval must be >= 0 seconds, got {args.progress_interval}")
    if not args.no_files:
        refuse_existing(result_paths(args.out, args.name), args.force)

    printer = ProgressPrinter(args.progress_interval)
    result = run_benchmark(
        spec, progress=printer.group, complexity=not args.no_complexity, step_progress=printer.step
    )
    env = result.environment
    print(
        f"\n{env['device_name']} | {env['device']} | {env['threads']} threads | torch {env['torch']} | timm {env['timm']}"
    )
    print(format_table(result.rows))
    for p, g in result.ceilings.items():
        print(
            f"convolution ceiling ({p}): {g:.1f} GFLOP/s (8x256x56x56 3x3 conv, channels_last); 'ceil %' = share of it"
        )
    for line in checkpointing_summary(result.rows):
        print(line)
    if result.skipped:
        print(
            f"skipped (no native bfloat16 on this CPU; --emulated-bf16 runs them): {'; '.join(result.skipped)}"
        )
    if args.scaling:
        print("\nScaling:")
        for line in scaling_report(result.rows):
            print("  " + line)
    if result.complexity:
        print("\nPublished complexity (* multiply-adds / 2^30, the papers' 'GFLOPs'):")
        for line in complexity_lines(result.complexity):
            print("  " + line)
    if not args.no_files:
        for path in write_results(result, args.out, args.name, force=args.force):
            print(f"wrote {path}")
    return 0
