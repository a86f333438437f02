"""Throughput benchmarks: this package's HRNet against timm's built-in HRNet, side by side in one process.

Every group of rows (one model, input size, batch size, precision and mode) builds its contenders once and times
them interleaved (A B C A B C ..., the starting contender rotating each round) after a warm-up, so slow drifts of
a shared machine hit all of them alike. Each row reports the median and inter-quartile range of img/s, the
per-batch latency p50/p90, the working memory of one iteration, multiply-adds (``torch.utils.flop_counter`` via
:mod:`hrnet_backbones.complexity`), achieved TFLOP/s, its share of the machine's convolution ceiling, and the speed
ratio to timm's built-in HRNet (median of the per-round ratios, so both sides of a ratio saw the same moment).

The package, by concern:

* :mod:`.spec`: what to measure (:class:`BenchSpec`) and the rows it produces (:class:`Row`, :class:`BenchResult`);
* :mod:`.contenders`: the registry of contenders (``timm``, ``eager``, ``fast``, ``compile:MODE``,
  ``fast+compile:MODE``; training ``timm``, ``eager``, ``eager+ckpt``), name -> builder; new contenders register
  there with :func:`register_contender`;
* :mod:`.timing`: the timer (CUDA events on a GPU, wall and process CPU time on the CPU), the working-memory probe
  and the convolution ceiling;
* :mod:`.runner`: :func:`run_benchmark`, which builds, checks and times every group;
* :mod:`.report` and :mod:`.plot`: the text table, summaries, and the JSON / CSV / PNG files;
* :mod:`.cli`: ``hrnet-backbones bench`` and ``python benchmarks/throughput.py``.
"""

from __future__ import annotations

from .cli import DEFAULT_OUT, ProgressPrinter, add_arguments, run_cli, spec_from_args
from .contenders import (
    CONTENDERS,
    BuildContext,
    Contender,
    ContenderType,
    TimmBaseline,
    build_contender,
    build_model,
    contender_names,
    contender_type,
    register_contender,
)
from .report import (
    checkpointing_summary,
    complexity_lines,
    format_table,
    result_paths,
    scaling_report,
    write_results,
)
from .runner import emulated_precisions, resolve_device, run_benchmark
from .spec import (
    BASELINE,
    INFER_IMPLS,
    PRECISIONS,
    TASK_SIZES,
    TRAIN_IMPLS,
    BenchResult,
    BenchSpec,
    Row,
    parse_size,
)
from .timing import Timer, conv_ceiling, peak_memory_mb, quantiles

__all__ = [
    "BASELINE",
    "CONTENDERS",
    "DEFAULT_OUT",
    "INFER_IMPLS",
    "PRECISIONS",
    "TASK_SIZES",
    "TRAIN_IMPLS",
    "BenchResult",
    "BenchSpec",
    "BuildContext",
    "Contender",
    "ContenderType",
    "ProgressPrinter",
    "Row",
    "Timer",
    "TimmBaseline",
    "add_arguments",
    "build_contender",
    "build_model",
    "checkpointing_summary",
    "complexity_lines",
    "contender_names",
    "contender_type",
    "conv_ceiling",
    "emulated_precisions",
    "format_table",
    "parse_size",
    "peak_memory_mb",
    "quantiles",
    "register_contender",
    "resolve_device",
    "result_paths",
    "run_benchmark",
    "run_cli",
    "scaling_report",
    "spec_from_args",
    "write_results",
]
