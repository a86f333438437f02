"""Throughput of this package's HRNet against timm's built-in HRNet: ``hrnet-backbones bench`` as a script.

    python benchmarks/throughput.py --help
    python benchmarks/throughput.py --models hrnet_w32 --sizes pose --batch-sizes 1 8 --precision fp32 bf16

Every option of ``hrnet-backbones bench`` applies, but results (JSON, CSV, PNG) go to this checkout's
``benchmarks/results/`` unless ``--out`` says otherwise. Existing result files there (the committed ones) are
refused before anything runs; ``--force`` reproduces them. The suite itself lives in ``hrnet_backbones/bench/``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script belongs to

from hrnet_backbones.bench import add_arguments, run_cli  # noqa: E402
from hrnet_backbones.cliutil import report_errors  # noqa: E402

PROG = "benchmarks/throughput.py"
RESULTS = ROOT / "benchmarks" / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    add_arguments(parser, out_default=str(RESULTS))
    args = parser.parse_args(argv)
    return report_errors(PROG, lambda: run_cli(args))


if __name__ == "__main__":
    sys.exit(main())
