"""CPU deployment: `hrnet-backbones export` -> verified ONNX / OpenVINO file + sidecar -> `deploy.load` -> the
PyTorch model's predictions.

Exports are shared per module (each costs seconds): a converted pose folder (tiny trunk, randomised weights and
BatchNorm statistics so outputs depend on every parameter) exported once through the CLI with a dynamic batch,
once with a fixed batch, once to OpenVINO IR and once to int8; a tiny V2p feature extractor once. Tolerances:
fp32 1e-4 relative (max |diff| / max |reference|, the package's definition), int8 a stated bound.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import timm
import torch
from PIL import Image

from hrnet_backbones import tiny_config
from hrnet_backbones.cli import main
from hrnet_backbones.deploy import export as export_module
from hrnet_backbones.deploy import export_model, load, natural_image, relative_error
from hrnet_backbones.inference import keypoint_meta, predict_keypoints
from hrnet_backbones.keypoints import COCO_KEYPOINTS
from tests.conftest import randomize
from tests.helpers import write_pose_folder

ROOT = Path(__file__).resolve().parents[1]

SIZE = (64, 48)
FP32 = 1e-4
#: int8 bound on the relative error of this tiny random model's heatmaps (measured 0.02-0.06)
INT8 = 0.15


def _pose_model() -> torch.nn.Module:
    model = timm.create_model(
        "hrnet_w32", arch=tiny_config(multi_scale_last=False), head="pose", num_classes=17
    )
    return randomize(model).eval()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("deploy")


@pytest.fixture(scope="module")
def pose_folder(workdir):
    """A pose folder as the converter writes it, with its own normalisation and UDP codec."""
    codec = {"type": "UDPHeatmap", "sigma": 2.0}
    return write_pose_folder(
        workdir / "pose_model", _pose_model(), SIZE, mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.22), codec=codec
    )


@pytest.fixture(scope="module")
def torch_model(pose_folder):
    return timm.create_model(f"local-dir:{pose_folder}", pretrained=True).eval()


@pytest.fixture(scope="module")
def onnx_file(workdir, pose_folder):
    out = workdir / "pose.onnx"
    assert main(["export", f"local-dir:{pose_folder}", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def calibration_dir(workdir):
    folder = workdir / "calibration"
    folder.mkdir()
    for i in range(4):
        image = natural_image(1, (90, 70 + 9 * i), mean=(0, 0, 0), std=(1, 1, 1), seed=10 + i)[0]
        Image.fromarray((image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def int8_file(workdir, torch_model, calibration_dir):
    out = workdir / "pose.int8.onnx"
    export_model(torch_model, out, int8=True, calibration=calibration_dir)
    return out


def _photo(batch: int, size=SIZE, seed: int = 5) -> torch.Tensor:
    return natural_image(batch, size, mean=(0.5, 0.45, 0.4), std=(0.25, 0.2, 0.22), seed=seed)


# ------------------------------------------------------------------------------------------------ fp32 ONNX
def test_export_reports_its_verification_within_1e4(onnx_file, capsys):
    side = json.loads(onnx_file.with_name("pose.onnx.json").read_text())
    verification = side["verification"]
    assert verification["relative_error"] <= FP32
    assert [c["input_shape"] for c in verification["onnxruntime_fp32"]][0] == [2, 3, *SIZE]
    assert "max |runtime - pytorch| / max |pytorch|" in verification["metric"]


def test_loaded_onnx_equals_pytorch_at_other_batches_and_sizes(onnx_file, torch_model):
    loaded = load(onnx_file)
    for batch, size in [(1, SIZE), (3, SIZE), (2, (80, 72)), (1, (44, 36))]:
        x = _photo(batch, size)
        with torch.no_grad():
            expected = torch_model(x)
        got = loaded(x)
        assert isinstance(got, torch.Tensor) and got.shape == expected.shape
        assert relative_error([got], [expected]) <= FP32, (batch, size)


def test_loaded_model_takes_numpy_arrays(onnx_file, torch_model):
    x = _photo(2)
    got = load(onnx_file)(x.numpy())
    with torch.no_grad():
        assert relative_error([got], [torch_model(x)]) <= FP32


def test_sidecar_carries_what_a_deployment_needs(onnx_file):
    side = json.loads(onnx_file.with_name("pose.onnx.json").read_text())
    assert side["format"] == "onnx" and side["opset"] == export_module.OPSET and side["precision"] == "fp32"
    assert side["input"]["input_size"] == list(SIZE)
    assert side["input"]["mean"] == [0.5, 0.45, 0.4] and side["input"]["std"] == [0.25, 0.2, 0.22]
    assert side["input"]["shape"] == ["batch", 3, "height", "width"]
    assert side["outputs"] == [{"name": "heatmaps", "channels": 17, "stride": 4}]
    cfg = side["pretrained_cfg"]
    assert cfg["keypoint_names"] == list(COCO_KEYPOINTS.keypoint_names)
    assert cfg["flip_pairs"] == [list(p) for p in COCO_KEYPOINTS.flip_pairs]
    assert cfg["codec"]["type"] == "UDPHeatmap" and cfg["input_size"] == [3, *SIZE]
    assert side["versions"]["hrnet_backbones"] and side["versions"]["onnxruntime"]
    graph = onnx.load(str(onnx_file)).graph
    assert [o.name for o in graph.output] == ["heatmaps"] and graph.input[0].name == "image"


def test_loaded_model_carries_the_keypoint_metadata(onnx_file, torch_model):
    loaded = load(onnx_file)
    assert loaded.num_classes == 17
    assert keypoint_meta(loaded) == keypoint_meta(torch_model)


def test_predict_keypoints_on_a_loaded_export_equals_pytorch(onnx_file, torch_model):
    image = natural_image(1, (120, 160), mean=(0, 0, 0), std=(1, 1, 1), seed=9)[0]
    boxes = [[20.0, 10.0, 50.0, 90.0], [90.0, 5.0, 40.0, 80.0]]
    kp_torch, sc_torch = predict_keypoints(torch_model, image, boxes)
    kp_onnx, sc_onnx = predict_keypoints(load(onnx_file), image, boxes)
    torch.testing.assert_close(kp_onnx, kp_torch, rtol=0, atol=1e-3)
    torch.testing.assert_close(sc_onnx, sc_torch, rtol=0, atol=1e-4 * sc_torch.abs().max().item())


def test_pose_command_runs_on_an_exported_file(onnx_file, workdir, capsys):
    image = workdir / "people.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(image)
    out = workdir / "pose_out"
    argv = ["pose", str(image), "--model", str(onnx_file), "--box", "20,10,50,90", "--out", str(out)]
    assert main(argv) == 0
    record = json.loads((out / "people.keypoints.json").read_text())
    assert record["input_size"] == list(SIZE) and record["flip_test"] is True
    assert [k["name"] for k in record["people"][0]["keypoints"]] == list(COCO_KEYPOINTS.keypoint_names)


def test_fixed_batch_export_runs_any_batch_in_chunks(workdir, torch_model):
    out = workdir / "pose_b2.onnx"
    export_model(torch_model, out, batch_size=2)
    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_value == 2
    loaded = load(out)
    x = _photo(5)
    with torch.no_grad():
        assert relative_error([loaded(x)], [torch_model(x)]) <= FP32


def test_features_only_export_returns_a_list_like_the_model(workdir):
    model = randomize(
        timm.create_model("hrnetv2p_w32", arch=tiny_config(), features_only=True, neck_channels=16)
    ).eval()
    out = workdir / "features.onnx"
    result = export_model(model, out, input_size=SIZE, features_only=True)
    strides = [o["stride"] for o in result.metadata["outputs"]]
    assert strides == model.feature_info.reduction()
    assert [o["channels"] for o in result.metadata["outputs"]] == model.feature_info.channels()
    loaded = load(out)
    x = _photo(2, (72, 56))
    with torch.no_grad():
        expected = model(x)
    got = loaded(x)
    assert isinstance(got, list) and len(got) == len(expected)
    assert relative_error(got, expected) <= FP32


def test_a_failed_verification_writes_nothing(workdir, torch_model, monkeypatch):
    monkeypatch.setattr(export_module, "FP32_TOLERANCE", 0.0)
    out = workdir / "refused" / "pose.onnx"
    with pytest.raises(ValueError, match="nothing was written"):
        export_model(torch_model, out)
    assert list(out.parent.iterdir()) == []


# ------------------------------------------------------------------------------------------------- OpenVINO
def test_openvino_export_equals_pytorch(workdir, torch_model):
    pytest.importorskip("openvino")
    out = workdir / "pose.xml"
    result = export_model(torch_model, out)
    assert out.with_suffix(".bin").is_file() and result.metadata["format"] == "openvino"
    assert result.verification["openvino_fp32"][0]["relative_error"] <= FP32
    loaded = load(out)
    assert loaded.runtime == "openvino"
    x = _photo(3, (72, 40))
    with torch.no_grad():
        assert relative_error([loaded(x)], [torch_model(x)]) <= FP32


# ------------------------------------------------------------------------------------------------------ int8
def test_int8_export_is_a_quantized_onnx_that_onnxruntime_runs(int8_file, torch_model):
    ops = {n.op_type for n in onnx.load(str(int8_file)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    loaded = load(int8_file)
    x = _photo(2, seed=11)
    with torch.no_grad():
        assert relative_error([loaded(x)], [torch_model(x)]) <= INT8


def test_int8_export_reports_its_error(int8_file):
    side = json.loads(int8_file.with_name("pose.int8.onnx.json").read_text())
    assert side["precision"] == "int8"
    assert side["quantization"]["format"] == "QDQ" and side["quantization"]["calibration"]["images"] == 4
    checks = side["verification"]["onnxruntime_int8"]
    assert 0 < side["verification"]["relative_error"] <= INT8
    assert all("heatmap_argmax_agreement" in c for c in checks)


def test_openvino_runs_the_int8_onnx(int8_file, torch_model):
    pytest.importorskip("openvino")
    loaded = load(int8_file, runtime="openvino")
    x = _photo(2, seed=11)
    with torch.no_grad():
        assert relative_error([loaded(x)], [torch_model(x)]) <= INT8


# ------------------------------------------------------------------------------------------------ CLI errors
def test_int8_accuracy_benchmark_compares_the_int8_file_with_its_folder(
    int8_file, pose_folder, calibration_dir, capsys
):
    spec = importlib.util.spec_from_file_location("int8_accuracy", ROOT / "benchmarks" / "int8_accuracy.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.main(
        [str(pose_folder), "--int8", str(int8_file), "--images", str(calibration_dir), "--limit", "3"]
    )
    out = capsys.readouterr().out
    agreement = float(re.search(r"heatmap argmax agreement ([\d.]+)%", out).group(1))
    assert "3 boxes x 17 keypoints" in out and 0.0 <= agreement <= 100.0
    assert re.search(r"keypoint distance: median [\d.]+ px", out)


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("hrnet-backbones export: error:")
    return err


def test_export_refuses_an_existing_file_without_force(onnx_file, capsys):
    before = onnx_file.read_bytes()
    assert main(["export", "hrnet_w18", "--out", str(onnx_file)]) == 2
    assert "--force" in _one_line_error(capsys)
    assert onnx_file.read_bytes() == before


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["no_such_model"], "neither a folder"),
        (["hrnet_w18", "--int8", "--calibration", "/no/such/folder"], "no such folder"),
        (["hrnet_w18", "--int8"], "--calibration"),
        (["hrnet_w18", "--format", "openvino"], "should end in .xml"),
    ],
)
def test_export_bad_input_exits_2_with_one_line(workdir, argv, message, capsys):
    assert main(["export", *argv, "--out", str(workdir / "bad.onnx")]) == 2
    assert message in _one_line_error(capsys)
    assert not (workdir / "bad.onnx").exists()


def test_load_needs_the_sidecar(workdir, onnx_file):
    copy = workdir / "orphan.onnx"
    copy.write_bytes(onnx_file.read_bytes())
    with pytest.raises(FileNotFoundError, match="sidecar"):
        load(copy)


# ----------------------------------------------------------------------------------------------------- bench
def test_bench_times_the_runtimes_in_the_same_rows():
    from hrnet_backbones.bench import BenchSpec, run_benchmark

    impls = ("timm", "fast", "ort", "ort-int8", "openvino", "openvino-int8")
    spec = BenchSpec(
        models=("hrnet_w32",),
        sizes=((64, 64),),
        batch_sizes=(2,),
        impls=impls,
        repeats=1,
        warmup=0,
        device="cpu",
        arch="tiny",
        ceiling=False,
    )
    rows = {r.impl: r for r in run_benchmark(spec, complexity=False).rows}
    assert set(rows) == set(impls)
    assert all(r.status == "ok" and r.img_s > 0 and r.ratio_vs_timm is not None for r in rows.values())
    assert rows["ort"].max_rel_diff <= FP32 and rows["openvino"].max_rel_diff <= FP32
    # the suite's input is Gaussian noise, outside the natural-image calibration: a looser bound (measured 0.23)
    assert 0 < rows["ort-int8"].max_rel_diff <= 0.5 and 0 < rows["openvino-int8"].max_rel_diff <= 0.5


def test_per_shape_profile_matches_every_convolution_to_openvino():
    """`benchmarks/deploy_profile.py --per-shape`: oneDNN's verbose log is captured and parsed for every
    convolution the fast path calls, and each shape is found among OpenVINO's compiled convolutions."""
    import subprocess
    import sys

    cmd = [sys.executable, "benchmarks/deploy_profile.py", "--model", "hrnet_w18_small", "--size", "64", "48"]
    result = subprocess.run(
        [*cmd, "--per-shape", "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    rows = re.findall(
        r"^ +(\d+) +(\d+) (\d) (\d) +\d+x\d+ +(\d+) +[\d.]+ +[\d.]+ +[\d.]+  (\S+) \| (.+)$", out, re.M
    )
    assert rows, out
    assert all(ov != "not matched" for *_, ov in rows), out
    calls = sum(int(r[4]) for r in rows)
    model = timm.create_model("hrnet_w18_small", features_only=True).eval()
    script = importlib.util.spec_from_file_location(
        "deploy_profile", ROOT / "benchmarks" / "deploy_profile.py"
    )
    module = importlib.util.module_from_spec(script)
    script.loader.exec_module(module)
    with torch.inference_mode():
        expected = module.conv_calls(model, torch.randn(1, 3, 64, 48))
    assert calls == expected, out
    assert re.search(
        rf"the {calls} calls of shapes both engines ran: torch [\d.]+ ms, OpenVINO [\d.]+ ms", out
    ), out
