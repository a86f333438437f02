"""Measuring primitives: the timer, the working-memory probe, the convolution ceiling and quantiles.

On CUDA the timer is a pair of CUDA events around each call (after a synchronisation); memory is
``torch.cuda.max_memory_allocated`` above the memory in use before the call. On the CPU the timer is
``time.perf_counter`` (plus process CPU time) and memory is the process's resident-set high-water mark (``VmHWM``,
reset through ``/proc/self/clear_refs``) above its resident set before the call (Linux only).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["Timer", "conv_ceiling", "peak_memory_mb", "quantiles"]


class Timer:
    """Seconds taken by ``fn()``: CUDA events around it on a GPU (after a sync), ``perf_counter`` on the CPU.

    On the CPU ``measure`` also returns the process CPU time of the call (all threads): on a machine shared with
    other jobs a descheduled call loses wall time but not CPU time, so CPU-time ratios are the steadier figure
    there (with several threads they include OpenMP's spin-waiting).
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def __call__(self, fn: Callable[[], Any]) -> float:
        return self.measure(fn)[0]

    def measure(self, fn: Callable[[], Any]) -> tuple[float, float | None]:
        """(wall seconds, CPU seconds or None on CUDA)."""
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3, None
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        return time.perf_counter() - t0, time.process_time() - c0


def _malloc_trim() -> None:
    """Give freed heap pages back to the OS (glibc), so the RSS high-water mark measures this call only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _status_kb(field_name: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def peak_memory_mb(fn: Callable[[], Any], device: torch.device) -> float | None:
    """Working memory of one ``fn()`` call in MiB: peak above what was in use before it (None if unmeasurable)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    try:
        _malloc_trim()
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        base = _status_kb("VmRSS")
        fn()
        return max(0, _status_kb("VmHWM") - base) / 1024
    except (OSError, KeyError):
        return None


def conv_ceiling(device: torch.device, dtype: torch.dtype = torch.float32, repeats: int = 5) -> float:
    """The machine's convolution ceiling in GFLOP/s: a large channels_last 3x3 convolution (8x256x56x56 -> 256).

    It is the best case for the convolution library (wide channels, large maps), so a model's achieved rate over
    this number is the share of the reachable peak it gets, not of the datasheet peak. The fastest of ``repeats``
    calls counts: a ceiling is what the machine can do, and on a shared machine slower calls only measure the
    neighbours.
    """
    x = torch.randn(8, 256, 56, 56, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    w = torch.randn(256, 256, 3, 3, device=device, dtype=dtype).contiguous(memory_format=torch.channels_last)
    flops = 2 * x.shape[0] * 56 * 56 * 256 * 256 * 9
    timer = Timer(device)
    with torch.inference_mode():
        timer(lambda: F.conv2d(x, w, padding=1))
        times = [timer(lambda: F.conv2d(x, w, padding=1)) for _ in range(repeats)]
    return flops / min(times) / 1e9


def quantiles(values: Sequence[float]) -> tuple[float, float, float, float]:
    """(p25, p50, p75, p90) by linear interpolation (``statistics.quantiles`` needs two or more values)."""
    if len(values) == 1:
        return (values[0],) * 4
    q = statistics.quantiles(values, n=20, method="inclusive")
    return q[4], statistics.median(values), q[14], q[17]
