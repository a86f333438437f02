"""The benchmark suite runs end to end (tiny trunk, one repeat) and writes valid JSON, CSV and PNG."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat

import pytest
import torch
from PIL import Image

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones import fast as fast_module
from hrnet_backbones.bench import (
    CONTENDERS,
    BenchSpec,
    ProgressPrinter,
    Row,
    Timer,
    checkpointing_summary,
    contender_type,
    parse_size,
    peak_memory_mb,
    register_contender,
    run_benchmark,
    scaling_report,
    write_results,
)
from hrnet_backbones.bench import runner as bench_runner
from hrnet_backbones.cli import main


def _tiny_spec(**changes) -> BenchSpec:
    base = dict(
        models=("hrnetv2p_w32",),  # V2p: timm's trunk plus our concat and neck (the CLI test runs V1)
        sizes=((64, 64),),
        batch_sizes=(1,),
        modes=("infer", "train"),
        repeats=1,
        warmup=0,
        device="cpu",
        arch="tiny",
        ceiling=False,
    )
    return BenchSpec(**{**base, **changes})


@pytest.fixture(scope="module")
def tiny_result():
    return run_benchmark(_tiny_spec(), complexity=False)


def test_every_contender_of_every_group_gets_a_row(tiny_result):
    got = {(r.model, r.mode, r.impl) for r in tiny_result.rows}
    want = {
        (m, mode, impl)
        for m in ("hrnetv2p_w32",)
        for mode, impls in (("infer", ("timm", "eager", "fast")), ("train", ("timm", "eager", "eager+ckpt")))
        for impl in impls
    }
    assert got == want
    assert all(
        r.status == "ok" and r.img_s > 0 and r.latency_ms_p90 >= r.latency_ms_p50 for r in tiny_result.rows
    )


def test_inference_contenders_return_the_eager_outputs(tiny_result):
    infer = [r for r in tiny_result.rows if r.mode == "infer"]
    assert all(r.max_rel_diff is not None and r.max_rel_diff < 1e-4 for r in infer)


def test_ratio_is_against_timm_in_the_same_rounds(tiny_result):
    timm_rows = [r for r in tiny_result.rows if r.impl == "timm"]
    assert all(r.ratio_vs_timm == 1.0 for r in timm_rows)
    assert all(r.ratio_vs_timm > 0 and r.cpu_ratio_vs_timm > 0 for r in tiny_result.rows)


def test_multiply_adds_and_achieved_rate_are_reported(tiny_result):
    for r in tiny_result.rows:
        assert r.gmacs > 0
        flops = 2 * r.gmacs * 1e9 * r.batch * (3 if r.mode == "train" else 1)
        assert r.tflops == pytest.approx(flops / (r.batch / r.img_s) / 1e12)


def test_writes_json_csv_and_png(tiny_result, tmp_path):
    paths = write_results(tiny_result, tmp_path)
    assert [p.name for p in paths] == ["throughput.json", "throughput.csv", "throughput.png"]
    data = json.loads(paths[0].read_text())
    assert len(data["rows"]) == len(tiny_result.rows)
    assert {"torch", "timm", "device_name", "threads"} <= set(data["environment"])
    with paths[1].open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(tiny_result.rows)
    assert set(rows[0]) == set(Row.__dataclass_fields__)
    with Image.open(paths[2]) as img:
        assert img.format == "PNG" and img.width > 600


def test_existing_results_are_not_overwritten_without_force(tiny_result, tmp_path):
    write_results(tiny_result, tmp_path)
    with pytest.raises(FileExistsError, match="--force"):
        write_results(tiny_result, tmp_path)
    write_results(tiny_result, tmp_path, force=True)


def test_timm_failing_on_a_size_is_a_row_status_not_a_crash():
    result = run_benchmark(
        _tiny_spec(models=("hrnet_w32",), sizes=((67, 45),), modes=("infer",)), complexity=False
    )
    by_impl = {r.impl: r for r in result.rows}
    assert by_impl["timm"].status.startswith("error: RuntimeError")
    assert by_impl["fast"].status == "ok" and by_impl["fast"].ratio_vs_timm is None


def test_cli_bench_runs_and_writes_files(tmp_path, capsys):
    out = tmp_path / "results"
    argv = [
        "bench",
        "--arch",
        "tiny",
        "--sizes",
        "64x64",
        "--batch-sizes",
        "1",
        "--repeats",
        "1",
        "--warmup",
        "0",
    ]
    assert main([*argv, "--device", "cpu", "--no-complexity", "--scaling", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "x timm" in printed and "convolution ceiling" in printed
    assert sorted(p.name for p in out.iterdir()) == ["throughput.csv", "throughput.json", "throughput.png"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "64xq"], "bad input size"),
        (["--models", "resnet50"], "unknown model"),
        (["--impls", "turbo"], "unknown infer contender"),
        (["--repeats", "0"], "repeats must be >= 1"),
        (["--threads", "0"], "--threads must be >= 1"),
    ],
)
def test_cli_bad_options_exit_2_with_one_line(args, message, tmp_path, capsys):
    assert main(["bench", "--arch", "tiny", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err


def test_cli_refuses_to_overwrite_results(tmp_path, capsys):
    (tmp_path / "throughput.json").write_text("{}")
    assert main(["bench", "--arch", "tiny", "--out", str(tmp_path)]) == 2
    assert "--force" in capsys.readouterr().err


def test_parse_size_accepts_task_names_and_hxw():
    assert parse_size("pose") == (256, 192)
    assert parse_size("det") == (800, 1333)
    assert parse_size("384x288") == (384, 288)


def _row(pixels: int, batch: int, seconds: float, mem: float, impl: str = "fast", mode: str = "infer") -> Row:
    side = int(pixels**0.5)
    return Row(
        "hrnet_w32", "V1", 32, f"{side}x{side}", pixels, batch, "fp32", mode, impl, True, 1,
        img_s=batch / seconds, peak_mem_mb=mem,
    )  # fmt: skip


def test_scaling_report_gives_the_exponent_and_names_sizes_that_are_not_linear():
    linear = [_row(p, 1, 1e-6 * p, 1e-3 * p) for p in (10_000, 40_000, 160_000)]
    overhead = _row(2_500, 1, 1e-6 * 2_500 + 0.01, 2.5)  # 10 ms of fixed cost: 5x the per-pixel time at 50x50
    (line,) = scaling_report([*linear, overhead])
    time_exp = float(re.search(r"time ~ pixels\^([\d.]+)", line).group(1))
    assert time_exp < 0.9  # sub-linear overall because of the fixed cost
    assert "memory ~ pixels^1.00" in line
    assert "per-unit time above the largest: 50x50 (5.00x)" in line


def test_scaling_report_linear_in_batch():
    rows = [_row(10_000, b, 0.1 * b, 10.0 * b) for b in (1, 2, 4, 8)]
    (line,) = scaling_report(rows)
    assert "time ~ batch size^1.00" in line and "memory ~ batch size^1.00" in line
    assert "above the largest" not in line


def test_checkpointing_summary_reports_memory_saving_and_time_cost():
    eager = _row(10_000, 8, 1.0, 400.0, impl="eager", mode="train")
    ckpt = _row(10_000, 8, 1.3, 100.0, impl="eager+ckpt", mode="train")
    (line,) = checkpointing_summary([eager, ckpt])
    assert "400 -> 100 MB (-75%)" in line and "x1.30" in line


def test_cpu_timer_and_memory_probe_measure_the_call():
    wall, cpu = Timer(torch.device("cpu")).measure(lambda: sum(range(100_000)))
    assert wall > 0 and cpu is not None and cpu >= 0
    mem = peak_memory_mb(lambda: torch.ones(64, 2**20 // 4), torch.device("cpu"))  # 64 MiB, touched
    assert mem is None or mem >= 48


# ------------------------------------------------------------------------------------- progress and bf16 skipping
def test_progress_names_every_contender_in_every_round():
    steps: list[str] = []
    run_benchmark(
        _tiny_spec(modes=("infer",), repeats=2, warmup=1), complexity=False, step_progress=steps.append
    )
    for impl in ("timm", "eager", "fast"):
        for what in ("building", "first call of", "warm-up 1/1", "round 1/2", "round 2/2", "memory of"):
            assert any(f"{what} {impl}" in s for s in steps), (what, impl, steps)
    assert all(s.startswith("  [1/1] hrnetv2p_w32 64x64 batch 1 fp32 infer: ") for s in steps)


def test_progress_printer_prints_group_lines_and_throttles_steps():
    out, now = io.StringIO(), [0.0]
    printer = ProgressPrinter(interval=5.0, stream=out, clock=lambda: now[0])
    printer.group("[1/1] group ...")
    for t, msg in ((1.0, "round 1/3 timm"), (3.0, "round 1/3 fast"), (9.0, "round 2/3 timm")):
        now[0] = t
        printer.step(msg)
    assert out.getvalue().splitlines() == ["[1/1] group ...", "round 2/3 timm (previous step 6.0 s)"]


def test_cli_progress_interval_zero_prints_every_step(tmp_path, capsys):
    argv = ["bench", "--arch", "tiny", "--sizes", "64x64", "--batch-sizes", "1", "--repeats", "1"]
    argv += ["--warmup", "0", "--device", "cpu", "--no-ceiling", "--no-complexity", "--no-files"]
    assert main([*argv, "--impls", "fast", "--progress-interval", "0"]) == 0
    err = capsys.readouterr().err
    assert "round 1/1 fast (previous step" in err


def test_bf16_groups_are_skipped_and_said_first_on_a_cpu_without_native_bf16(monkeypatch):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", "0")
    said: list[str] = []
    result = run_benchmark(
        _tiny_spec(modes=("infer",), impls=("fast",), precisions=("fp32", "bf16")),
        progress=said.append,
        complexity=False,
    )
    assert said[0].startswith("skipping 1 bf16 group(s): this CPU has no native bfloat16")
    assert "--emulated-bf16" in said[0]
    assert {r.precision for r in result.rows} == {"fp32"}
    assert result.skipped == ["hrnetv2p_w32 64x64 batch 1 bf16 infer"]
    assert result.environment["native_bf16"] is False


def test_emulated_bf16_measures_them_after_saying_so(monkeypatch):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", "0")
    monkeypatch.setattr(fast_module, "ONEDNN_BF16", False)  # read from the variable at import
    said: list[str] = []
    result = run_benchmark(
        _tiny_spec(modes=("infer",), impls=("fast",), precisions=("bf16",), emulated_bf16=True),
        progress=said.append,
        complexity=False,
    )
    assert said[0].startswith("bf16 on a CPU without native bfloat16") and "minutes" in said[0]
    assert [(r.precision, r.status) for r in result.rows] == [("bf16", "ok")]
    assert result.environment["fast_bf16_path"] == "fp32-compute"


def test_cli_refuses_a_bf16_only_run_on_a_cpu_without_native_bf16_before_any_work(
    monkeypatch, tmp_path, capsys
):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", "0")
    for work in ("conv_ceiling", "build_model"):
        monkeypatch.setattr(bench_runner, work, lambda *a, **k: pytest.fail("the benchmark ran"))
    argv = ["bench", "--arch", "tiny", "--precision", "bf16", "--device", "cpu", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--emulated-bf16" in err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------- the registry
def test_a_registered_contender_is_timed_like_the_built_in_ones():
    @register_contender("eager-twice", "infer", help="test only")
    def _build(ctx):
        model = ctx.eager

        def step():
            with torch.inference_mode():
                model(ctx.x)
                return model(ctx.x)

        return step

    try:
        result = run_benchmark(_tiny_spec(modes=("infer",), impls=("timm", "eager-twice")), complexity=False)
    finally:
        del CONTENDERS["infer", "eager-twice"]
    row = {r.impl: r for r in result.rows}["eager-twice"]
    assert row.status == "ok" and row.max_rel_diff == 0.0 and row.ratio_vs_timm > 0


def test_contender_options_are_checked_against_the_registry():
    assert contender_type("compile:max-autotune", "infer").name == "compile"
    for bad in ("compile", "fast:x", "eager+ckpt"):
        with pytest.raises(ValueError, match="unknown infer contender.*compile:MODE"):
            contender_type(bad, "infer")


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        register_contender("fast", "infer")(lambda ctx: None)


def test_result_files_get_the_umask_permissions(tiny_result, tmp_path):
    old = os.umask(0o022)
    try:
        paths = write_results(tiny_result, tmp_path / "out")
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in paths} == {0o644}
