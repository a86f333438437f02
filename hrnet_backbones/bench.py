"""Throughput benchmarks: this package's HRNet against timm's built-in HRNet, side by side in one process.

Every group of rows (one model, input size, batch size, precision and mode) builds its contenders once and times
them interleaved (A B C A B C ..., the starting contender rotating each round) after a warm-up, so slow drifts of
a shared machine hit all of them alike. Each row reports the median and inter-quartile range of img/s, the
per-batch latency p50/p90, the working memory of one iteration, multiply-adds (``torch.utils.flop_counter`` via
:mod:`hrnet_backbones.complexity`), achieved TFLOP/s, its share of the machine's convolution ceiling, and the speed
ratio to timm's built-in HRNet (median of the per-round ratios, so both sides of a ratio saw the same moment).

Contenders (``impls``):

* ``timm``: ``timm.models.hrnet.HighResolutionNetFeatures(feature_location="")`` built from ``cfg_cls`` with the
  same weights; for V2 / V2p its branches go through the same concatenation (and pyramid neck) as ours, so every
  contender returns the same tensors (checked before timing).
* ``eager``: the model as ``timm.create_model(name, features_only=True)`` gives it.
* ``fast``: :func:`hrnet_backbones.optimize_for_inference` (with ``dtype`` set for fp16 / bf16 rows).
* ``compile:MODE`` / ``fast+compile:MODE``: ``torch.compile`` of the eager / fast model (compile time reported).
* ``ort``, ``ort-int8``, ``openvino``, ``openvino-int8``: the model exported as ``hrnet-backbones export`` does,
  run by ONNX Runtime / OpenVINO (:mod:`hrnet_backbones.deploy.contenders`; CPU fp32 rows, export and
  quantization time in the setup time).
* training rows (``mode="train"``): ``timm``, ``eager`` and ``eager+ckpt`` (gradient checkpointing); one step is
  forward, a mean-of-outputs loss, backward and an SGD step.

On CUDA the timer is a pair of CUDA events around each call (after a synchronisation) and
``torch.backends.cudnn.benchmark`` is on; memory is ``torch.cuda.max_memory_allocated`` above the memory in use
before the call. On the CPU the timer is ``time.perf_counter`` and memory is the process's resident-set high-water
mark (``VmHWM``, reset through ``/proc/self/clear_refs``) above its resident set before the call (Linux only).
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .cliutil import format_table as text_table
from .fileio import atomic_write_bytes

__all__ = [
    "BenchSpec",
    "BenchResult",
    "Row",
    "TASK_SIZES",
    "conv_ceiling",
    "format_table",
    "parse_size",
    "run_benchmark",
    "scaling_report",
    "write_results",
]

#: Standard input sizes (H, W) of the tasks HRNet is used for.
TASK_SIZES: dict[str, tuple[int, int]] = {
    "pose": (256, 192),
    "pose-large": (384, 288),
    "seg": (512, 1024),
    "det": (800, 1333),
}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
INFER_IMPLS = ("timm", "eager", "fast")
#: exported-file contenders (hrnet_backbones.deploy.contenders; the deploy extra): not in the default set
DEPLOY_IMPLS = ("ort", "ort-int8", "openvino", "openvino-int8")
TRAIN_IMPLS = ("timm", "eager", "eager+ckpt")
BASELINE = "timm"


def parse_size(spec: str) -> tuple[int, int]:
    """A task name from ``TASK_SIZES`` or ``HxW`` (e.g. ``256x192``) -> (H, W)."""
    if spec in TASK_SIZES:
        return TASK_SIZES[spec]
    parts = spec.lower().split("x")
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ValueError(f"bad input size {spec!r}: expected one of {sorted(TASK_SIZES)} or HxW such as 256x192")


def _check_impl(impl: str, mode: str) -> None:
    allowed = TRAIN_IMPLS if mode == "train" else INFER_IMPLS + DEPLOY_IMPLS
    base = impl.split(":", 1)[0]
    if base in allowed or (mode == "infer" and base in ("compile", "fast+compile") and ":" in impl):
        return
    raise ValueError(
        f"unknown {mode} contender {impl!r}; expected one of {list(allowed)}"
        + (", 'compile:MODE' or 'fast+compile:MODE'" if mode == "infer" else "")
    )


@dataclass(frozen=True)
class BenchSpec:
    """What to measure: the cross product of models x sizes x batch sizes x precisions x modes, per contender.

    ``shapes`` ((H, W), batch) pairs replace the sizes x batch sizes product when given (a scaling sweep).
    """

    models: tuple[str, ...] = ("hrnet_w32",)
    sizes: tuple[tuple[int, int], ...] = (TASK_SIZES["pose"],)
    batch_sizes: tuple[int, ...] = (1, 8)
    precisions: tuple[str, ...] = ("fp32",)
    modes: tuple[str, ...] = ("infer",)
    impls: tuple[str, ...] = INFER_IMPLS
    train_impls: tuple[str, ...] = TRAIN_IMPLS
    channels_last: bool = False
    repeats: int = 10
    warmup: int = 2
    device: str = "cpu"
    arch: str | None = None
    ceiling: bool = True
    shapes: tuple[tuple[tuple[int, int], int], ...] | None = None

    def __post_init__(self) -> None:
        from .registry import model_names

        unknown = [m for m in self.models if m not in model_names()]
        if unknown:
            raise ValueError(f"unknown model(s) {unknown}; expected names from {model_names()}")
        for p in self.precisions:
            if p not in PRECISIONS:
                raise ValueError(f"unknown precision {p!r}; expected one of {list(PRECISIONS)}")
        for m in self.modes:
            if m not in ("infer", "train"):
                raise ValueError(f"unknown mode {m!r}; expected 'infer' or 'train'")
        for impl in self.impls:
            _check_impl(impl, "infer")
        for impl in self.train_impls:
            _check_impl(impl, "train")
        batches = [b for _, b in self.shapes] if self.shapes else self.batch_sizes
        if min(batches, default=0) < 1 or self.repeats < 1 or self.warmup < 0:
            raise ValueError(
                f"batch sizes and repeats must be >= 1 and warmup >= 0, got batch sizes {self.batch_sizes}, "
                f"repeats {self.repeats}, warmup {self.warmup}"
            )
        if self.arch not in (None, "tiny"):
            raise ValueError(f"unknown arch {self.arch!r}; expected None (the published widths) or 'tiny'")

    def groups(self) -> list[tuple[str, tuple[int, int], int, str, str]]:
        """(model, size, batch, precision, mode) for every group of rows, in run order."""
        shapes = self.shapes or [(s, b) for s in self.sizes for b in self.batch_sizes]
        return [
            (m, s, b, p, mode)
            for mode in self.modes
            for m in self.models
            for p in self.precisions
            for s, b in shapes
        ]


@dataclass
class Row:
    """One contender in one group. Times are per batch; ``ratio_vs_timm`` > 1 means faster than timm's.

    ``ratio_vs_timm`` is the median over rounds of timm's wall time / this contender's, ``ratio_p25`` /
    ``ratio_p75`` its inter-quartile range; ``cpu_ms_p50`` and ``cpu_ratio_vs_timm`` the same in process CPU time
    (CPU only).
    """

    model: str
    variant: str
    width: int
    input_size: str
    pixels: int
    batch: int
    precision: str
    mode: str
    impl: str
    channels_last: bool
    repeats: int
    status: str = "ok"
    img_s: float | None = None
    img_s_p25: float | None = None
    img_s_p75: float | None = None
    latency_ms_p50: float | None = None
    latency_ms_p90: float | None = None
    cv: float | None = None
    ratio_vs_timm: float | None = None
    ratio_p25: float | None = None
    ratio_p75: float | None = None
    cpu_ms_p50: float | None = None
    cpu_ratio_vs_timm: float | None = None
    peak_mem_mb: float | None = None
    gmacs: float | None = None
    tflops: float | None = None
    ceiling_share: float | None = None
    setup_s: float | None = None
    max_rel_diff: float | None = None


@dataclass
class BenchResult:
    spec: BenchSpec
    rows: list[Row]
    environment: dict[str, Any]
    ceilings: dict[str, float] = field(default_factory=dict)
    complexity: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "spec": asdict(self.spec),
            "conv_ceiling_gflops": self.ceilings,
            "published_complexity": self.complexity,
            "rows": [asdict(r) for r in self.rows],
        }


# ------------------------------------------------------------------------------------------------ measuring
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


# ------------------------------------------------------------------------------------------------- building
def _arch_kwargs(spec: BenchSpec) -> dict[str, Any]:
    if spec.arch == "tiny":
        from .config import tiny_config

        return {"arch": tiny_config()}
    return {}


def build_model(name: str, spec: BenchSpec) -> nn.Module:
    """The eager contender: ``timm.create_model(name, features_only=True)`` (tiny trunk with ``arch='tiny'``)."""
    import timm

    return timm.create_model(name, features_only=True, **_arch_kwargs(spec))


def _timm_cfg(arch) -> dict[str, Any]:
    """Our :class:`~hrnet_backbones.config.HRNetConfig` in the dict layout of ``timm.models.hrnet.cfg_cls``."""
    cfg: dict[str, Any] = {"stem_width": arch.stem_width}
    for name in ("stage1", "stage2", "stage3", "stage4"):
        s = getattr(arch, name)
        cfg[name] = dict(
            num_modules=s.num_modules,
            num_branches=s.num_branches,
            block_type=s.block,
            num_blocks=s.num_blocks,
            num_channels=s.num_channels,
            fuse_method=s.fuse_method,
        )
    return cfg


class TimmBaseline(nn.Module):
    """timm's built-in HRNet trunk, followed for V2 / V2p by the same representation code as ours.

    Returns what our ``features_only`` model returns: V1 the stem and the four branches, V2 the concatenation,
    V2p the pyramid levels.
    """

    def __init__(self, ours: nn.Module):
        super().__init__()
        from timm.models.hrnet import HighResolutionNetFeatures

        arch = ours.arch
        if arch.fusion_upsample != "nearest" or not arch.multi_scale_last:
            raise ValueError("timm's HRNet has nearest, multi-scale fusion only")
        self.representation = ours.representation
        self.align_corners = arch.align_corners
        out_indices = (0, 1, 2, 3, 4) if self.representation == "v1" else (1, 2, 3, 4)
        trunk = HighResolutionNetFeatures(
            _timm_cfg(arch), in_chans=ours.in_chans, feature_location="", out_indices=out_indices
        )
        own = trunk.state_dict()
        trunk.load_state_dict({k: v for k, v in ours.state_dict().items() if k in own}, strict=True)
        self.trunk = trunk
        self.neck = copy.deepcopy(ours.neck) if self.representation == "v2p" else None

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        from .representations import concat_branches

        feats = self.trunk(x)
        if self.representation == "v1":
            return feats
        concat = concat_branches(feats, self.align_corners)
        return [concat] if self.neck is None else self.neck(concat)


def _outputs(y: Any) -> list[torch.Tensor]:
    if isinstance(y, torch.Tensor):
        return [y]
    if isinstance(y, dict):
        return list(y.values())
    return list(y)


def _max_rel_diff(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> float:
    """max |a - b| / max |b| over the outputs (b: the eager model's)."""
    return max(
        ((x.float() - y.float()).abs().max() / y.float().abs().max().clamp_min(1e-12)).item()
        for x, y in zip(a, b)
    )


@dataclass
class _Contender:
    name: str
    step: Callable[[], Any]  # one timed iteration; inference steps return the outputs
    setup_s: float


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=PRECISIONS[precision])


