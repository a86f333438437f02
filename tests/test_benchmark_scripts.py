"""The scripts in benchmarks/ share one rule: the destination is checked before any work, committed results are
reproduced with --force, and --help names the script and its real default."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import hrnet_backbones.bench.cli as bench_cli

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TINY = ["--arch", "tiny", "--repeats", "1", "--warmup", "0", "--device", "cpu"]


def _script(name: str):
    spec = importlib.util.spec_from_file_location(
        f"benchmark_script_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def no_benchmark(monkeypatch):
    """Any benchmark work fails the test: what is checked must be checked before it."""

    def ran(*args, **kwargs):
        pytest.fail("the benchmark ran before the destination was checked")

    monkeypatch.setattr(bench_cli, "run_benchmark", ran)
    return ran


def _one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"{prog}: error: "), err
    return err


@pytest.mark.skipif(not (RESULTS / "throughput.json").exists(), reason="committed results not in this tree")
def test_throughput_refuses_the_committed_results_before_running(no_benchmark, capsys):
    assert _script("throughput").main([]) == 2
    err = _one_error_line(capsys, "benchmarks/throughput.py")
    assert str(RESULTS / "throughput.json") in err and "--force" in err


@pytest.mark.skipif(not (RESULTS / "scaling.json").exists(), reason="committed results not in this tree")
def test_scaling_refuses_the_committed_results_before_the_sweep(monkeypatch, capsys):
    module = _script("scaling")
    monkeypatch.setattr(module, "run_benchmark", lambda *a, **k: pytest.fail("the sweep ran"))
    assert module.main([]) == 2
    err = _one_error_line(capsys, "benchmarks/scaling.py")
    assert str(RESULTS / "scaling.json") in err and "--force" in err


def test_decode_refuses_an_existing_json_before_timing(monkeypatch, tmp_path, capsys):
    module = _script("decode")
    monkeypatch.setattr(module, "realistic_heatmaps", lambda *a, **k: pytest.fail("the benchmark ran"))
    existing = tmp_path / "decode_cpu.json"
    existing.write_text("{}")
    assert module.main(["--json", str(existing)]) == 2
    assert "--force" in _one_error_line(capsys, "benchmarks/decode.py")
    assert existing.read_text() == "{}"


def test_throughput_force_reproduces_existing_results(tmp_path, capsys):
    for ext in ("json", "csv", "png"):
        (tmp_path / f"throughput.{ext}").write_text("old")
    argv = [*TINY, "--sizes", "64x64", "--batch-sizes", "1", "--no-ceiling", "--no-complexity"]
    assert _script("throughput").main([*argv, "--out", str(tmp_path), "--force"]) == 0
    assert len(json.loads((tmp_path / "throughput.json").read_text())["rows"]) == 3
    assert "wrote" in capsys.readouterr().out


def test_scaling_force_reproduces_existing_results(tmp_path):
    (tmp_path / "scaling.json").write_text("old")
    argv = [
        *TINY,
        "--impls",
        "fast",
        "--sizes",
        "64x64",
        "--batch-sizes",
        "1",
        "2",
        "--batch-size-input",
        "64x64",
    ]
    assert _script("scaling").main([*argv, "--out", str(tmp_path), "--force"]) == 0
    rows = json.loads((tmp_path / "scaling.json").read_text())["rows"]
    assert sorted(r["batch"] for r in rows) == [1, 2]


def test_decode_force_reproduces_an_existing_json(tmp_path):
    out = tmp_path / "decode_cpu.json"
    out.write_text("old")
    argv = ["--batch", "2", "--repeat", "2", "--warmup", "0", "--pause", "0"]
    assert _script("decode").main([*argv, "--json", str(out), "--force"]) == 0
    assert set(json.loads(out.read_text())["results"]) == {"quarter", "dark", "targets"}


@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("throughput", "(default: " + str(RESULTS)),
        ("scaling", "(default: " + str(RESULTS)),
        ("decode", "(default: print only)"),
    ],
)
def test_help_names_the_script_and_its_real_default(name, default, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # no line wrapping inside the default's path
    with pytest.raises(SystemExit) as exit_info:
        _script(name).main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: benchmarks/{name}.py")
    assert default in text


@pytest.mark.slow
def test_learning_runs_end_to_end_within_a_budget(tmp_path, capsys):
    """The learning benchmark's whole path on a tiny set: synth, the budget's pilot, `train` in a subprocess,
    the curve, every decoding and the baseline (its figures come from the 20-minute run, not from here)."""
    script = _script("learning")
    args = ["--images", "30", "--minutes", "0.3", "--input-size", "32", "24", "--batch-size", "4"]
    args += ["--threads", "1", "--workers", "0", "--work", str(tmp_path / "work"), "--no-json", "--quiet"]
    assert script.main(args) == 0
    out = capsys.readouterr().out
    assert re.search(r"budget 0.3 min: [\d.]+ s per training step with data loading, ~\d+ s per epoch", out)
    rows = (
        "flip, codec's decoding",
        "no flip, codec's decoding",
        "flip exactly aligned, codec's",
        "flip, argmax",
    )
    for row in (*rows, "flip, udp"):
        assert re.search(rf"{re.escape(row)} +[\d.]+\n", out), row
    assert "constant mean pose" in out
    assert (tmp_path / "work" / "run" / "model.safetensors").is_file()


@pytest.mark.parametrize(("native", "expected"), [(True, "on"), (False, "off")])
def test_learning_bfloat16_autocast_follows_the_cpu(native, expected, monkeypatch):
    """`--cpu-amp auto` trains in bfloat16 only where the CPU has it natively; forced off (no AVX512-BF16 / AMX),
    it falls back to float32; an explicit choice is kept."""
    import hrnet_backbones.fast as fast

    monkeypatch.setattr(fast, "native_bf16_cpu", lambda: native)
    script = _script("learning")
    assert script.parse_args([]).cpu_amp == expected
    assert script.parse_args(["--cpu-amp", "on"]).cpu_amp == "on"
    assert script.parse_args(["--cpu-amp", "off"]).cpu_amp == "off"


def test_learning_bfloat16_autocast_is_off_when_the_environment_forces_it(monkeypatch):
    import hrnet_backbones.fast as fast

    monkeypatch.setenv(fast.CPU_BF16_ENV, "0")
    assert _script("learning").parse_args([]).cpu_amp == "off"
