"""The hrnet-backbones command: list and info (of a model name or a model folder)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fixture_data import OFFICIAL

from hrnet_backbones.cli import main

POSE_CKPT = OFFICIAL / "tiny" / "pose" / "checkpoint.pth"


@pytest.mark.slow
def test_info_defaults_to_hrnet_w32_at_256x192(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    assert "hrnet_w32" in out and "256x192" in out
    assert "1x32x64x48" in out and "1x256x8x6" in out  # branch 0 at stride 4, branch 3 at stride 32


@pytest.mark.slow
def test_info_of_a_v2p_model_at_an_odd_size(capsys):
    assert main(["info", "hrnetv2p_w18", "--input-size", "250", "330"]) == 0
    out = capsys.readouterr().out
    assert "pyramid4" in out and "1x256x3x5" in out
    assert out.startswith("hrnetv2p_w18: V2p representation")
    assert "default out_indices: [2, 4, 6, 8, 9]" in out


@pytest.mark.slow
def test_list_shows_every_model_with_complexity(capsys):
    assert main(["list", "--input-size", "256", "192"]) == 0
    out = capsys.readouterr().out
    for name in ("hrnet_w18", "hrnetv2_w32", "hrnetv2p_w48"):
        assert name in out
    row = next(line for line in out.splitlines() if line.startswith("hrnet_w32 "))
    assert "W32" in row and "64,32,64,128,256" in row
    variants = {line.split()[0]: line.split()[1] for line in out.splitlines()[3:-1]}
    # written as the README writes them
    assert [variants[n] for n in ("hrnet_w18", "hrnetv2_w18", "hrnetv2p_w18")] == ["V1", "V2", "V2p"]


def test_info_names_the_registered_trunk(capsys):
    assert main(["info", "hrnet_w18_small", "--input-size", "64", "64"]) == 0
    assert "V1 representation, HRNet-W18-Small trunk (w18_small)" in capsys.readouterr().out


def test_info_of_a_model_folder_checks_it_and_describes_its_model(tmp_path, capsys):
    folder = tmp_path / "pose"
    assert main(["convert", str(POSE_CKPT), "--out", str(folder)]) == 0
    capsys.readouterr()
    assert main(["info", str(folder), "--input-size", "64", "48"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        f"{folder}: checked (config.json and model.safetensors fit); pose model, hrnet_w18: V1"
    )
    assert "custom trunk of width W4" in out
    assert "1x4x16x12" in out  # branch 0 of the tiny trunk at stride 4


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["info", "resnet50"], "not one of this package's"),
        (["info", "nope"], "unknown model"),
        (["info", "--input-size", "0", "5"], "positive"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_console_entry_point_runs_as_a_module():
    result = subprocess.run(
        [sys.executable, "-m", "hrnet_backbones", "info", "hrnetv2_w18", "--input-size", "64", "64"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "270" in result.stdout