def _infer_contender(
    impl: str, eager: nn.Module, x: torch.Tensor, precision: str, spec: BenchSpec, device: torch.device
) -> _Contender:
    from .fast import optimize_for_inference

    if impl in DEPLOY_IMPLS:
        from .deploy.contenders import deploy_contender

        step, setup_s = deploy_contender(impl, eager, x, precision)
        return _Contender(impl, step, setup_s)
    t0 = time.perf_counter()
    base, _, compile_mode = impl.partition(":")
    low = PRECISIONS[precision] if precision != "fp32" else None
    if base == BASELINE:
        model = TimmBaseline(eager).to(device).eval()
    elif base in ("fast", "fast+compile"):
        with warnings.catch_warnings():  # the suite measures bf16 on purpose, native or not
            warnings.filterwarnings("ignore", message=".*without native bfloat16")
            model = optimize_for_inference(eager, dtype=low)
    else:
        model = copy.deepcopy(eager)
    if spec.channels_last and base in (BASELINE, "eager", "compile"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if compile_mode:
        model = torch.compile(model, mode=None if compile_mode == "default" else compile_mode)
    uses_autocast = base not in ("fast", "fast+compile")

    def forward():
        with torch.inference_mode(), _autocast(device, precision if uses_autocast else "fp32"):
            return model(x)

    if compile_mode:
        # compile now, so the setup time includes it and warm-up measures steady state; on the CPU with Inductor's
        # weight freezing (constant-folded BatchNorm, pre-packed oneDNN weights), its recommended inference setting
        import torch._inductor.config as inductor_config

        with inductor_config.patch(freezing=device.type == "cpu"):
            forward()
    return _Contender(impl, forward, time.perf_counter() - t0)


def _train_contender(
    impl: str, eager: nn.Module, x: torch.Tensor, precision: str, spec: BenchSpec
) -> _Contender:
    t0 = time.perf_counter()
    model = TimmBaseline(eager) if impl == BASELINE else copy.deepcopy(eager)
    model = model.to(x.device).train()
    if impl == "eager+ckpt":
        model.set_grad_checkpointing(True)
    if spec.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-6, momentum=0.9)

    def step():
        opt.zero_grad(set_to_none=True)
        with _autocast(x.device, precision):
            loss = sum(o.float().mean() for o in _outputs(model(x)))
        loss.backward()
        opt.step()

    return _Contender(impl, step, time.perf_counter() - t0)


