"""Proof that the pieces learn together: synthetic data -> `hrnet-backbones train` -> held-out accuracy.

    python benchmarks/learning.py                      # pose: AP of a small HRNet trained from scratch, 20 min
    python benchmarks/learning.py --nproc 2 --sync-bn --epochs N  # the same run (N: its epochs), 2 processes
    python benchmarks/learning.py --kind face --minutes 10   # landmarks: NME on synthetic 300W-style faces
    python benchmarks/learning.py --minutes 3 --images 200 --input-size 64 48   # a quick end-to-end check

Generates a synthetic data set (`hrnet_backbones.synth`, 2000 images; or reuses `--data`), trains a small HRNet
from scratch on the CPU with `hrnet-backbones train` (in a subprocess; under `torch.distributed.run` with
`--nproc N`, the threads and the global batch split between the processes), then prints the curve (held-out AP
every `--val-every` epochs), the held-out AP (NME for faces) with and without the flip test (and with its exact
alignment, `evaluate --flip-align exact`), the same model decoded with plain argmax, the quarter offset, DARK and
DARK-UDP refinement, and the constant baseline (the training set's mean pose or mean face shape in every box).

The recipe: DARK targets (`--codec`), 128x96 crops, global batch 16, Adam at 2e-3 with the official steps
(x0.1 at 170/210 and 200/210 of the epochs; `--schedule cosine` instead), `--channels-last`, bfloat16 autocast
where the CPU has native bfloat16 (`--cpu-amp auto`: 1.3x the img/s, the same AP per epoch as float32), float32
elsewhere. Measured on 2 cores, these beat 96x72 crops (twice the img/s, lower AP at equal time), a batch of 32
and lr 3e-3 (lower AP at equal epochs).

The curve is scored without the flip test (half the validation time inside the budget); the table after the run
scores the trained model both ways.

`--minutes` sets the budget: two dozen timed training steps through the real DataLoader (so the data pipeline's
share of the cores counts) and the validation's share estimate an epoch, and the run gets as many epochs as fit
(`--epochs` fixes the number instead; give a `--nproc` run the one-process run's epochs to compare them).
Results go to `benchmarks/results/learning_{pose,face}[_Nproc].json` (`--json`); an existing file needs
`--force`, checked before any work.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # measure the checkout this script belongs to

import torch  # noqa: E402

#: the small trunk: stem 32, one bottleneck module of 2 blocks (128 channels out), one module per stage with 2
#: basic blocks per branch, branches of 16/32/64/128 channels (1.3 M parameters with a 17-keypoint head)
SMALL_ARCH = {
    "stem_width": 32,
    "stage1": {"num_modules": 1, "num_blocks": [2], "num_channels": [32], "block": "BOTTLENECK"},
    "stage2": {"num_modules": 1, "num_blocks": [2, 2], "num_channels": [16, 32], "block": "BASIC"},
    "stage3": {"num_modules": 1, "num_blocks": [2, 2, 2], "num_channels": [16, 32, 64], "block": "BASIC"},
    "stage4": {
        "num_modules": 1,
        "num_blocks": [2, 2, 2, 2],
        "num_channels": [16, 32, 64, 128],
        "block": "BASIC",
    },
}
REFINEMENTS = (None, "quarter", "dark", "udp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", choices=("pose", "face"), default="pose")
    p.add_argument("--images", type=int, default=2000, help="synthetic images, 20%% held out (default: 2000)")
    p.add_argument("--data", type=Path, help="reuse a data set written by `hrnet-backbones synth` of --kind")
    p.add_argument(
        "--input-size", nargs=2, type=int, metavar=("H", "W"), help="default: 128 96 (faces 128 128)"
    )
    p.add_argument(
        "--arch", default=json.dumps(SMALL_ARCH), help="--arch of train (default: the small trunk)"
    )
    p.add_argument("--model", help="default: hrnet_w32 (pose), hrnetv2_w18 (face); the trunk is --arch")
    p.add_argument("--codec", choices=("msra", "dark", "udp"), default="dark")
    p.add_argument("--minutes", type=float, default=20.0, help="training budget (default: 20)")
    p.add_argument("--epochs", type=int, help="train this many epochs instead of fitting --minutes")
    p.add_argument(
        "--batch-size", type=int, default=16, help="global batch, split between processes (default: 16)"
    )
    p.add_argument(
        "--val-every", type=int, default=2, help="held-out AP every N epochs and after the last (default: 2)"
    )
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument(
        "--schedule", choices=("step", "cosine"), default="step", help="lr schedule of train (default: step)"
    )
    p.add_argument("--threads", type=int, default=2, help="CPU threads in all (split between processes)")
    p.add_argument(
        "--workers",
        type=int,
        help="DataLoader workers per process (default: 0; on 2 cores a worker process competes with the training "
        "threads: 0.173 against 0.238 s per step with bfloat16, 0.236 against 0.275 s in float32)",
    )
    p.add_argument(
        "--cpu-amp",
        choices=("auto", "on", "off"),
        default="auto",
        help="train with bfloat16 autocast (`train --cpu-amp`; auto, the default: where the CPU has native "
        "bfloat16, 1.3x the img/s there at the same AP per epoch)",
    )
    p.add_argument(
        "--sync-bn",
        action="store_true",
        help="batch norm over the global batch with --nproc (`train --sync-bn`)",
    )
    p.add_argument("--nproc", type=int, default=1, help="processes (torchrun, gloo) (default: 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, help="keep the data and the run here (default: a temporary folder)")
    p.add_argument("--json", type=Path, help="default: benchmarks/results/learning_<kind>[_<N>proc].json")
    p.add_argument("--no-json", action="store_true", help="print only")
    p.add_argument("--force", action="store_true", help="overwrite the results file")
    p.add_argument("--quiet", action="store_true", help="no progress bars from the training run")
    args = p.parse_args(argv)
    if args.input_size is None:
        args.input_size = [128, 96] if args.kind == "pose" else [128, 128]
    args.model = args.model or ("hrnet_w32" if args.kind == "pose" else "hrnetv2_w18")
    if args.workers is None:
        args.workers = 0
    if args.cpu_amp == "auto":
        from hrnet_backbones.fast import native_bf16_cpu

        args.cpu_amp = "on" if native_bf16_cpu() else "off"
    if args.batch_size % args.nproc:
        p.error(f"--batch-size {args.batch_size} does not split into {args.nproc} processes")
    if args.json is None:
        suffix = f"_{args.nproc}proc" if args.nproc > 1 else ""
        args.json = ROOT / "benchmarks" / "results" / f"learning_{args.kind}{suffix}.json"
    return args


# ------------------------------------------------------------------------------------------------------ data
def make_data(args: argparse.Namespace, work: Path):
    from hrnet_backbones.synth import SynthPaths, make_face_dataset, make_pose_dataset

    if args.data is not None:
        root = args.data
        if args.kind == "pose":
            anns = [root / "annotations" / f"person_keypoints_{s}.json" for s in ("train", "val")]
            dirs = [root / "images" / s for s in ("train", "val")]
        else:
            anns = [root / "annotations" / f"face_landmarks_{s}.csv" for s in ("train", "val")]
            dirs = [root / "images", root / "images"]
        missing = [str(p) for p in anns if not p.is_file()]
        if missing:
            raise SystemExit(
                f"--data {root}: {', '.join(missing)} missing; write it with hrnet-backbones synth"
            )
        return SynthPaths(root, anns[0], dirs[0], anns[1], dirs[1])
    make = make_pose_dataset if args.kind == "pose" else make_face_dataset
    t0 = time.perf_counter()
    paths = make(work / "data", args.images, args.seed)
    print(
        f"synthetic {args.kind} data: {args.images} images in {time.perf_counter() - t0:.0f} s -> {paths.root}"
    )
    if args.kind == "face":  # the CSV's image names (train/000001.jpg) are relative to images/
        images = paths.root / "images"
        return SynthPaths(paths.root, paths.train_ann, images, paths.val_ann, images)
    return paths


def build_sets(args: argparse.Namespace, paths):
    """The training and held-out data sets as the run builds them (official filters, the codec's targets)."""
    from hrnet_backbones.train import TrainConfig, build_dataset

    cfg = TrainConfig(
        model=args.model,
        train_ann="-",
        train_images="-",
        out="-",
        head="pose" if args.kind == "pose" else "landmark",
        codec=args.codec,
        input_size=tuple(args.input_size),
    )
    norm = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}  # timing only: any values do
    train = build_dataset(cfg, str(paths.train_ann), str(paths.train_images), train=True, **norm)
    val = build_dataset(cfg, str(paths.val_ann), str(paths.val_images), train=False, **norm)
    return train, val


