"""Running a benchmark: every group of a :class:`~.spec.BenchSpec`, its contenders built, checked and timed.

Every group of rows (one model, input size, batch size, precision and mode) builds its contenders once and times
them interleaved (A B C A B C ..., the starting contender rotating each round) after a warm-up, so slow drifts of
a shared machine hit all of them alike. Inference contenders must return the eager model's outputs (checked before
timing; the largest relative difference is reported). A contender that cannot be built or run for a group gets a
row whose ``status`` says why, instead of ending the run.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .contenders import (
    BuildContext,
    Contender,
    arch_kwargs,
    build_contender,
    build_model,
    contender_type,
    outputs,
)
from .spec import BASELINE, PRECISIONS, BenchResult, BenchSpec, Row
from .timing import Timer, conv_ceiling, peak_memory_mb, quantiles

__all__ = ["emulated_precisions", "resolve_device", "run_benchmark"]

Say = Callable[[str], None]


def _environment(device: torch.device) -> dict[str, Any]:
    import timm

    from .. import __version__

    env = {
        "hrnet_backbones": __version__,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": device.type,
        "threads": torch.get_num_threads(),
        "command": " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["cudnn_benchmark"] = torch.backends.cudnn.benchmark
    else:
        from ..fast import cpu_bf16_path, native_bf16_cpu

        env["device_name"] = _cpu_name()
        env["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
        env["native_bf16"] = native_bf16_cpu()
        env["fast_bf16_path"] = cpu_bf16_path()
    return env


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` (or ``cuda:N``) or ``auto`` (CUDA when available)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "--device cuda was asked for but torch.cuda.is_available() is False; use --device cpu"
        )
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {name!r}; expected cpu, cuda or auto")
    return device


def emulated_precisions(spec: BenchSpec, device: torch.device) -> list[str]:
    """The precisions of ``spec`` that ``device`` only emulates: bf16 on a CPU without native bfloat16 (no
    AVX512-BF16 or AMX, or ``HRNET_BACKBONES_CPU_BF16=0``), where it runs at a fraction of fp32 speed."""
    from ..fast import native_bf16_cpu

    if device.type == "cpu" and "bf16" in spec.precisions and not native_bf16_cpu():
        return ["bf16"]
    return []


def run_benchmark(
    spec: BenchSpec,
    progress: Say | None = None,
    complexity: bool = True,
    step_progress: Say | None = None,
) -> BenchResult:
    """Run every group of ``spec`` and return the rows (see :mod:`hrnet_backbones.bench` for what is measured).

    ``progress`` gets a line before and after each group (and notes said before any work); ``step_progress`` a
    line before each step inside a group: building and checking each contender, each warm-up and timed round of
    each contender, the memory probe. ``complexity`` adds the published-complexity check (params and
    multiply-adds of the papers' models).

    bf16 groups on a CPU without native bfloat16 are skipped (and said so first) unless ``spec.emulated_bf16``;
    a spec with nothing left to run is refused before any work.
    """
    from ..complexity import measure, meta_model, published_complexity

    device = resolve_device(spec.device)
    say = progress or (lambda msg: None)
    groups = spec.groups()
    skipped: list[str] = []
    emulated = emulated_precisions(spec, device)
    if emulated and spec.emulated_bf16:
        say(
            "bf16 on a CPU without native bfloat16 (no AVX512-BF16 or AMX): emulated at a fraction of fp32 speed, "
            "so each bf16 group can take minutes"
        )
    elif emulated:
        skipped = [_group_label(g) for g in groups if g[3] in emulated]
        groups = [g for g in groups if g[3] not in emulated]
        if not groups:
            raise ValueError(
                "every group is bf16 and this CPU has no native bfloat16 (no AVX512-BF16 or AMX): emulated, it "
                "runs at a fraction of fp32 speed; pass --emulated-bf16 to measure it anyway, or choose --precision fp32"
            )
        say(
            f"skipping {len(skipped)} bf16 group(s): this CPU has no native bfloat16 (no AVX512-BF16 or AMX), and "
            "emulated bf16 takes minutes per group; pass --emulated-bf16 to measure them anyway"
        )
    precisions = [p for p in spec.precisions if spec.emulated_bf16 or p not in emulated]

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    result = BenchResult(spec, [], _environment(device), skipped=skipped)
    if complexity:
        result.complexity = [{**asdict(c), "matches": c.matches} for c in published_complexity()]
    if spec.ceiling:
        for p in precisions:
            result.ceilings[p] = conv_ceiling(device, PRECISIONS[p])
            say(f"convolution ceiling ({device.type}, {p}): {result.ceilings[p]:.1f} GFLOP/s")

    macs: dict[tuple[str, tuple[int, int]], float] = {}
    eager_models: dict[str, nn.Module] = {}
    for n, group in enumerate(groups, start=1):
        name, size, batch, precision, mode = group
        if name not in eager_models:
            eager_models = {name: build_model(name, spec).to(device).eval()}
        eager = eager_models[name]
        if (name, size) not in macs:
            macs[name, size] = measure(meta_model(name, features_only=True, **arch_kwargs(spec)), size).gmacs
        label = f"[{n}/{len(groups)}] {_group_label(group)}"
        say(f"{label} ...")
        step_say = (lambda msg, label=label: step_progress(f"  {label}: {msg}")) if step_progress else None
        rows = _run_group(spec, eager, group, device, macs[name, size], step_say)
        result.rows.extend(rows)
        say(
            f"{label}: "
            + ", ".join(
                f"{r.impl} {r.img_s:.1f} img/s" if r.img_s is not None else f"{r.impl} {r.status}"
                for r in rows
            )
        )
    if spec.ceiling:  # measured again at the end: the best of both is the machine's ceiling
        for p in precisions:
            result.ceilings[p] = max(result.ceilings[p], conv_ceiling(device, PRECISIONS[p]))
        for row in result.rows:
            if row.tflops is not None:
                row.ceiling_share = row.tflops * 1e3 / result.ceilings[row.precision]
    return result


def _group_label(group: tuple[str, tuple[int, int], int, str, str]) -> str:
    name, size, batch, precision, mode = group
    return f"{name} {size[0]}x{size[1]} batch {batch} {precision} {mode}"


def _error_status(e: Exception) -> str:
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
    return f"error: {type(e).__name__}: {first}"


def _max_rel_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """max |a - b| / max |b| over the outputs (b: the eager model's)."""
    return max(
        ((x.float() - y.float()).abs().max() / y.float().abs().max().clamp_min(1e-12)).item()
        for x, y in zip(a, b)
    )


def _run_group(
    spec: BenchSpec,
    eager: nn.Module,
    group: tuple[str, tuple[int, int], int, str, str],
    device: torch.device,
    gmacs: float,
    step_say: Say | None = None,
) -> list[Row]:
    """Build the contenders of one group, check their outputs, time them interleaved and fill their rows."""
    name, size, batch, precision, mode = group
    say = step_say or (lambda msg: None)
    width = int(name.rsplit("_w", 1)[1])
    torch.manual_seed(0)
    x = torch.randn(batch, eager.in_chans, *size, device=device)
    impls = spec.impls if mode == "infer" else spec.train_impls
    rows: dict[str, Row] = {}
    contenders: list[Contender] = []
    for impl in impls:
        row = Row(
            model=name,
            variant=eager.representation.upper(),
            width=width if spec.arch is None else eager.arch.width,
            input_size=f"{size[0]}x{size[1]}",
            pixels=size[0] * size[1],
            batch=batch,
            precision=precision,
            mode=mode,
            impl=impl,
            channels_last=spec.channels_last or contender_type(impl, mode).channels_last,
            repeats=spec.repeats,
            gmacs=gmacs,
        )
        rows[impl] = row
        say(f"building {impl}")
        try:
            option = impl.partition(":")[2]
            c = build_contender(impl, mode, BuildContext(eager, x, precision, spec, device, option))
            contenders.append(c)
            row.setup_s, row.channels_last = c.setup_s, c.channels_last
        except Exception as e:  # a contender that cannot be built for this case (e.g. torch.compile missing)
            row.status = _error_status(e)

    # a first call of each: inference outputs must equal the eager model's; a contender that fails is reported
    ref = None
    if mode == "infer":
        with torch.inference_mode():
            ref = outputs(eager(x))
    for c in list(contenders):
        say(
            f"first call of {c.name}"
            + (" (outputs checked against the eager model)" if ref is not None else "")
        )
        try:
            out = c.step()
            if ref is not None:
                rows[c.name].max_rel_diff = _max_rel_diff(outputs(out), ref)
        except Exception as e:  # e.g. timm's HRNet on a size that is not a multiple of 32
            rows[c.name].status = _error_status(e)
            contenders.remove(c)

    timer = Timer(device)
    for w in range(spec.warmup):
        for c in contenders:
            say(f"warm-up {w + 1}/{spec.warmup} {c.name}")
            c.step()
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu_times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(spec.repeats):
        k = r % max(1, len(contenders))
        for c in contenders[k:] + contenders[:k]:
            say(f"round {r + 1}/{spec.repeats} {c.name}")
            wall, cpu = timer.measure(c.step)
            times[c.name].append(wall)
            if cpu is not None:
                cpu_times[c.name].append(cpu)
    for c in contenders:
        say(f"memory of {c.name}")
        rows[c.name].peak_mem_mb = peak_memory_mb(c.step, device)

    flops_per_batch = 2 * gmacs * 1e9 * batch * (3 if mode == "train" else 1)
    base = times.get(BASELINE)
    for c in contenders:
        t = times[c.name]
        row = rows[c.name]
        p25, p50, p75, p90 = quantiles(t)
        row.img_s, row.img_s_p25, row.img_s_p75 = batch / p50, batch / p75, batch / p25
        row.latency_ms_p50, row.latency_ms_p90 = p50 * 1e3, p90 * 1e3
        row.cv = statistics.pstdev(t) / statistics.fmean(t)
        row.tflops = flops_per_batch / p50 / 1e12
        if base is not None:
            rp25, rp50, rp75, _ = quantiles([b / a for a, b in zip(t, base)])
            row.ratio_vs_timm, row.ratio_p25, row.ratio_p75 = rp50, rp25, rp75
        cpu = cpu_times[c.name]
        if cpu:
            row.cpu_ms_p50 = statistics.median(cpu) * 1e3
            if cpu_times.get(BASELINE):
                row.cpu_ratio_vs_timm = statistics.median(
                    b / max(a, 1e-9) for a, b in zip(cpu, cpu_times[BASELINE])
                )
    return list(rows.values())