def _error_status(e: Exception) -> str:
    first = str(e).strip().splitlines()[0][:160] if str(e).strip() else ""
    return f"error: {type(e).__name__}: {first}"


def _quantiles(values: Sequence[float]) -> tuple[float, float, float, float]:
    """(p25, p50, p75, p90) by linear interpolation (``statistics.quantiles`` needs two or more values)."""
    if len(values) == 1:
        return (values[0],) * 4
    q = statistics.quantiles(values, n=20, method="inclusive")
    return q[4], statistics.median(values), q[14], q[17]


# ---------------------------------------------------------------------------------------------------- running
def _environment(device: torch.device) -> dict[str, Any]:
    import timm

    from . import __version__

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
        env["device_name"] = _cpu_name()
        env["load_average"] = os.getloadavg() if hasattr(os, "getloadavg") else None
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


def run_benchmark(
    spec: BenchSpec, progress: Callable[[str], None] | None = None, complexity: bool = True
) -> BenchResult:
    """Run every group of ``spec`` and return the rows (see the module docstring for what is measured).

    ``complexity`` adds the published-complexity check (params and multiply-adds of the papers' models).
    """
    from .complexity import measure, meta_model, published_complexity

    device = resolve_device(spec.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    say = progress or (lambda msg: None)
    result = BenchResult(spec, [], _environment(device))
    if complexity:
        result.complexity = [{**asdict(c), "matches": c.matches} for c in published_complexity()]
    if spec.ceiling:
        for p in spec.precisions:
            result.ceilings[p] = conv_ceiling(device, PRECISIONS[p])
            say(f"convolution ceiling ({device.type}, {p}): {result.ceilings[p]:.1f} GFLOP/s")

    macs: dict[tuple[str, tuple[int, int]], float] = {}
    groups = spec.groups()
    eager_models: dict[str, nn.Module] = {}
    for n, (name, size, batch, precision, mode) in enumerate(groups, start=1):
        if name not in eager_models:
            eager_models = {name: build_model(name, spec).to(device).eval()}
        eager = eager_models[name]
        if (name, size) not in macs:
            macs[name, size] = measure(meta_model(name, features_only=True, **_arch_kwargs(spec)), size).gmacs
        label = f"[{n}/{len(groups)}] {name} {size[0]}x{size[1]} batch {batch} {precision} {mode}"
        say(f"{label} ...")
        rows = _run_group(spec, eager, name, size, batch, precision, mode, device, macs[name, size])
        result.rows.extend(rows)
        say(
            f"{label}: "
            + ", ".join(
                f"{r.impl} {r.img_s:.1f} img/s" if r.img_s is not None else f"{r.impl} {r.status}"
                for r in rows
            )
        )
    if spec.ceiling:  # measured again at the end: the best of both is the machine's ceiling
        for p in spec.precisions:
            result.ceilings[p] = max(result.ceilings[p], conv_ceiling(device, PRECISIONS[p]))
        for row in result.rows:
            if row.tflops is not None:
                row.ceiling_share = row.tflops * 1e3 / result.ceilings[row.precision]
    return result


def _run_group(spec, eager, name, size, batch, precision, mode, device, gmacs) -> list[Row]:
    """Build the contenders of one group, check their outputs, time them interleaved and fill their rows."""
    width = int(name.rsplit("_w", 1)[1])
    torch.manual_seed(0)
    x = torch.randn(batch, eager.in_chans, *size, device=device)
    impls = spec.impls if mode == "infer" else spec.train_impls
    rows: dict[str, Row] = {}
    contenders: list[_Contender] = []
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
            channels_last=spec.channels_last or impl.startswith("fast"),
            repeats=spec.repeats,
            gmacs=gmacs,
        )
        rows[impl] = row
        try:
            if mode == "infer":
                c = _infer_contender(impl, eager, x, precision, spec, device)
            else:
                c = _train_contender(impl, eager, x, precision, spec)
            contenders.append(c)
            row.setup_s = c.setup_s
        except Exception as e:  # a contender that cannot be built for this case (e.g. torch.compile missing)
            row.status = _error_status(e)

    # a first call of each: inference outputs must equal the eager model's; a contender that fails is reported
    ref = None
    if mode == "infer":
        with torch.inference_mode():
            ref = _outputs(eager(x))
    for c in list(contenders):
        try:
            out = c.step()
            if ref is not None:
                rows[c.name].max_rel_diff = _max_rel_diff(_outputs(out), ref)
        except Exception as e:  # e.g. timm's HRNet on a size that is not a multiple of 32
            rows[c.name].status = _error_status(e)
            contenders.remove(c)

    timer = Timer(device)
    for _ in range(spec.warmup):
        for c in contenders:
            c.step()
    times: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu_times: dict[str, list[float]] = {c.name: [] for c in contenders}
    for r in range(spec.repeats):
        k = r % max(1, len(contenders))
        for c in contenders[k:] + contenders[:k]:
            wall, cpu = timer.measure(c.step)
            times[c.name].append(wall)
            if cpu is not None:
                cpu_times[c.name].append(cpu)
    for c in contenders:
        rows[c.name].peak_mem_mb = peak_memory_mb(c.step, device)

    flops_per_batch = 2 * gmacs * 1e9 * batch * (3 if mode == "train" else 1)
    base = times.get(BASELINE)
    for c in contenders:
        t = times[c.name]
        row = rows[c.name]
        p25, p50, p75, p90 = _quantiles(t)
        row.img_s, row.img_s_p25, row.img_s_p75 = batch / p50, batch / p75, batch / p25
        row.latency_ms_p50, row.latency_ms_p90 = p50 * 1e3, p90 * 1e3
        row.cv = statistics.pstdev(t) / statistics.fmean(t)
        row.tflops = flops_per_batch / p50 / 1e12
        if base is not None:
            rp25, rp50, rp75, _ = _quantiles([b / a for a, b in zip(t, base)])
            row.ratio_vs_timm, row.ratio_p25, row.ratio_p75 = rp50, rp25, rp75
        cpu = cpu_times[c.name]
        if cpu:
            row.cpu_ms_p50 = statistics.median(cpu) * 1e3
            if cpu_times.get(BASELINE):
                row.cpu_ratio_vs_timm = statistics.median(
                    b / max(a, 1e-9) for a, b in zip(cpu, cpu_times[BASELINE])
                )
    return list(rows.values())


