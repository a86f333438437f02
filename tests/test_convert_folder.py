"""What a converted folder holds: timm's config.json, safetensors metadata, the model card, and the task metadata
taken from the file, the table of released files and the dataset defaults.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat

import pytest
import timm
import torch
import yaml
from fixture_data import OFFICIAL, OPENMMLAB
from safetensors import safe_open
from safetensors.torch import load_file
from timm.models._hub import load_model_config_from_path

import hrnet_backbones  # noqa: F401  (registers the models)
from hrnet_backbones.cli import main
from hrnet_backbones.complexity import measure, meta_model
from hrnet_backbones.convert import convert_checkpoint, convert_state_dict, known, read_checkpoint
from hrnet_backbones.convert.known import keypoint_metadata
from hrnet_backbones.convert.writer import model_card

POSE = OFFICIAL / "tiny" / "pose"
SEG = OFFICIAL / "tiny" / "seg"
MMPOSE = OPENMMLAB / "mmpose_pose"


@pytest.fixture(scope="module")
def pose_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pose") / "model"
    convert_checkpoint(POSE / "checkpoint.pth", folder)
    return folder


def _front_matter(card: str) -> dict:
    m = re.match(r"---\n(.*?)\n---\n", card, re.S)
    assert m, "the card starts with YAML front matter"
    return yaml.safe_load(m.group(1))


def test_config_json_is_read_by_timm_as_the_hub_format(pose_folder):
    pretrained_cfg, name, model_args = load_model_config_from_path(pose_folder)
    config = json.loads((pose_folder / "config.json").read_text())
    assert name == config["architecture"] == "hrnet_w18"
    assert model_args["arch"]["stage4"]["num_channels"] == [4, 8, 16, 32]
    assert (model_args["head"], model_args["num_classes"]) == ("pose", 17)
    assert pretrained_cfg["num_classes"] == config["num_classes"] == 17
    assert pretrained_cfg["input_size"] == [3, 256, 192]
    # what the tensors cannot tell: the pose code's nearest fusion and its ImageNet normalisation
    assert (model_args["arch"]["fusion_upsample"], model_args["arch"]["align_corners"]) == ("nearest", False)
    assert pretrained_cfg["mean"] == [0.485, 0.456, 0.406] and pretrained_cfg["std"] == [0.229, 0.224, 0.225]


def test_safetensors_metadata_names_the_source(pose_folder):
    with safe_open(str(pose_folder / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    assert meta["source_file"] == "checkpoint.pth"
    assert meta["source_sha256"] == hashlib.sha256((POSE / "checkpoint.pth").read_bytes()).hexdigest()
    assert (meta["family"], meta["architecture"], meta["format"]) == ("pose", "hrnet_w18", "pt")
    assert meta["converter"].startswith(f"hrnet_backbones {hrnet_backbones.__version__}")


def test_model_card_front_matter_is_hub_metadata(pose_folder):
    meta = _front_matter((pose_folder / "README.md").read_text())
    assert meta["library_name"] == "timm"
    assert meta["license"] == "mit"
    assert meta["pipeline_tag"] == "keypoint-detection"
    assert {"timm", "hrnet", "pose-estimation"} <= set(meta["tags"])
    assert meta["datasets"] == ["coco"]


def test_model_card_gives_source_usage_complexity_and_citation(pose_folder):
    card = (pose_folder / "README.md").read_text()
    digest = hashlib.sha256((POSE / "checkpoint.pth").read_bytes()).hexdigest()
    assert f"SHA-256 `{digest}`" in card
    assert 'timm.create_model("hf-hub:ORG/hrnet_w4.coco_pose_256x192", pretrained=True)' in card
    assert (
        "## Citation" in card
        and "Deep High-Resolution Representation Learning for Human Pose Estimation" in card
    )
    config = json.loads((pose_folder / "config.json").read_text())
    c = measure(meta_model(config["architecture"], **config["model_args"]), (256, 192))
    assert f"**GMACs:** {c.gmacs:.2f} at 256x192" in card


def test_pretrained_cfg_metadata_reaches_the_model(pose_folder):
    model = timm.create_model(f"local-dir:{pose_folder}", pretrained=True)
    cfg = model.pretrained_cfg
    assert cfg["keypoint_names"] == keypoint_metadata("coco")["keypoint_names"]
    assert cfg["flip_pairs"][0] == [1, 2] and len(cfg["skeleton"]) == 19
    assert cfg["codec"] == {
        "type": "MSRAHeatmap",
        "sigma": 2.0,
        "input_size": [192, 256],
        "heatmap_size": [48, 64],
    }
    assert (cfg["task"], cfg["output_stride"], cfg["classifier"]) == ("pose", 4, "head.final_layer")


def _convert_named(tmp_path, name: str, **options):
    shutil.copy(POSE / "checkpoint.pth", tmp_path / name)
    ckpt = read_checkpoint(tmp_path / name)
    return convert_state_dict(
        ckpt.state_dict, source_name=ckpt.path.name, source_sha256=ckpt.sha256, **options
    )


@pytest.fixture
def w4_release(monkeypatch):
    """A released W4 pose file in the table (the tiny fixture is W4; the real releases are W32/W48)."""
    release = known.Release(r"pose_hrnet_w4_384x288\.pth", "pose", "coco", (384, 288), {"COCO AP": 0.5})
    monkeypatch.setattr(known, "RELEASES", (*known.RELEASES, release))


def test_released_file_name_sets_dataset_size_and_metrics(tmp_path, w4_release):
    conv = _convert_named(tmp_path, "pose_hrnet_w4_384x288.pth")
    cfg = conv.pretrained_cfg
    assert cfg["tag"] == "coco_pose_384x288" and cfg["input_size"] == [3, 384, 288]
    assert cfg["metrics"] == {"COCO AP": 0.5}
    assert cfg["codec"]["sigma"] == 3.0 and cfg["codec"]["heatmap_size"] == [72, 96]


def test_a_released_name_on_tensors_of_another_width_brings_no_metrics(tmp_path):
    conv = _convert_named(tmp_path, "pose_hrnet_w32_384x288.pth")
    assert "metrics" not in conv.pretrained_cfg
    assert any("file name says W32 but the tensors are W4" in note for note in conv.notes)
    assert any(
        "named like the released pose_hrnet_w32_384x288.pth, but its tensors are W4, not W32" in n
        for n in conv.notes
    )
    assert "COCO val2017 AP" not in model_card(conv, complexity=False)


def test_a_released_name_at_another_input_size_brings_no_metrics(tmp_path, w4_release):
    conv = _convert_named(tmp_path, "pose_hrnet_w4_384x288.pth", input_size=(256, 192))
    assert "metrics" not in conv.pretrained_cfg
    assert any("it was trained at 256x192, not the release's 384x288" in note for note in conv.notes)


def test_a_released_name_with_another_number_of_outputs_brings_no_metrics(tmp_path, monkeypatch):
    release = known.Release(r"pose_hrnet_w4_256x256\.pth", "pose", "mpii", (256, 256), {"PCKh": 90.0})
    monkeypatch.setattr(known, "RELEASES", (release,))
    conv = _convert_named(tmp_path, "pose_hrnet_w4_256x256.pth")  # 17 keypoints, MPII has 16
    assert "metrics" not in conv.pretrained_cfg
    assert any("its head has 17 outputs, not the 16 of MPII" in note for note in conv.notes)


def test_mmpose_dataset_meta_gives_the_keypoints_and_codec():
    ckpt = read_checkpoint(MMPOSE / "checkpoint.pth")
    cfg = convert_state_dict(ckpt.state_dict, meta=ckpt.meta).pretrained_cfg
    coco = keypoint_metadata("coco")
    assert cfg["keypoint_names"] == coco["keypoint_names"]
    assert cfg["flip_pairs"] == coco["flip_pairs"]
    assert cfg["skeleton"] == coco["skeleton"]
    assert cfg["sigmas"] == pytest.approx(coco["sigmas"])
    assert cfg["codec"] == {
        "type": "MSRAHeatmap",
        "input_size": [192, 256],
        "heatmap_size": [48, 64],
        "sigma": 2.0,
    }
    assert cfg["license"] == "apache-2.0"


def test_segmentation_metadata_has_class_names_and_test_size():
    ckpt = read_checkpoint(SEG / "checkpoint.pth")
    cfg = convert_state_dict(ckpt.state_dict, meta=ckpt.meta).pretrained_cfg
    assert len(cfg["label_names"]) == 19 and cfg["label_names"][0] == "road"
    assert cfg["input_size"] == [3, 512, 1024] and cfg["test_input_size"] == [3, 1024, 2048]
    assert (cfg["classifier"], cfg["output_stride"]) == ("head.3", 4)


def test_openmmlab_class_names_come_from_the_file():
    ckpt = read_checkpoint(OPENMMLAB / "mmseg_seg" / "checkpoint.pth")
    cfg = convert_state_dict(ckpt.state_dict, meta=ckpt.meta).pretrained_cfg
    assert cfg["label_names"] == list(ckpt.meta["dataset_meta"]["classes"])
    assert cfg["input_size"] == [3, 512, 1024]  # the config's crop_size


def test_dataset_and_input_size_flags_override(tmp_path):
    conv = convert_state_dict(
        read_checkpoint(OFFICIAL / "tiny" / "face" / "checkpoint.pth").state_dict,
        dataset="wflw",
        input_size=(128, 128),
    )
    assert conv.pretrained_cfg["tag"] == "wflw_landmark_128x128"
    assert conv.pretrained_cfg["codec"]["heatmap_size"] == [32, 32]


def test_dataset_flag_must_fit_the_head():
    with pytest.raises(ValueError, match="--dataset mpii has 16 outputs but the checkpoint's head has 17"):
        convert_state_dict(read_checkpoint(POSE / "checkpoint.pth").state_dict, dataset="mpii")


def test_default_output_folder_is_named_like_a_timm_tag(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, folder = convert_checkpoint(SEG / "checkpoint.pth", complexity=False)
    assert folder == tmp_path / "hrnetv2_w4.cityscapes_seg_512x1024"
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]


def test_cli_reports_what_it_detected_inferred_dropped_and_wrote(tmp_path, capsys):
    assert (
        main(["convert", str(SEG / "checkpoint.pth"), "--out", str(tmp_path / "seg"), "--repo-id", "me/seg"])
        == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("detected: seg (official HRNetV2 semantic segmentation")
    assert "inferred: hrnetv2_w18 W4, channels [4, 8, 16, 32], modules 1/2/2" in out
    assert "dropped 1 key(s): the training loss' class-weight buffer" in out
    assert f"wrote {tmp_path / 'seg'}: config.json" in out
    assert (
        'timm.create_model("hf-hub:me/seg", pretrained=True)' in (tmp_path / "seg" / "README.md").read_text()
    )


def test_safetensors_checkpoints_are_read_too(tmp_path):
    from safetensors.torch import save_file

    save_file(read_checkpoint(POSE / "checkpoint.pth").state_dict, str(tmp_path / "pose.safetensors"))
    conv, folder = convert_checkpoint(tmp_path / "pose.safetensors", tmp_path / "out", complexity=False)
    assert conv.layout.family == "pose" and (folder / "model.safetensors").is_file()


def test_tensors_shared_between_keys_are_written_separately(tmp_path):
    sd = read_checkpoint(POSE / "checkpoint.pth").state_dict
    sd["bn2.running_mean"] = sd["bn1.running_mean"]  # one tensor under two names, as torch.save keeps it
    torch.save(sd, tmp_path / "tied.pth")
    _, folder = convert_checkpoint(tmp_path / "tied.pth", tmp_path / "out", complexity=False)
    written = load_file(str(folder / "model.safetensors"))
    assert torch.equal(written["bn1.running_mean"], written["bn2.running_mean"])


def test_the_folder_and_its_files_have_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        convert_checkpoint(POSE / "checkpoint.pth", tmp_path / "model", complexity=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "model").iterdir()}
    assert modes == {"README.md": 0o644, "config.json": 0o644, "model.safetensors": 0o644}
