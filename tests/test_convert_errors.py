"""Bad input to ``hrnet-backbones convert``: one clear line on stderr, exit status 2, and no output folder.

Also: a pickle that would run code is refused before anything in it runs, and the NumPy allow-list for mmpose
metadata admits arrays and nothing else.
"""

from __future__ import annotations

import io
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fixture_data import OFFICIAL, OPENMMLAB, load_checkpoint
from safetensors.torch import save_file

from hrnet_backbones.cli import main
from hrnet_backbones.convert import CheckpointError, UnsafeCheckpointError, read_checkpoint

POSE = OFFICIAL / "tiny" / "pose"


class _Trap:
    """Unpickling this calls ``open(path, "w")``: it creates ``path`` if the loader runs code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _pose_sd() -> dict[str, torch.Tensor]:
    return dict(load_checkpoint(POSE))


def _save(path: Path, obj, **kwargs) -> Path:
    torch.save(obj, path, **kwargs)
    return path


# --------------------------------------------------------------------------------------- the corpus of cases
def missing(tmp: Path) -> tuple[list[str], str]:
    return [str(tmp / "nope.pth")], "not found"


def directory(tmp: Path):
    (tmp / "a_dir").mkdir()
    return [str(tmp / "a_dir")], "is a directory"


def empty(tmp: Path):
    (tmp / "empty.pth").write_bytes(b"")
    return [str(tmp / "empty.pth")], "is empty"


def truncated_zip(tmp: Path):
    data = (OFFICIAL / "tiny" / "seg" / "checkpoint.pth").read_bytes()
    (tmp / "cut.pth").write_bytes(data[: len(data) // 2])
    return [str(tmp / "cut.pth")], "truncated or corrupt"


def truncated_legacy(tmp: Path):
    data = (OPENMMLAB / "mmpose_pose" / "checkpoint.pth").read_bytes()  # legacy (non-zip) torch.save format
    (tmp / "cut.pth").write_bytes(data[: len(data) // 3])
    return [str(tmp / "cut.pth")], "truncated"


def random_bytes(tmp: Path):
    (tmp / "noise.pth").write_bytes(np.random.default_rng(0).bytes(4096))
    return [str(tmp / "noise.pth")], "not a PyTorch checkpoint"


def a_list(tmp: Path):
    return [str(_save(tmp / "list.pth", [torch.zeros(3), torch.ones(2)]))], "holds a list, not a state dict"


def a_tensor(tmp: Path):
    return [str(_save(tmp / "tensor.pth", torch.zeros(3)))], "holds a Tensor, not a state dict"


def not_tensors(tmp: Path):
    return [str(_save(tmp / "hparams.pth", {"lr": 0.1, "epochs": 210}))], "entries are not tensors"


def empty_dict(tmp: Path):
    return [str(_save(tmp / "empty_sd.pth", {}))], "empty state dict"


def code_running_pickle(tmp: Path):
    _save(tmp / "evil.pth", {"state_dict": _Trap(tmp / "MARKER")})
    return [str(tmp / "evil.pth")], r"refused to unpickle evil.pth: it needs [\w.]*open"


def plain_pickle(tmp: Path):
    (tmp / "plain.pkl").write_bytes(pickle.dumps(_pose_sd(), protocol=4))
    return [str(tmp / "plain.pkl")], "re-save the state dict with torch.save"


def unknown_layout(tmp: Path):
    sd = {**_pose_sd(), "aux_head.conv.weight": torch.zeros(2, 4, 1, 1)}
    return [str(_save(tmp / "aux.pth", sd))], "closest to 'pose'.*aux_head.conv.weight"


def not_hrnet(tmp: Path):
    sd = {"features.0.weight": torch.zeros(8, 3, 3, 3), "classifier.1.weight": torch.zeros(10, 8)}
    return [str(_save(tmp / "mobilenet.pth", sd))], "no HRNet weights found"


def wrong_arch(tmp: Path):
    return [str(POSE / "checkpoint.pth"), "--arch", "hrnet_w48"], "--arch contradicts the checkpoint: stage2"


def bad_arch_json(tmp: Path):
    return [str(POSE / "checkpoint.pth"), "--arch", "{stage2: 1"], "--arch is not valid JSON"


def wrong_family(tmp: Path):
    return [str(POSE / "checkpoint.pth"), "--family", "seg"], "--family seg contradicts the checkpoint"


def shape_mismatch(tmp: Path):
    sd = _pose_sd()
    sd["stage3.1.branches.2.0.conv2.weight"] = torch.zeros(16, 16, 1, 1)
    return [str(_save(tmp / "edited.pth", sd))], "shape mismatch for stage3.1.branches.2.0.conv2.weight"


def missing_keys(tmp: Path):
    sd = _pose_sd()
    del sd["stage4.0.fuse_layers.2.0.0.0.weight"]
    return [str(_save(tmp / "cut_down.pth", sd))], "lacks 1 weight.*stage4.0.fuse_layers.2.0.0.0.weight"


def align_corners_on_nearest(tmp: Path):
    return [str(POSE / "checkpoint.pth"), "--align-corners"], "align_corners applies to bilinear fusion"


def unknown_dataset(tmp: Path):
    return [
        str(POSE / "checkpoint.pth"),
        "--dataset",
        "imagenet",
    ], "unknown --dataset 'imagenet' for a pose model"


def damaged_safetensors(tmp: Path):
    save_file({"conv1.weight": torch.zeros(64, 3, 3, 3)}, str(tmp / "model.safetensors"))
    data = (tmp / "model.safetensors").read_bytes()
    (tmp / "model.safetensors").write_bytes(data[: len(data) - 100])
    return [str(tmp / "model.safetensors")], "damaged safetensors file"


def bad_input_size(tmp: Path):
    return [
        str(POSE / "checkpoint.pth"),
        "--input-size",
        "0",
        "192",
    ], "--input-size must be two integers from 1 to"


CORPUS = [
    missing,
    directory,
    empty,
    truncated_zip,
    truncated_legacy,
    random_bytes,
    a_list,
    a_tensor,
    not_tensors,
    empty_dict,
    code_running_pickle,
    plain_pickle,
    unknown_layout,
    not_hrnet,
    wrong_arch,
    bad_arch_json,
    wrong_family,
    shape_mismatch,
    missing_keys,
    align_corners_on_nearest,
    unknown_dataset,
    damaged_safetensors,
    bad_input_size,
]


@pytest.mark.parametrize("make", CORPUS, ids=lambda f: f.__name__)
def test_bad_input_gives_one_clear_line_and_no_output(make, tmp_path, capsys):
    args, message = make(tmp_path)
    out = tmp_path / "out"
    before = set(tmp_path.iterdir())
    rc = main(["convert", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1, err
    assert err.startswith("hrnet-backbones convert: error: ")
    assert re.search(message, err), err
    assert not out.exists()
    assert set(tmp_path.iterdir()) == before  # no temporary folder left behind
    assert not (tmp_path / "MARKER").exists()


def test_existing_output_folder_is_kept_without_force(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["convert", str(POSE / "checkpoint.pth"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert "already exists; pass --force" in err
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_a_previously_converted_folder(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(POSE / "checkpoint.pth"), "--out", str(out)]) == 0
    (out / "README.md").write_text("an older card")
    assert main(["convert", str(POSE / "checkpoint.pth"), "--out", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (out / "README.md").read_text() != "an older card"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_output_folder_under_a_file_is_refused_by_name(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "sub"
    rc = main(["convert", str(POSE / "checkpoint.pth"), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1
    assert (
        f"cannot create the output folder {out}: {tmp_path / 'afile'} is a file; choose another --out" in err
    )
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


@pytest.mark.parametrize("force", [False, True])
def test_a_failure_while_writing_leaves_no_folder_and_keeps_the_old_one(force, tmp_path, monkeypatch, capsys):
    from hrnet_backbones.convert import writer

    out = tmp_path / "out"
    if force:
        assert main(["convert", str(POSE / "checkpoint.pth"), "--out", str(out)]) == 0
        capsys.readouterr()
        previous = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken_card(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(writer, "model_card", broken_card)
    args = ["convert", str(POSE / "checkpoint.pth"), "--out", str(out)] + (["--force"] if force else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert [p.name for p in tmp_path.iterdir()] == (["out"] if force else [])  # no temporary folder either
    if force:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == previous


# ------------------------------------------------------------------------------------------------ safe loading
@pytest.mark.parametrize("fmt", ["pickle", "torch_zip", "torch_legacy"])
def test_pickle_that_would_run_code_is_refused_and_runs_nothing(fmt, tmp_path):
    marker = tmp_path / "MARKER"
    probe = tmp_path / "PROBE"
    pickle.loads(pickle.dumps(_Trap(probe)))
    assert probe.exists()  # the trap does run code under a plain unpickler
    path = tmp_path / "evil.pth"
    obj = {"meta": _Trap(marker), "state_dict": {"conv1.weight": torch.zeros(1)}}
    if fmt == "pickle":
        path.write_bytes(pickle.dumps({"meta": obj["meta"]}, protocol=2))
    else:
        torch.save(obj, path, _use_new_zipfile_serialization=fmt == "torch_zip")
    with pytest.raises(UnsafeCheckpointError, match=r"refused to unpickle evil.pth: it needs [\w.]*open"):
        read_checkpoint(path)
    assert not marker.exists()


def test_mmpose_numpy_metadata_loads_without_allowing_code():
    ckpt = read_checkpoint(OPENMMLAB / "mmpose_pose" / "checkpoint.pth")
    sigmas = ckpt.meta["dataset_meta"]["sigmas"]
    assert isinstance(sigmas, np.ndarray) and sigmas.dtype == np.float32 and sigmas.shape == (17,)


def test_numpy_1x_module_names_are_accepted(tmp_path):
    buf = io.BytesIO()
    torch.save({"meta": {"sigmas": np.arange(3, dtype=np.float32)}, "state_dict": _pose_sd()}, buf,
               _use_new_zipfile_serialization=False)  # fmt: skip
    data = buf.getvalue()
    assert b"numpy._core.multiarray" in data
    (tmp_path / "np1.pth").write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ckpt = read_checkpoint(tmp_path / "np1.pth")
    assert ckpt.meta["sigmas"].tolist() == [0.0, 1.0, 2.0]


def test_numpy_object_arrays_are_refused(tmp_path):
    torch.save({"meta": {"x": np.array([_Trap(tmp_path / "MARKER")], dtype=object)}, "state_dict": _pose_sd()},
               tmp_path / "obj.pth")  # fmt: skip
    with pytest.raises(UnsafeCheckpointError):
        read_checkpoint(tmp_path / "obj.pth")
    assert not (tmp_path / "MARKER").exists()


def test_read_errors_are_value_errors_for_the_cli(tmp_path):
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError) as info:
        read_checkpoint(tmp_path / "empty.pth")
    assert isinstance(info.value, ValueError)