# ---------------------------------------------------------------------------------------------------- reports
def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def format_table(rows: Iterable[Row]) -> str:
    """The rows as an aligned text table (img/s with its inter-quartile range, ratio to timm with its IQR); rows
    that failed are numbered and their errors listed below the table."""

    headers = [
        "model",
        "input",
        "batch",
        "prec",
        "mode",
        "impl",
        "img/s",
        "IQR",
        "p50 ms",
        "p90 ms",
        "mem MB",
        "GMACs",
        "TFLOP/s",
        "ceil %",
        "x timm",
        "ratio IQR",
        "CPU ms",
        "x timm CPU",
    ]
    table, notes = [], []
    for r in rows:
        if r.status != "ok":
            notes.append(f"[{len(notes) + 1}] {r.model} {r.input_size} batch {r.batch} {r.impl}: {r.status}")
            table.append(
                [r.model, r.input_size, r.batch, r.precision, r.mode, r.impl, f"failed [{len(notes)}]"]
            )
            table[-1] += ["-"] * (len(headers) - len(table[-1]))
            continue
        table.append(
            [
                r.model,
                r.input_size,
                r.batch,
                r.precision,
                r.mode,
                r.impl,
                _fmt(r.img_s, ".2f"),
                f"{r.img_s_p25:.2f}-{r.img_s_p75:.2f}",
                _fmt(r.latency_ms_p50),
                _fmt(r.latency_ms_p90),
                _fmt(r.peak_mem_mb, ".0f"),
                _fmt(r.gmacs, ".2f"),
                _fmt(r.tflops, ".3f"),
                _fmt(None if r.ceiling_share is None else 100 * r.ceiling_share, ".0f"),
                _fmt(r.ratio_vs_timm, ".2f"),
                "-" if r.ratio_p25 is None else f"{r.ratio_p25:.2f}-{r.ratio_p75:.2f}",
                _fmt(r.cpu_ms_p50),
                _fmt(r.cpu_ratio_vs_timm, ".2f"),
            ]
        )
    return "\n".join([text_table(headers, table), *notes])


