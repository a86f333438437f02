"""Throughput of this package's HRNet against timm's built-in HRNet: ``hrnet-backbones bench`` as a script.

    python benchmarks/throughput.py --help
    python benchmarks/throughput.py --models hrnet_w32 --sizes pose --batch-sizes 1 8 --precision fp32 bf16

Every option of ``hrnet-backbones bench`` applies; results (JSON, CSV, PNG) go to ``benchmarks/results/`` unless
``--out`` says otherwise. The suite itself lives in ``hrnet_backbones/bench.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script belongs to

from hrnet_backbones.cli import main  # noqa: E402

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", str(ROOT / "benchmarks" / "results")]
    sys.exit(main(["bench", *argv]))