# ---------------------------------------------------------------------------------------------- the budget
PILOT_STEPS = 40  # after the first 8 (workers starting, their prefetched batches, kernels warming up)


def pilot(args: argparse.Namespace, train_set, num_keypoints: int) -> tuple[float, float]:
    """Seconds per training step of one process (real batches through the DataLoader with --workers, so the
    data pipeline's share of the cores counts) and seconds per sample of the data pipeline alone."""
    import timm
    from torch.utils.data import DataLoader

    from hrnet_backbones.convert.converter import parse_arch
    from hrnet_backbones.keypoints import KeypointMSELoss

    torch.set_num_threads(max(1, args.threads // args.nproc))
    head = "pose" if args.kind == "pose" else "landmark"
    model = timm.create_model(args.model, arch=parse_arch(args.arch)[0], head=head, num_classes=num_keypoints)
    model = model.to(memory_format=torch.channels_last).train()  # as the run trains (--channels-last)
    opt = torch.optim.Adam(model.parameters())
    loss_fn = KeypointMSELoss(use_target_weight=True)
    b = args.batch_size // args.nproc
    loader = DataLoader(train_set, batch_size=b, shuffle=True, num_workers=args.workers, drop_last=True)
    times, t0 = [], time.perf_counter()
    for i, batch in enumerate(loader):
        x = batch["image"].contiguous(memory_format=torch.channels_last)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.cpu_amp == "on"):
            out = model(x)
        loss = loss_fn(out.float(), batch["heatmaps"], batch["weights"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        t1 = time.perf_counter()
        if i >= 8:
            times.append(t1 - t0)
        t0 = t1
        if len(times) == PILOT_STEPS:
            break
    t0 = time.perf_counter()
    for i in range(2 * b):
        train_set[i % len(train_set)]
    return sum(times) / len(times), (time.perf_counter() - t0) / (2 * b)


def choose_epochs(args: argparse.Namespace, train_set, val_set, k: int) -> int:
    if args.epochs:
        return args.epochs
    step_s, sample_s = pilot(args, train_set, k)
    steps = len(train_set) // args.batch_size
    # validation (the curve, without the flip test): the data pipeline and a forward of every held-out crop (a
    # forward is about a third of a training step)
    val_s = len(val_set) / args.nproc * (sample_s + step_s / (args.batch_size // args.nproc) / 3)
    # the margin: epochs took 1.09x the estimate from steady steps (checkpoints, the epoch's end), and the run
    # starts and ends outside them. The speed of a shared machine drifts by 10-20 % from minute to minute (timed
    # steps of one run: 0.174 s on average; pilots before it: 0.17-0.21 s), so a budget is an estimate.
    epoch_s = (steps * step_s + val_s / args.val_every) * 1.10
    epochs = max(1, int(args.minutes * 60 / epoch_s))
    print(
        f"budget {args.minutes:g} min: {step_s:.3f} s per training step with data loading, "
        f"~{epoch_s:.0f} s per epoch -> {epochs} epochs"
    )
    return epochs


# ---------------------------------------------------------------------------------------------- the run
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_training(args: argparse.Namespace, paths, out: Path, epochs: int) -> float:
    head = "pose" if args.kind == "pose" else "landmark"
    cmd = [
        "train",
        "--model", args.model,
        "--arch", args.arch,
        "--head", head,
        "--codec", args.codec,
        "--train", str(paths.train_ann), str(paths.train_images),
        "--val", str(paths.val_ann), str(paths.val_images),
        "--out", str(out),
        "--input-size", *map(str, args.input_size),
        "--epochs", str(epochs),
        "--batch-size", str(args.batch_size // args.nproc),
        "--lr", str(args.lr),
        "--schedule", args.schedule,
        "--workers", str(args.workers),
        "--seed", str(args.seed),
        "--log-every", "0",
        "--val-every", str(args.val_every),
        "--no-flip-test",  # the curve; the held-out table after the run has both
        "--channels-last",
        "--device", "cpu",
        "--force",
    ]  # fmt: skip
    if args.cpu_amp == "on":
        cmd.append("--cpu-amp")
    if args.sync_bn:
        cmd.append("--sync-bn")
    if args.quiet:
        cmd.append("--no-progress")
    if args.nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(args.nproc)]
        launcher += ["--master_port", str(_free_port()), "-m", "hrnet_backbones"]
    else:
        launcher = [sys.executable, "-m", "hrnet_backbones"]
    threads = str(max(1, args.threads // args.nproc))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    t0 = time.perf_counter()
    done = subprocess.run(launcher + cmd, env=env)
    if done.returncode != 0:
        raise SystemExit(f"training failed (exit status {done.returncode})")
    return time.perf_counter() - t0


def evaluate_variants(args: argparse.Namespace, paths, out: Path) -> dict[str, dict[str, float]]:
    """The trained model on the held-out split: flip test on (official and exact alignment) / off, and each
    decoding with flip test on."""
    import timm

    from hrnet_backbones.evaluate import evaluate_coco, evaluate_landmarks, predict_dataset
    from hrnet_backbones.train import TrainConfig, build_dataset, normalization

    torch.set_num_threads(args.threads)
    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    cfg = TrainConfig(
        model=args.model,
        train_ann=str(paths.train_ann),
        train_images=str(paths.train_images),
        out=str(out),
        head="pose" if args.kind == "pose" else "landmark",
        codec=args.codec,
        input_size=tuple(args.input_size),
    )
    mean, std = normalization(cfg)
    val = build_dataset(cfg, str(paths.val_ann), str(paths.val_images), train=False, mean=mean, std=std)

    def score(flip: bool, refine: str | None, flip_align: str = "official") -> dict[str, float]:
        preds = predict_dataset(
            model,
            val,
            flip=flip,
            flip_align=flip_align,
            refine=refine,
            batch_size=64,
            num_workers=args.workers,
        )
        if args.kind == "pose":
            return evaluate_coco(preds, val)[0]
        return evaluate_landmarks(preds, val)

    results = {
        "flip, codec's decoding": score(True, "auto"),
        "no flip, codec's decoding": score(False, "auto"),
        "flip exactly aligned, codec's": score(True, "auto", flip_align="exact"),
    }
    for refine in REFINEMENTS:
        results[f"flip, {refine or 'argmax'}"] = score(True, refine)
    return results


# ---------------------------------------------------------------------------------------------- report
def print_curve(out: Path, metric: str) -> list[dict]:
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "time_s" in r]
    print(f"\n{'epoch':>5}  {'loss':>10}  {'lr':>8}  {'img/s':>7}  {'time s':>7}  {metric:>7}")
    for r in epochs:
        value = r.get("val", {}).get(metric)
        shown = f"{value:.4f}" if value is not None else "-"
        print(
            f"{r['epoch']:>5}  {r['loss']:>10.6f}  {r['lr']:>8.2g}  {r['img_s']:>7.1f}  {r['time_s']:>7.1f}  {shown:>7}"
        )
    return epochs


def machine() -> dict:
    from hrnet_backbones.bench.runner import _cpu_name
    from hrnet_backbones.fast import native_bf16_cpu

    return {
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpus": os.cpu_count(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "native_bf16": native_bf16_cpu(),
        "torch": torch.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.no_json and args.json.exists() and not args.force:
        raise SystemExit(
            f"{args.json} exists; pass --force to overwrite it (or --json elsewhere, or --no-json)"
        )
    work = args.work or Path(tempfile.mkdtemp(prefix="hrnet-learning-"))
    work.mkdir(parents=True, exist_ok=True)
    metric = "AP" if args.kind == "pose" else "NME"
    try:
        paths = make_data(args, work)
        train_set, val_set = build_sets(args, paths)
        n_train, n_val, k, layout = len(train_set), len(val_set), val_set.num_keypoints, val_set.layout.name
        print(f"{n_train} training and {n_val} held-out instances, {k} keypoints")
        epochs = choose_epochs(args, train_set, val_set, k)
        out = work / "run"
        wall = run_training(args, paths, out, epochs)
        curve = print_curve(out, metric)
        variants = evaluate_variants(args, paths, out)
        from hrnet_backbones.synth import mean_pose_baseline_ap, mean_shape_baseline_nme

        if args.kind == "pose":
            baseline = mean_pose_baseline_ap(paths.train_ann, paths.val_ann)
        else:
            baseline = mean_shape_baseline_nme(paths.train_ann, paths.val_ann, layout)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    amp = ", bfloat16 autocast" if args.cpu_amp == "on" else ", float32"
    print(
        f"\ntrained {epochs} epochs in {wall / 60:.1f} min ({args.nproc} process(es), {args.threads} threads{amp})"
    )
    print(f"\n{'held-out ' + metric:<28}  {'value':>7}")
    for name, stats in variants.items():
        print(f"{name:<28}  {stats[metric]:>7.4f}")
    print(f"{'constant mean ' + ('pose' if args.kind == 'pose' else 'shape'):<28}  {baseline:>7.4f}")
    if not args.no_json:
        from hrnet_backbones.fileio import atomic_write_text

        record = {
            "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "epochs": epochs,
            "train_instances": n_train,
            "val_instances": n_val,
            "wall_s": wall,
            "curve": curve,
            "held_out": variants,
            "constant_baseline": baseline,
            "machine": machine(),
        }
        atomic_write_text(args.json, json.dumps(record, indent=2) + "\n")
        print(f"\nresults -> {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
