"""How time and memory grow with input pixels and with batch size (eager model and fast path).

    python benchmarks/scaling.py --force              # hrnet_w32, 128x96 .. 512x384 at batch 1, batch 1 .. 16
    python benchmarks/scaling.py --model hrnetv2_w18 --impls eager fast timm --train --out /tmp/scaling

Prints the table and the scaling report (least-squares exponents of time ~ pixels^k and ~ batch^k, and the sizes
whose per-pixel time is above the largest size's), and writes ``scaling.{json,csv,png}`` to this checkout's
``benchmarks/results/`` (``--out``). Existing files (the committed ones) are refused before anything runs;
``--force`` reproduces them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script belongs to

import torch  # noqa: E402

from hrnet_backbones.bench import (  # noqa: E402
    BenchSpec,
    ProgressPrinter,
    format_table,
    parse_size,
    result_paths,
    run_benchmark,
    scaling_report,
    write_results,
)
from hrnet_backbones.cliutil import report_errors  # noqa: E402
from hrnet_backbones.fileio import refuse_existing  # noqa: E402

PROG = "benchmarks/scaling.py"
RESULTS = ROOT / "benchmarks" / "results"
PIXEL_SWEEP = ("128x96", "256x192", "384x288", "512x384")
BATCH_SWEEP = (1, 2, 4, 8, 16)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROG,
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="hrnet_w32", help="registered model name")
    p.add_argument("--impls", nargs="+", default=["eager", "fast"], help="inference contenders")
    p.add_argument("--sizes", nargs="+", default=list(PIXEL_SWEEP), help="pixel sweep, at batch 1")
    p.add_argument("--batch-sizes", nargs="+", type=int, default=list(BATCH_SWEEP), help="batch sweep")
    p.add_argument("--batch-size-input", default="256x192", help="input size of the batch sweep")
    p.add_argument("--train", action="store_true", help="also sweep training steps (eager)")
    p.add_argument("--repeats", type=int, default=5, help="timed rounds per contender")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds per contender first")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (None: torch's choice)")
    p.add_argument("--device", default="auto", help="cpu, cuda[:N] or auto")
    p.add_argument("--arch", choices=["tiny"], default=None, help="the fixtures' tiny trunk (smoke tests)")
    p.add_argument(
        "--progress-interval", type=float, default=5.0, help="seconds between progress lines inside a group"
    )
    p.add_argument("--out", default=str(RESULTS), help="folder for scaling.json/.csv/.png")
    p.add_argument("--force", action="store_true", help="overwrite existing result files")
    return p


def run(args: argparse.Namespace) -> int:
    batch_input = parse_size(args.batch_size_input)
    shapes = [(parse_size(s), 1) for s in args.sizes]
    shapes += [(batch_input, b) for b in args.batch_sizes if (batch_input, b) not in shapes]
    spec = BenchSpec(
        models=(args.model,),
        modes=("infer", "train") if args.train else ("infer",),
        impls=tuple(args.impls),
        train_impls=("eager",),
        shapes=tuple(shapes),
        repeats=args.repeats,
        warmup=args.warmup,
        device=args.device,
        arch=args.arch,
        ceiling=False,
    )
    refuse_existing(result_paths(args.out, "scaling"), args.force)  # before the sweep, not after it
    if args.threads:
        torch.set_num_threads(args.threads)
    printer = ProgressPrinter(args.progress_interval)
    result = run_benchmark(spec, progress=printer.group, complexity=False, step_progress=printer.step)
    print(format_table(result.rows))
    print("\nScaling (exponent 1.00 = linear):")
    for line in scaling_report(result.rows):
        print("  " + line)
    for path in write_results(result, args.out, "scaling", force=args.force):
        print(f"wrote {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(PROG, lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
