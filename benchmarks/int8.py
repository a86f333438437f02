"""Static int8 settings, measured: ONNX Runtime's quantize_static variants on one model, speed and error.

    python benchmarks/int8.py                                   # W32 pose head, random weights, synthetic crops
    python benchmarks/int8.py --model local-dir:runs/pose --calibration images/ --threads 2 --batch 1

For each variant (activation type x calibration method; weights always int8 per channel, QDQ) the fp32 ONNX file
is quantized on the calibration crops, then timed interleaved with the fp32 file in ONNX Runtime (and OpenVINO
on the same QDQ file), and compared with PyTorch fp32 on held-out crops: relative error (max |diff| / max |ref|),
heatmap argmax agreement and the mean distance between the argmax pixels (heatmap pixels; keypoint heads only).
Without ``--calibration`` the crops are ``deploy.natural_image`` fields (figures then show speed, not accuracy:
a random-weight model's heatmaps have no meaningful peaks).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hrnet_backbones.cliutil import load_model  # noqa: E402
from hrnet_backbones.deploy.export import (  # noqa: E402
    _export_onnx,
    calibration_crops,
    natural_image,
    relative_error,
)
from hrnet_backbones.deploy.quantize import quantize_onnx  # noqa: E402
from hrnet_backbones.deploy.runtime import open_session  # noqa: E402

VARIANTS = [("QUInt8", "MinMax"), ("QInt8", "MinMax"), ("QUInt8", "Percentile"), ("QUInt8", "Entropy")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="hrnet_w32")
    p.add_argument("--calibration", help="image folder (default: synthetic crops)")
    p.add_argument("--images", type=int, default=32, help="calibration crops (default 32)")
    p.add_argument("--held-out", type=int, default=16, help="evaluation crops (default 16)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, nargs=2, default=(256, 192))
    p.add_argument("--variants", nargs="*", default=[f"{a}/{m}" for a, m in VARIANTS])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(args.model, head="pose", num_classes=17)
    size = tuple(args.size)
    mean, std = model.pretrained_cfg.get("mean"), model.pretrained_cfg.get("std")
    if args.calibration:
        crops = calibration_crops(args.calibration, size, mean, std, limit=args.images + args.held_out)
        calib, held = crops[: -args.held_out], crops[-args.held_out :]
    else:
        calib = natural_image(args.images, size, mean, std, seed=1)
        held = natural_image(args.held_out, size, mean, std, seed=2)
    with torch.no_grad():
        ref = torch.cat([model(held[i : i + 8]) for i in range(0, len(held), 8)])
    x = held[: args.batch].numpy()
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        _export_onnx(model, fp32, held[:2], ["heatmaps"], True, "torchscript")
        runs = {"ort fp32": open_session(fp32, "onnxruntime", args.threads)}
        runs["openvino fp32"] = open_session(fp32, "openvino", args.threads)
        for v in args.variants:
            act, method = v.split("/")
            path = Path(tmp) / f"{act}_{method}.onnx"
            t0 = time.perf_counter()
            quantize_onnx(fp32, path, calib, activations=act, method=method)
            print(f"{v}: quantized in {time.perf_counter() - t0:.1f} s")
            runs[f"ort {v}"] = open_session(path, "onnxruntime", args.threads)
            runs[f"openvino {v}"] = open_session(path, "openvino", args.threads)
        errors = {}
        for name, run in runs.items():
            got = torch.cat(
                [torch.from_numpy(run(held[i : i + 8].numpy())[0]) for i in range(0, len(held), 8)]
            )
            a, b = got.flatten(2).argmax(-1), ref.flatten(2).argmax(-1)
            w = ref.shape[-1]
            dist = torch.hypot((a % w - b % w).float(), (a // w - b // w).float())
            errors[name] = (relative_error([got], [ref]), (a == b).float().mean().item(), dist.mean().item())
        times = {name: [] for name in runs}
        for run in runs.values():
            run(x)
        for r in range(args.repeats):
            order = list(runs.items())
            k = r % len(order)
            for name, run in order[k:] + order[:k]:
                t0 = time.perf_counter()
                run(x)
                times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["ort fp32"])
    print(
        f"\n{args.model} {size[0]}x{size[1]} batch {args.batch}, {args.threads} thread(s); "
        f"error on {len(held)} held-out crops vs PyTorch fp32"
    )
    print(
        f"{'runtime / variant':32s} {'ms':>8s} {'x ort fp32':>10s} {'rel err':>9s} {'argmax =':>9s} {'px':>6s}"
    )
    for name, t in times.items():
        med = statistics.median(t)
        rel, agree, px = errors[name]
        print(f"{name:32s} {med * 1e3:8.1f} {base / med:10.2f} {rel:9.2e} {agree:9.1%} {px:6.2f}")


if __name__ == "__main__":
    main()
