"""What `train --sync-bn` costs on the CPU: time per training step with and without SyncBatchNorm, 2 gloo processes.

    python benchmarks/syncbn_cost.py                  # the learning benchmark's small trunk, batch 8 per process
    python benchmarks/syncbn_cost.py --steps 20 --rounds 5

Two processes (1 thread each, as `benchmarks/learning.py --nproc 2` gives them on 2 cores) train the learning
benchmark's small trunk (`SMALL_ARCH`, a 17-keypoint pose head) on random 128x96 crops in channels_last under
DDP: forward, heatmap MSE, backward, Adam step. Both models (plain BatchNorm2d and `CPUSyncBatchNorm`) are built
in the same processes and timed in alternating rounds, so a change of load on the machine hits both alike. Prints
the median step time of each (the slower rank's), the ratio, the number of synchronised layers and all_reduce
calls per step (2 per layer: one forward, one backward), the median time spent inside those calls, forward and
backward (waiting for the other process included) and, for scale, one such all_reduce alone, back to back.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import timm  # noqa: E402

import hrnet_backbones  # noqa: E402,F401  (registers the models)
from benchmarks.learning import SMALL_ARCH  # noqa: E402
from hrnet_backbones.distributed import DistInfo  # noqa: E402
from hrnet_backbones.syncbn import CPUSyncBatchNorm  # noqa: E402
from hrnet_backbones.train import _wrap  # noqa: E402

WORLD = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch-size", type=int, default=8, help="per process (default: 8)")
    p.add_argument("--input-size", type=int, nargs=2, default=(128, 96), metavar=("H", "W"))
    p.add_argument("--steps", type=int, default=10, help="timed steps per round and model (default: 10)")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds (default: 3)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model first (default: 2)")
    p.add_argument(
        "--latency-calls", type=int, default=200, help="back-to-back all_reduces timed alone (default: 200)"
    )
    return p.parse_args(argv)


class _CallTimer:
    """Counts the calls of ``dist.all_reduce`` (made from Python: the SyncBN layers; DDP's own reductions run in
    C++ and are not counted) and the seconds spent in them, forward and backward apart (the forward's buffer holds
    2C + 1 values, the backward's 2C)."""

    def __init__(self) -> None:
        self.calls, self.forward_s, self.backward_s = 0, 0.0, 0.0
        self.original = dist.all_reduce

    def __call__(self, tensor: torch.Tensor, *args, **kwargs):
        start = time.perf_counter()
        try:
            return self.original(tensor, *args, **kwargs)
        finally:
            self.calls += 1
            if tensor.numel() % 2:
                self.forward_s += time.perf_counter() - start
            else:
                self.backward_s += time.perf_counter() - start


def _worker(rank: int, port: int, args: argparse.Namespace, queue) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        info = DistInfo(rank=rank, world_size=WORLD)
        models = {}
        for sync_bn in (False, True):
            torch.manual_seed(0)
            model = timm.create_model("hrnet_w32", arch=SMALL_ARCH, head="pose", num_classes=17)
            model = model.to(memory_format=torch.channels_last).train()
            ddp = _wrap(model, info, sync_bn=sync_bn)  # as train does
            models[sync_bn] = (ddp, torch.optim.Adam(ddp.parameters(), lr=1e-3))
        layers = sum(isinstance(m, CPUSyncBatchNorm) for m in models[True][0].modules())
        h, w = args.input_size
        gen = torch.Generator().manual_seed(rank)
        x = torch.randn(args.batch_size, 3, h, w, generator=gen).contiguous(memory_format=torch.channels_last)
        target = torch.rand(args.batch_size, 17, h // 4, w // 4, generator=gen)

        def step(sync_bn: bool) -> None:
            ddp, opt = models[sync_bn]
            opt.zero_grad()
            torch.nn.functional.mse_loss(ddp(x), target).backward()
            opt.step()

        times: dict[bool, list[float]] = {False: [], True: []}
        reduce_calls, reduce_seconds = [], []
        timer = _CallTimer()
        dist.all_reduce = timer
        try:
            for sync_bn in (False, True):
                for _ in range(args.warmup):
                    step(sync_bn)
            for _ in range(args.rounds):
                for sync_bn in (False, True):
                    for _ in range(args.steps):
                        timer.calls, timer.forward_s, timer.backward_s = 0, 0.0, 0.0
                        dist.barrier()
                        start = time.perf_counter()
                        step(sync_bn)
                        times[sync_bn].append(time.perf_counter() - start)
                        if sync_bn:
                            reduce_calls.append(timer.calls)
                            reduce_seconds.append((timer.forward_s, timer.backward_s))
        finally:
            dist.all_reduce = timer.original
        # the floor: back-to-back all_reduces of one layer's statistics (2 x 128 channels + the count, float64)
        stats = torch.zeros(2 * 128 + 1, dtype=torch.float64)
        latency = []
        dist.barrier()
        for _ in range(args.latency_calls):
            start = time.perf_counter()
            dist.all_reduce(stats)
            latency.append(time.perf_counter() - start)
        queue.put(
            dict(
                rank=rank,
                times=times,
                layers=layers,
                calls=reduce_calls,
                reduce_s=reduce_seconds,
                latency=latency,
            )
        )
    finally:
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    mp.spawn(_worker, args=(port, args, queue), nprocs=WORLD, join=True)
    results = [queue.get() for _ in range(WORLD)]
    # a step takes as long as its slower rank (the next collective waits for it)
    steps = {
        sync: [max(r["times"][sync][i] for r in results) for i in range(len(results[0]["times"][sync]))]
        for sync in (False, True)
    }
    plain, synced = (statistics.median(steps[s]) * 1e3 for s in (False, True))
    r0 = next(r for r in results if r["rank"] == 0)
    h, w = args.input_size
    print(
        f"small trunk, {WORLD} gloo processes x 1 thread, batch {args.batch_size}/process, {h}x{w}, channels_last"
    )
    print(f"step without SyncBN: {plain:.1f} ms (median of {len(steps[False])})")
    print(f"step with SyncBN:    {synced:.1f} ms (x{synced / plain:.3f})")
    print(
        f"synchronised layers: {r0['layers']}; all_reduce calls per step: {statistics.median(r0['calls']):.0f}; "
        f"time in them per step (rank 0, median): "
        f"{statistics.median(f for f, _ in r0['reduce_s']) * 1e3:.1f} ms forward, "
        f"{statistics.median(b for _, b in r0['reduce_s']) * 1e3:.1f} ms backward"
    )
    print(f"one all_reduce alone, back to back: {statistics.median(r0['latency']) * 1e6:.0f} us (median)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
