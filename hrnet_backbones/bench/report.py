"""Reports of benchmark rows: the text table, the checkpointing and scaling summaries, the published-complexity
table, and the result files (JSON, CSV, PNG)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..cliutil import format_table as text_table
from ..fileio import atomic_write_bytes, refuse_existing
from .spec import BenchResult, Row

__all__ = [
    "checkpointing_summary",
    "complexity_lines",
    "format_table",
    "result_paths",
    "scaling_report",
    "write_results",
]

RESULT_EXTENSIONS = ("json", "csv", "png")


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


def result_paths(out_dir: str | os.PathLike, name: str = "throughput") -> list[Path]:
    """The files :func:`write_results` writes: ``NAME.json``, ``NAME.csv`` and ``NAME.png`` in ``out_dir``."""
    return [Path(out_dir) / f"{name}.{ext}" for ext in RESULT_EXTENSIONS]


def write_results(
    result: BenchResult, out_dir: str | os.PathLike, name: str = "throughput", force: bool = False
) -> list[Path]:
    """Write ``NAME.json``, ``NAME.csv`` and ``NAME.png`` into ``out_dir`` (atomically, with the umask's
    permissions; existing files need ``force``, and callers check that before the run with
    ``refuse_existing(result_paths(...), force)``). Returns the three paths.
    """
    from .plot import plot_throughput

    paths = result_paths(out_dir, name)
    refuse_existing(paths, force)
    atomic_write_bytes(paths[0], (json.dumps(result.to_json(), indent=2) + "\n").encode())
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(Row.__dataclass_fields__), lineterminator="\n")
    writer.writeheader()
    for r in result.rows:
        writer.writerow(asdict(r))
    atomic_write_bytes(paths[1], buf.getvalue().encode())
    atomic_write_bytes(paths[2], plot_throughput(result.rows, title=_plot_title(result)))
    return paths


def _plot_title(result: BenchResult) -> str:
    env = result.environment
    return f"{env['device_name']} ({env['device']}, {env['threads']} threads), torch {env['torch']}"