def checkpointing_summary(rows: Iterable[Row]) -> list[str]:
    """One line per training group: gradient checkpointing's memory saving and time cost against ``eager``."""
    lines = []
    by_group: dict[tuple, dict[str, Row]] = {}
    for r in rows:
        if r.mode == "train" and r.status == "ok":
            by_group.setdefault((r.model, r.input_size, r.batch, r.precision), {})[r.impl] = r
    for (model, size, batch, precision), g in by_group.items():
        if "eager" in g and "eager+ckpt" in g:
            a, b = g["eager"], g["eager+ckpt"]
            mem = (
                f"memory {a.peak_mem_mb:.0f} -> {b.peak_mem_mb:.0f} MB ({100 * (b.peak_mem_mb / a.peak_mem_mb - 1):+.0f}%)"
                if a.peak_mem_mb and b.peak_mem_mb is not None
                else "memory not measurable here"
            )
            lines.append(
                f"gradient checkpointing, {model} {size} batch {batch} {precision}: {mem}, "
                f"time per step x{a.img_s / b.img_s:.2f}"
            )
    return lines


def scaling_report(rows: Iterable[Row]) -> list[str]:
    """How time and memory grow with input pixels (at fixed batch) and batch size (at fixed input).

    For each series a least-squares exponent k of ``time ~ pixels^k`` (``batch^k``) is given; 1.0 is linear. Sizes
    whose time per pixel (per image) is more than 15% above the largest size's are named: there a fixed cost
    (Python and kernel launch overhead, low-resolution branches too small to fill the cores) is not amortised.
    """
    lines: list[str] = []
    ok = [r for r in rows if r.status == "ok" and r.img_s]
    series: dict[tuple, list[Row]] = {}
    for r in ok:
        series.setdefault((r.model, r.impl, r.precision, r.mode), []).append(r)
    for (model, impl, precision, mode), rs in series.items():
        for axis, key, fixed in (("pixels", "pixels", "batch"), ("batch size", "batch", "pixels")):
            groups: dict[Any, list[Row]] = {}
            for r in rs:
                groups.setdefault(getattr(r, fixed), []).append(r)
            for fixed_value, g in groups.items():
                g = sorted(g, key=lambda r: getattr(r, key))
                if len({getattr(r, key) for r in g}) < 2:
                    continue
                xs = [getattr(r, key) for r in g]
                t = [r.batch / r.img_s for r in g]
                k_time = _loglog_slope(xs, t)
                mems = [r.peak_mem_mb for r in g]
                k_mem = _loglog_slope(xs, mems) if all(m and m > 0 for m in mems) else None
                where = f"at batch {fixed_value}" if fixed == "batch" else f"at {g[0].input_size}"
                line = (
                    f"{model} {impl} {precision} {mode} {where}: time ~ {axis}^{k_time:.2f}"
                    + (f", memory ~ {axis}^{k_mem:.2f}" if k_mem is not None else "")
                    + f" ({getattr(g[0], key)} -> {getattr(g[-1], key)})"
                )
                unit = [ti / xi for ti, xi in zip(t, xs)]
                slow = [
                    f"{r.input_size if key == 'pixels' else f'batch {r.batch}'} ({u / unit[-1]:.2f}x)"
                    for r, u in zip(g[:-1], unit[:-1])
                    if u > 1.15 * unit[-1]
                ]
                if slow:
                    line += "; per-unit time above the largest: " + ", ".join(slow)
                lines.append(line)
    return lines


