"""``hrnet-backbones train`` on COCO-format files: the folder it writes is taken as it is by timm, ``pose``,
``evaluate`` and ``push``; torchrun runs it in two processes; bad input is one line and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import timm
import torch

from hrnet_backbones.cli import main
from hrnet_backbones.syncbn import CPUSyncBatchNorm
from tests.coco_fixture import coco_dict, write_coco
from tests.helpers import free_port
from tests.train_data import MICRO_ARCH

ROOT = Path(__file__).resolve().parents[1]


def train_args(data: tuple[Path, Path], out: Path, *extra: str, val: bool = False) -> list[str]:
    ann, images = data
    args = ["train", "--model", "hrnet_w32", "--arch", MICRO_ARCH, "--train", str(ann), str(images)]
    if val:
        args += ["--val", str(ann), str(images)]
    args += ["--out", str(out), "--input-size", "64", "48", "--epochs", "2", "--batch-size", "3"]
    return args + ["--workers", "0", "--no-progress", *extra]


@pytest.fixture(scope="module")
def coco(tmp_path_factory) -> tuple[Path, Path]:
    return write_coco(tmp_path_factory.mktemp("coco"))


@pytest.fixture(scope="module")
def trained(coco, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "model"
    assert main(train_args(coco, out, "--codec", "udp", val=True)) == 0
    return out


def test_the_trained_folder_loads_with_timm_as_a_coco_pose_model(trained):
    model = timm.create_model(f"local-dir:{trained}", pretrained=True).eval()
    cfg = model.pretrained_cfg
    assert model.num_classes == 17 and cfg["dataset"] == "coco"
    assert cfg["keypoint_names"][0] == "nose" and [1, 2] in cfg["flip_pairs"]
    assert cfg["codec"]["type"] == "UDPHeatmap" and cfg["input_size"] == [3, 64, 48]
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 64, 48)).shape == (1, 17, 16, 12)


def test_the_log_holds_the_validation_ap_of_every_epoch(trained):
    records = [json.loads(line) for line in (trained / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "val" in r]
    assert [r["epoch"] for r in epochs] == [1, 2]
    assert all(0.0 <= r["val"]["AP"] <= 1.0 for r in epochs)


def test_val_every_scores_every_nth_epoch_and_the_last(coco, tmp_path):
    out = tmp_path / "model"
    args = train_args(coco, out, "--val-every", "2", val=True)
    args[args.index("--epochs") + 1] = "3"
    assert main(args) == 0
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if "val" in r] == [2, 3]
    assert "val AP" in json.loads((out / "config.json").read_text())["pretrained_cfg"]["metrics"]


def test_cpu_amp_is_recorded_in_the_checkpoint(coco, tmp_path, monkeypatch):
    monkeypatch.setenv("HRNET_BACKBONES_CPU_BF16", "auto")
    out = tmp_path / "model"
    args = train_args(coco, out, "--cpu-amp")
    args[args.index("--epochs") + 1] = "1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the no-native-bfloat16 warning on CPUs without AVX512-BF16
        assert main(args) == 0
    ckpt = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["config"]["cpu_amp"] is True


def test_pose_takes_the_trained_folder(trained, coco, tmp_path, capsys):
    image = coco[1] / "img1.png"
    assert (
        main(["pose", str(image), "--model", str(trained), "--box", "10,8,30,60", "--out", str(tmp_path)])
        == 0
    )
    record = json.loads((tmp_path / "img1.keypoints.json").read_text())
    assert len(record["people"][0]["keypoints"]) == 17


def test_evaluate_takes_the_trained_folder(trained, coco, tmp_path, capsys):
    stats = tmp_path / "stats.json"
    ann, images = coco
    assert (
        main(["evaluate", str(trained), "--ann", str(ann), "--images", str(images), "--json", str(stats)])
        == 0
    )
    assert 0.0 <= json.loads(stats.read_text())["stats"]["AP"] <= 1.0


def test_push_dry_run_takes_the_trained_folder(trained, capsys):
    assert main(["push", str(trained), "--repo-id", "someone/trained", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "would upload 3 files" in out and "log.jsonl" not in out


def test_the_model_card_says_how_the_model_was_trained(trained):
    card = (trained / "README.md").read_text()
    assert "Trained from scratch with `hrnet-backbones train`" in card
    assert "converted" not in card.split("## Model details")[0]


# --------------------------------------------------------------------------------------------- bad input
def test_an_existing_out_without_force_is_one_line_and_exit_2(coco, tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    assert main(train_args(coco, out)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--force" in err
    assert list(out.iterdir()) == []


def test_an_empty_data_set_is_one_line_and_exit_2_and_writes_nothing(coco, tmp_path, capsys):
    data = coco_dict()
    data["annotations"] = [a for a in data["annotations"] if a.get("iscrowd")]  # only a crowd region
    ann, images = write_coco(tmp_path / "empty", data)
    assert main(train_args((ann, images), tmp_path / "run")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(ann) in err
    assert not (tmp_path / "run").exists()


def test_a_pretrained_pose_model_with_another_keypoint_count_is_exit_2(trained, tmp_path, capsys):
    data = coco_dict()
    names = data["categories"][0]["keypoints"][:5]
    data["categories"][0]["keypoints"] = names
    data["categories"][0]["skeleton"] = [[1, 2]]
    for a in data["annotations"]:
        a["keypoints"] = a["keypoints"][:15]
    five = write_coco(tmp_path / "five", data)
    out = tmp_path / "run"
    assert main(train_args(five, out, "--pretrained", f"local-dir:{trained}")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "17 keypoints but the training data has 5" in err
    assert not out.exists()


# ------------------------------------------------------------------------------------------------ torchrun
def test_torchrun_with_two_processes_and_sync_bn_writes_one_ordinary_folder(coco, tmp_path):
    """--sync-bn on the CPU (gloo) and --channels-last, as the learning benchmark trains: one folder, of plain
    BatchNorm2d keys, that loads as an ordinary model."""
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        "-m",
        "hrnet_backbones",
        *train_args(coco, out, "--log-every", "1", "--sync-bn", "--channels-last", val=True),
    ]
    cmd[cmd.index("--batch-size") + 1] = "1"  # 3 instances: one step of 1 + 1 per epoch
    done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "time_s" in r]
    assert [r["step"] for r in epochs] == [1, 2]  # 3 instances, 1 per process: 1 full step per epoch
    assert len(records) == 4  # rank 0 alone logs: 2 step records + 2 epoch records
    assert all(0.0 <= r["val"]["AP"] <= 1.0 for r in epochs)  # predictions gathered from both ranks
    assert done.stdout.count("wrote ") == 1
    model = timm.create_model(f"local-dir:{out}", pretrained=True)  # strict loading: the keys of plain BN
    assert model.num_classes == 17
    assert all(type(m) is not CPUSyncBatchNorm for m in model.modules())
    assert int(model.bn1.num_batches_tracked) == 2  # one synchronised step per epoch


def test_a_landmark_model_trains_on_a_face_csv_and_reports_nme(tmp_path, capsys):
    from hrnet_backbones.synth import make_face_dataset

    faces = make_face_dataset(tmp_path / "faces", 5, seed=0, val_fraction=0.4, image_size=64)
    images = faces.root / "images"
    out = tmp_path / "run"
    args = ["train", "--model", "hrnetv2_w18", "--arch", MICRO_ARCH, "--head", "landmark"]
    args += ["--train", str(faces.train_ann), str(images), "--val", str(faces.val_ann), str(images)]
    args += ["--out", str(out), "--input-size", "32", "32", "--epochs", "1", "--batch-size", "3"]
    assert main([*args, "--workers", "0", "--no-progress"]) == 0
    record = json.loads((out / "log.jsonl").read_text().splitlines()[-1])
    assert record["val"]["NME"] > 0
    model = timm.create_model(f"local-dir:{out}", pretrained=True)
    assert model.pretrained_cfg["task"] == "landmark" and model.num_classes == 68
    assert model.pretrained_cfg["dataset"] == "300w"


def test_a_timm_imagenet_tag_starts_the_trunk_through_the_hub_cache(coco, tmp_path):
    """--pretrained ms_in1k: timm's hrnet_w18.ms_in1k file (here random weights in an offline Hub cache)."""
    from safetensors.torch import load_file, save_file

    from tests.hub_cache import populate_hub_cache

    weights = tmp_path / "model.safetensors"
    save_file(timm.create_model("hrnet_w18").state_dict(), str(weights))
    populate_hub_cache(tmp_path / "hub", "timm/hrnet_w18.ms_in1k", {"model.safetensors": weights})
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(tmp_path / "hub"),
        "HF_HOME": str(tmp_path / "home"),
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
    }
    args = train_args(coco, tmp_path / "run", "--pretrained", "ms_in1k", "--lr", "1e-12")
    args[args.index("--arch") : args.index("--arch") + 2] = []  # the tag's architecture: the full W18
    args[args.index("--model") + 1] = "hrnet_w18"
    args[args.index("--epochs") + 1] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "hrnet_backbones", *args], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    source, trained = load_file(str(weights)), load_file(str(tmp_path / "run" / "model.safetensors"))
    torch.testing.assert_close(trained["conv1.weight"], source["conv1.weight"], rtol=0, atol=1e-9)
    assert "classifier.weight" not in trained and trained["head.final_layer.weight"].shape[0] == 17
