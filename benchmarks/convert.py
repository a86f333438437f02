"""Time and peak memory of converting a full-size checkpoint (random weights with a manifest's exact keys/shapes).

    python benchmarks/convert.py                       # pose W48 and seg W48, both torch.save formats
    python benchmarks/convert.py --family det --width 18 --format zip

Each conversion runs in a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own; the table gives the
file size, wall time of ``convert_checkpoint`` (read + hash + verify + convert + write), the process' RSS after
importing torch/timm/hrnet_backbones (baseline) and its peak, and peak minus baseline as a multiple of the file size.
``verify s`` is what the damage check of zip files costs inside that time (``verify_zip``: every record's CRC-32,
and ``storages_fit_records``: each memory-mapped tensor is exactly its record; timed on their own after the
conversion, with the file in the page cache as it is during the conversion), with ``hash s`` (the SHA-256 the
converter records) for scale; ``mmap`` says whether the file was found fit for memory-mapped loading.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MANIFESTS = ROOT / "tests" / "fixtures" / "official" / "manifests"

_CHILD = r"""
import json, resource, sys, time
import hrnet_backbones
from hrnet_backbones.convert import convert_checkpoint
from hrnet_backbones.convert.load import sha256_file, storages_fit_records, verify_zip
import torch

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")

base = rss_mb()
t = time.perf_counter()
conversion, folder = convert_checkpoint(sys.argv[1], sys.argv[2])
wall = time.perf_counter() - t
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
from pathlib import Path
mappable, verify = None, float("nan")
if sys.argv[3] == "zip":
    obj = torch.load(sys.argv[1], map_location="cpu", weights_only=True, mmap=True)
    t = time.perf_counter()
    mappable = storages_fit_records(obj, verify_zip(sys.argv[1]))
    verify = time.perf_counter() - t
t = time.perf_counter()
sha256_file(Path(sys.argv[1]), progress=False)
hashing = time.perf_counter() - t
print(json.dumps(dict(wall_s=wall, base_mb=base, peak_mb=peak, arch=conversion.architecture, verify_s=verify,
                      hash_s=hashing, mmap=mappable)))
"""


def make_checkpoint(family: str, width: int, path: Path, zip_format: bool) -> int:
    """A checkpoint with exactly the manifest's keys, shapes and wrapping, filled with random numbers."""
    manifest = json.loads((MANIFESTS / f"{family}_w{width}.json").read_text())
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for key, (shape, dtype) in manifest["keys"].items():
        if dtype == "int64":
            sd[key] = torch.zeros(shape, dtype=torch.long)
        else:
            sd[key] = torch.randn(shape, generator=gen) * 0.05
    obj = {"meta": {"note": "benchmark"}, "state_dict": sd} if family == "det" else sd
    torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    return path.stat().st_size


def run(family: str, width: int, fmt: str, workdir: Path) -> dict:
    src = workdir / f"{family}_w{width}_{fmt}.pth"
    size = make_checkpoint(family, width, src, fmt == "zip")
    out = workdir / f"out_{family}_{width}_{fmt}"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(src), str(out), fmt],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result.update(family=family, width=width, format=fmt, file_mb=size / 2**20)
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--family", nargs="+", default=["pose", "seg"], choices=["pose", "cls", "seg", "face", "det"]
    )
    p.add_argument("--width", type=int, nargs="+", default=[48], choices=[18, 32, 48])
    p.add_argument("--format", nargs="+", default=["zip", "legacy"], choices=["zip", "legacy"])
    args = p.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    header = (
        f"{'checkpoint':<16}{'format':<8}{'file MB':>9}{'time s':>8}{'verify s':>10}{'hash s':>8}{'mmap':>6}"
        f"{'base MB':>9}{'peak MB':>9}{'(peak-base)/file':>18}"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.family:
            for width in args.width:
                for fmt in args.format:
                    r = run(family, width, fmt, Path(tmp))
                    ratio = (r["peak_mb"] - r["base_mb"]) / r["file_mb"]
                    mmap = {True: "yes", False: "no", None: "-"}[r["mmap"]]
                    print(
                        f"{family + '_w' + str(width):<16}{fmt:<8}{r['file_mb']:>9.1f}{r['wall_s']:>8.2f}"
                        f"{r['verify_s']:>10.2f}{r['hash_s']:>8.2f}{mmap:>6}"
                        f"{r['base_mb']:>9.0f}{r['peak_mb']:>9.0f}{ratio:>18.2f}"
                    )


if __name__ == "__main__":
    main()