def _loglog_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    lx = [math.log(x) for x in xs]
    ly = [math.log(y) for y in ys]
    mx, my = statistics.fmean(lx), statistics.fmean(ly)
    den = sum((a - mx) ** 2 for a in lx)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / den


def complexity_lines(complexity: list[dict[str, Any]]) -> list[str]:

    rows = [
        [
            c["name"],
            c["input_size"],
            f"{c['params_m']:.1f}",
            f"{c['published_params_m']:.1f}",
            f"{c['paper_gflops']:.1f}",
            f"{c['published_gflops']:.1f}",
            "yes" if c["matches"] else "NO",
        ]
        for c in complexity
    ]
    return text_table(
        ["published model", "input", "params M", "paper", "GFLOPs*", "paper", "match"], rows
    ).splitlines()


# ---------------------------------------------------------------------------------------------------- files
def write_results(
    result: BenchResult, out_dir: str | os.PathLike, name: str = "throughput", force: bool = False
):
    """Write ``NAME.json``, ``NAME.csv`` and ``NAME.png`` into ``out_dir`` (atomically; existing files need ``force``).

    Returns the three paths.
    """
    from .plot import plot_throughput

    out = Path(out_dir)
    paths = [out / f"{name}.{ext}" for ext in ("json", "csv", "png")]
    existing = [str(p) for p in paths if p.exists()]
    if existing and not force:
        raise FileExistsError(
            f"{', '.join(existing)} already exist; pass --force to overwrite or choose --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(paths[0], (json.dumps(result.to_json(), indent=2) + "\n").encode())
    buf = io.StringIO()
    names = list(Row.__dataclass_fields__)
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for r in result.rows:
        writer.writerow(asdict(r))
    atomic_write_bytes(paths[1], buf.getvalue().encode())
    atomic_write_bytes(paths[2], plot_throughput(result.rows, title=_plot_title(result)))
    return paths


def _plot_title(result: BenchResult) -> str:
    env = result.environment
    return f"{env['device_name']} ({env['device']}, {env['threads']} threads), torch {env['torch']}"


# ------------------------------------------------------------------------------------------------------ CLI
def add_arguments(p) -> None:
    """Options of ``hrnet-backbones bench`` (also ``python benchmarks/throughput.py``)."""
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
        help="inference contenders: timm, eager, fast, compile:MODE, fast+compile:MODE, and with the deploy extra "
        "ort, ort-int8, openvino, openvino-int8 (exported files; CPU, fp32 rows) (default: timm eager fast)",
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
        help="training contenders: timm, eager, eager+ckpt (gradient checkpointing) (default: all three)",
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
        "--out", default="bench-results", help="folder for NAME.json/.csv/.png (default: bench-results)"
    )
    p.add_argument("--name", default="throughput", help="file name stem of the results (default: throughput)")
    p.add_argument("--no-files", action="store_true", help="print only; write no files")
    p.add_argument("--force", action="store_true", help="overwrite existing result files")


def spec_from_args(args) -> BenchSpec:
    from .registry import model_names

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
    )


def run_cli(args) -> int:
    """``hrnet-backbones bench``: run, print the table and summaries, write the files."""
    spec = spec_from_args(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if not args.no_files and not args.force:
        existing = [
            str(p)
            for p in (Path(args.out) / f"{args.name}.{e}" for e in ("json", "csv", "png"))
            if p.exists()
        ]
        if existing:
            raise FileExistsError(
                f"{', '.join(existing)} already exist; pass --force to overwrite or choose --out"
            )

    def progress(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    result = run_benchmark(spec, progress=progress, complexity=not args.no_complexity)
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
