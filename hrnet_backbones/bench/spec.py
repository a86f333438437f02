"""What a benchmark run measures (:class:`BenchSpec`) and what it produces (:class:`Row`, :class:`BenchResult`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch

__all__ = [
    "BASELINE",
    "INFER_IMPLS",
    "PRECISIONS",
    "TASK_SIZES",
    "TRAIN_IMPLS",
    "BenchResult",
    "BenchSpec",
    "Row",
    "parse_size",
]

#: Standard input sizes (H, W) of the tasks HRNet is used for.
TASK_SIZES: dict[str, tuple[int, int]] = {
    "pose": (256, 192),
    "pose-large": (384, 288),
    "seg": (512, 1024),
    "det": (800, 1333),
}
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
#: The contenders a run times unless told otherwise (all registered ones: :mod:`.contenders`).
INFER_IMPLS = ("timm", "eager", "fast")
TRAIN_IMPLS = ("timm", "eager", "eager+ckpt")
#: The contender every ratio is taken against.
BASELINE = "timm"


def parse_size(spec: str) -> tuple[int, int]:
    """A task name from ``TASK_SIZES`` or ``HxW`` (e.g. ``256x192``) -> (H, W)."""
    if spec in TASK_SIZES:
        return TASK_SIZES[spec]
    parts = spec.lower().split("x")
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ValueError(f"bad input size {spec!r}: expected one of {sorted(TASK_SIZES)} or HxW such as 256x192")


@dataclass(frozen=True)
class BenchSpec:
    """What to measure: the cross product of models x sizes x batch sizes x precisions x modes, per contender.

    ``shapes`` ((H, W), batch) pairs replace the sizes x batch sizes product when given (a scaling sweep).
    ``emulated_bf16`` measures bf16 groups on a CPU without native bfloat16 too (skipped otherwise: emulated
    bfloat16 runs at a fraction of fp32 speed there, minutes per group).
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
    emulated_bf16: bool = False

    def __post_init__(self) -> None:
        from ..registry import model_names
        from .contenders import contender_type

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
            contender_type(impl, "infer")
        for impl in self.train_impls:
            contender_type(impl, "train")
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
    """The rows of a run, the machine it ran on, and the groups it skipped (with the reason)."""

    spec: BenchSpec
    rows: list[Row]
    environment: dict[str, Any]
    ceilings: dict[str, float] = field(default_factory=dict)
    complexity: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "spec": asdict(self.spec),
            "conv_ceiling_gflops": self.ceilings,
            "published_complexity": self.complexity,
            "skipped": self.skipped,
            "rows": [asdict(r) for r in self.rows],
        }
