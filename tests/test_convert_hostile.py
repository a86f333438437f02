"""The converter under damaged and hostile input (issue 14): every case ends with exit status 2 and one line on
stderr that names the problem and the fix; no traceback, nothing written or removed anywhere under the test's
folder (the input, the output, the current folder), and no code from a file run.

Each case prepares its files in ``tmp`` (the test runs with ``tmp / "cwd"`` as the current folder) and returns the
command line and a pattern the one line must match.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from pathlib import Path

import pytest
import timm
import torch
from fixture_data import OFFICIAL
from PIL import Image
from safetensors.torch import save_file

from hrnet_backbones import tiny_config
from hrnet_backbones.cli import main
from hrnet_backbones.convert import CheckpointError, read_checkpoint
from hrnet_backbones.convert.load import storages_fit_records, verify_zip

POSE_CKPT = OFFICIAL / "tiny" / "pose" / "checkpoint.pth"


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A folder written by ``convert`` (copied by the cases that need one)."""
    folder = tmp_path_factory.mktemp("converted") / "model"
    assert main(["convert", str(POSE_CKPT), "--out", str(folder)]) == 0
    return folder


def _copy_input(tmp: Path, where: str = "ck/src.pth") -> Path:
    path = tmp / where
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(POSE_CKPT, path)
    return path


# ---------------------------------------------------------------------------------- --force and data loss (1)
def force_into_the_inputs_folder(tmp: Path, converted: Path):
    src = _copy_input(tmp)
    (tmp / "ck" / "notes.txt").write_text("mine")
    return ["convert", str(src), "--out", str(tmp / "ck"), "--force"], r"holds the input checkpoint"


def force_into_the_inputs_folder_by_a_relative_path(tmp: Path, converted: Path):
    src = _copy_input(tmp, "cwd/src.pth")
    (tmp / "cwd" / "sub").mkdir()
    return ["convert", str(src), "--out", "sub/..", "--force"], r"current folder"


def force_over_a_symlink_to_the_inputs_folder(tmp: Path, converted: Path):
    src = _copy_input(tmp)
    (tmp / "link").symlink_to(tmp / "ck")
    return ["convert", str(src), "--out", str(tmp / "link"), "--force"], r"holds the input checkpoint"


def force_over_a_folder_holding_a_symlink_to_the_input(tmp: Path, converted: Path):
    src = _copy_input(tmp)
    (tmp / "out").mkdir()
    (tmp / "out" / "src.pth").symlink_to(src)
    return ["convert", str(tmp / "out" / "src.pth"), "--out", str(tmp / "out"), "--force"], r"holds the input"


def force_over_a_folder_of_other_files(tmp: Path, converted: Path):
    (tmp / "photos").mkdir()
    (tmp / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    args = ["convert", str(POSE_CKPT), "--out", str(tmp / "photos"), "--force"]
    return (
        args,
        r"--force replaces only a folder written by `hrnet-backbones convert`.*\(a\.jpg\); choose another",
    )


def force_over_a_converted_folder_with_an_extra_file(tmp: Path, converted: Path):
    shutil.copytree(converted, tmp / "model")
    (tmp / "model" / "eval.json").write_text("{}")
    return [
        "convert",
        str(POSE_CKPT),
        "--out",
        str(tmp / "model"),
        "--force",
    ], r"does not write \(eval\.json\)"


def force_over_a_converted_folder_with_a_subfolder(tmp: Path, converted: Path):
    shutil.copytree(converted, tmp / "model")
    (tmp / "model" / "runs").mkdir()
    return ["convert", str(POSE_CKPT), "--out", str(tmp / "model"), "--force"], r"does not write \(runs\)"


def force_over_a_folder_with_a_foreign_config(tmp: Path, converted: Path):
    (tmp / "model").mkdir()
    (tmp / "model" / "config.json").write_text('{"architecture": "resnet50"}')
    (tmp / "model" / "README.md").write_text("my notes")
    args = ["convert", str(POSE_CKPT), "--out", str(tmp / "model"), "--force"]
    return args, r"config\.json was not written by `hrnet-backbones convert`"


def force_over_a_folder_with_only_a_readme(tmp: Path, converted: Path):
    (tmp / "model").mkdir()
    (tmp / "model" / "README.md").write_text("my notes")
    args = ["convert", str(POSE_CKPT), "--out", str(tmp / "model"), "--force"]
    return args, r"config\.json was not written"


def out_dot_with_force(tmp: Path, converted: Path):
    return ["convert", str(POSE_CKPT), "--out", ".", "--force"], r"--out '\.' is the current folder"


def out_empty_with_force(tmp: Path, converted: Path):
    return [
        "convert",
        str(POSE_CKPT),
        "--out",
        "",
        "--force",
    ], r"--out is empty \(an unset variable\?\); name a new folder"


def out_parent_of_cwd_with_force(tmp: Path, converted: Path):
    return ["convert", str(POSE_CKPT), "--out", "..", "--force"], r"current folder or one that contains it"


def out_dot_without_force(tmp: Path, converted: Path):
    return ["convert", str(POSE_CKPT), "--out", "."], r"is the current folder, which convert never replaces"


def out_dangling_symlink(tmp: Path, converted: Path):
    (tmp / "dangling").symlink_to(tmp / "gone")
    args = ["convert", str(POSE_CKPT), "--out", str(tmp / "dangling")]
    return args, r"symbolic link to a missing path .*gone\); remove the link or choose another --out"


# -------------------------------------------------------------------------------- damaged checkpoints (2, 6)
def _rezip(src: Path, dst: Path, edit) -> Path:
    """``src``'s records written again by Python's zipfile (no alignment), each passed through ``edit(name, data)``."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, edit(info.filename, zin.read(info.filename)))
    return dst


def _largest_record(path: Path) -> str:
    with zipfile.ZipFile(path) as zf:
        return max(zf.infolist(), key=lambda i: i.file_size).filename


def zip_record_cut_short(tmp: Path, converted: Path):
    big = _largest_record(POSE_CKPT)
    src = _rezip(POSE_CKPT, tmp / "short.pth", lambda n, d: d[:-16] if n == big else d)
    return ["convert", str(src), "--out", str(tmp / "out")], r"short\.pth is corrupt: a tensor record's size"


def zip_bytes_flipped_in_tensor_data(tmp: Path, converted: Path):
    data = bytearray(POSE_CKPT.read_bytes())
    with zipfile.ZipFile(POSE_CKPT) as zf:
        info = zf.getinfo(_largest_record(POSE_CKPT))
    data[info.header_offset + 30 + len(info.filename) + 200] ^= (
        0x40  # inside the record (no local extra field)
    )
    (tmp / "flipped.pth").write_bytes(bytes(data))
    return ["convert", str(tmp / "flipped.pth"), "--out", str(tmp / "out")], r"fails the zip's CRC-32 check"


def a_png_image(tmp: Path, converted: Path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp / "street.png")
    args = ["convert", str(tmp / "street.png"), "--out", str(tmp / "out")]
    return (
        args,
        r"street\.png is not a PyTorch checkpoint \(a PNG image\); expected a file written by torch\.save",
    )


def eight_gigabytes_of_zeros(tmp: Path, converted: Path):
    with open(tmp / "zeros.pth", "wb") as f:
        f.truncate(8 * 2**30)  # sparse: no disk space, and refused from its first bytes (never hashed)
    args = ["convert", str(tmp / "zeros.pth"), "--out", str(tmp / "out")]
    return args, r"zeros\.pth is not a PyTorch checkpoint \(all zero bytes at its start"


def a_git_lfs_pointer(tmp: Path, converted: Path):
    (tmp / "lfs.pth").write_text("version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 12\n")
    return ["convert", str(tmp / "lfs.pth"), "--out", str(tmp / "out")], r"a Git LFS pointer.*git lfs pull"


# ------------------------------------------------------------------- weights, metadata and flags (4, 5, 6, 8)
def _pose_sd() -> dict[str, torch.Tensor]:
    return dict(torch.load(POSE_CKPT, map_location="cpu", weights_only=True))


def _save(path: Path, obj) -> Path:
    torch.save(obj, path)
    return path


def _convert(path: Path, tmp: Path, *more: str) -> list[str]:
    return ["convert", str(path), "--out", str(tmp / "out"), *more]


def integer_weights(tmp: Path, converted: Path):
    sd = _pose_sd()
    sd["conv1.weight"] = sd["conv1.weight"].round().to(torch.int64)
    args = _convert(_save(tmp / "int.pth", sd), tmp)
    return (
        args,
        r"conv1\.weight holds int64 values, but weights must be floating point.*original floating-point",
    )


def complex_weights(tmp: Path, converted: Path):
    sd = _pose_sd()
    sd["stage2.0.branches.0.0.conv1.weight"] = sd["stage2.0.branches.0.0.conv1.weight"].to(torch.complex64)
    return _convert(
        _save(tmp / "complex.pth", sd), tmp
    ), r"holds complex64 values, but weights must be floating"


def a_sparse_tensor(tmp: Path, converted: Path):
    sd = _pose_sd()
    sd["conv1.weight"] = sd["conv1.weight"].to_sparse()
    return _convert(_save(tmp / "sparse.pth", sd), tmp), r"'conv1\.weight' is a sparse_coo tensor.*to_dense"


def safetensors_header_longer_than_the_file(tmp: Path, converted: Path):
    (tmp / "big.safetensors").write_bytes((2**40).to_bytes(8, "little") + b'{"a": 1}')
    return _convert(tmp / "big.safetensors", tmp), r"big\.safetensors is a damaged safetensors file"


def keypoint_names_with_mixed_keys(tmp: Path, converted: Path):
    meta = {"dataset_meta": {"keypoint_id2name": {0: "nose", "left": "eye"}}}
    args = _convert(_save(tmp / "meta.pth", {"meta": meta, "state_dict": _pose_sd()}), tmp)
    return args, r"the file's meta\['dataset_meta'\]\['keypoint_id2name'\] is unusable .*pass --dataset"


def flip_indices_not_numbers(tmp: Path, converted: Path):
    meta = {"dataset_meta": {"flip_indices": ["a", "b"]}}
    args = _convert(_save(tmp / "meta.pth", {"meta": meta, "state_dict": _pose_sd()}), tmp)
    return args, r"meta\['dataset_meta'\]\['flip_indices'\] is unusable \(ValueError"


def skeleton_of_triples(tmp: Path, converted: Path):
    meta = {"dataset_meta": {"skeleton_links": [[0, 1, 2]]}}
    args = _convert(_save(tmp / "meta.pth", {"meta": meta, "state_dict": _pose_sd()}), tmp)
    return args, r"meta\['dataset_meta'\]\['skeleton_links'\] is unusable"


def class_names_as_an_int(tmp: Path, converted: Path):
    sd = torch.load(OFFICIAL / "tiny" / "seg" / "checkpoint.pth", map_location="cpu", weights_only=True)
    args = _convert(_save(tmp / "seg.pth", {"meta": {"CLASSES": 19}, "state_dict": sd}), tmp)
    return (
        args,
        r"the file's meta\['CLASSES'\] is unusable \(TypeError: a list of class names was expected, got int",
    )


def codec_without_pixels(tmp: Path, converted: Path):
    cfg = "codec = dict(type='MSRAHeatmap', input_size=(0, 0), heatmap_size=(0, 0), sigma=2)"
    args = _convert(_save(tmp / "meta.pth", {"meta": {"cfg": cfg}, "state_dict": _pose_sd()}), tmp)
    return args, r"meta\['cfg'\] codec input_size is unusable .*outside 1\.\.16384"


def arch_json_with_wrong_types(tmp: Path, converted: Path):
    arch = '{"stage2": 5, "stage3": {}, "stage4": {}}'
    return _convert(
        POSE_CKPT, tmp, "--arch", arch
    ), r"--arch is not a valid HRNet config: HRNet config field stage2"


def arch_binary_file(tmp: Path, converted: Path):
    (tmp / "arch.json").write_bytes(b"\x80\x02\xff\xfe")
    args = _convert(POSE_CKPT, tmp, "--arch", str(tmp / "arch.json"))
    return args, r"--arch file .*arch\.json is not JSON text \(binary data\)"


def arch_folder(tmp: Path, converted: Path):
    (tmp / "archdir").mkdir()
    return _convert(POSE_CKPT, tmp, "--arch", str(tmp / "archdir")), r"--arch .*archdir is a folder"


def input_size_beyond_reason(tmp: Path, converted: Path):
    args = _convert(POSE_CKPT, tmp, "--input-size", "1000000000", "1000000000")
    return args, r"--input-size must be two integers from 1 to 16384"


def symlink_loop(tmp: Path, converted: Path):
    (tmp / "a.pth").symlink_to(tmp / "b.pth")
    (tmp / "b.pth").symlink_to(tmp / "a.pth")
    return _convert(tmp / "a.pth", tmp), r"a\.pth is a loop of symbolic links"


def dangling_symlink_input(tmp: Path, converted: Path):
    (tmp / "link.pth").symlink_to(tmp / "gone.pth")
    return _convert(tmp / "link.pth", tmp), r"link\.pth is a symbolic link to a missing file"


def a_named_pipe(tmp: Path, converted: Path):
    os.mkfifo(tmp / "pipe.pth")  # reading it would wait forever
    return _convert(tmp / "pipe.pth", tmp), r"pipe\.pth is not a regular file"


def newline_in_the_file_name(tmp: Path, converted: Path):
    (tmp / "bad\nname.pth").write_bytes(b"<html>")
    return _convert(tmp / "bad\nname.pth", tmp), r"bad\\nname\.pth is not a PyTorch checkpoint"


def spliced_widths(tmp: Path, converted: Path):
    sd = _pose_sd()
    arch = tiny_config().to_dict()
    for stage in ("stage2", "stage3", "stage4"):
        arch[stage]["num_channels"] = [2 * c for c in arch[stage]["num_channels"]]
    w8 = timm.create_model("hrnet_w18", arch=arch, head="none", multi_scale_last=False).state_dict()
    sd.update({k: v for k, v in w8.items() if k.startswith("stage3.1.") and k in sd})
    args = _convert(_save(tmp / "spliced.pth", sd), tmp)
    return args, r"the tensors do not form one network: .*spliced from checkpoints of different widths"


def a_dropped_module(tmp: Path, converted: Path):
    sd = {k: v for k, v in _pose_sd().items() if not k.startswith("stage3.0.")}
    args = _convert(_save(tmp / "dropped.pth", sd), tmp)
    return (
        args,
        r"stage3 modules are numbered \[1\]: number\(s\) \[0\] are missing, so the file lacks whole modules",
    )


def a_last_module_dropped_that_the_files_config_counts(tmp: Path, converted: Path):
    sd = {k: v for k, v in _pose_sd().items() if not k.startswith("stage4.1.")}  # the numbering stays 0..n-1
    cfg = "model = dict(backbone=dict(type='HRNet', extra=dict(stage4=dict(num_modules=2, num_branches=4))))"
    args = _convert(_save(tmp / "short.pth", {"meta": {"cfg": cfg}, "state_dict": sd}), tmp)
    return args, r"meta\['cfg'\] gives stage 4 2 module\(s\) but its tensors hold 1: a module is missing"


def repo_id_with_code(tmp: Path, converted: Path):
    args = _convert(POSE_CKPT, tmp, "--repo-id", 'org/m", pretrained=True)\nimport os; os.system("id")#')
    return args, r"invalid --repo-id .*give ORG/NAME"


def repo_id_with_three_parts(tmp: Path, converted: Path):
    return _convert(POSE_CKPT, tmp, "--repo-id", "a/b/c"), r"invalid --repo-id 'a/b/c'|must be ORG/NAME"


CASES = [
    force_into_the_inputs_folder,
    force_into_the_inputs_folder_by_a_relative_path,
    force_over_a_symlink_to_the_inputs_folder,
    force_over_a_folder_holding_a_symlink_to_the_input,
    force_over_a_folder_of_other_files,
    force_over_a_converted_folder_with_an_extra_file,
    force_over_a_converted_folder_with_a_subfolder,
    force_over_a_folder_with_a_foreign_config,
    force_over_a_folder_with_only_a_readme,
    out_dot_with_force,
    out_empty_with_force,
    out_parent_of_cwd_with_force,
    out_dot_without_force,
    out_dangling_symlink,
    zip_record_cut_short,
    zip_bytes_flipped_in_tensor_data,
    a_png_image,
    eight_gigabytes_of_zeros,
    a_git_lfs_pointer,
    integer_weights,
    complex_weights,
    a_sparse_tensor,
    safetensors_header_longer_than_the_file,
    keypoint_names_with_mixed_keys,
    flip_indices_not_numbers,
    skeleton_of_triples,
    class_names_as_an_int,
    codec_without_pixels,
    arch_json_with_wrong_types,
    arch_binary_file,
    arch_folder,
    input_size_beyond_reason,
    symlink_loop,
    dangling_symlink_input,
    a_named_pipe,
    newline_in_the_file_name,
    spliced_widths,
    a_dropped_module,
    a_last_module_dropped_that_the_files_config_counts,
    repo_id_with_code,
    repo_id_with_three_parts,
]


# ------------------------------------------------------------------------------------ what the checks let pass
def _mapped(path: Path):
    return torch.load(path, map_location="cpu", weights_only=True, mmap=True)


def test_the_tensors_of_a_file_written_by_torch_are_exactly_its_records():
    assert storages_fit_records(_mapped(POSE_CKPT), verify_zip(POSE_CKPT))


def test_a_record_shorter_than_its_tensor_does_not_fit(tmp_path):
    big = _largest_record(POSE_CKPT)
    short = _rezip(POSE_CKPT, tmp_path / "short.pth", lambda n, d: d[:-16] if n == big else d)
    records = verify_zip(short)  # the archive itself is sound: its checksums match the shortened record
    assert not storages_fit_records(_mapped(short), records)


def test_a_repacked_zip_gives_the_same_weights(tmp_path):
    repacked = _rezip(POSE_CKPT, tmp_path / "repacked.pth", lambda name, data: data)  # no 64-byte alignment
    original = read_checkpoint(POSE_CKPT).state_dict
    loaded = read_checkpoint(repacked).state_dict
    assert original.keys() == loaded.keys()
    assert all(torch.equal(original[k], loaded[k]) for k in original)


def test_a_file_of_another_kind_is_refused_before_it_is_hashed(tmp_path, monkeypatch):
    from hrnet_backbones.convert import load

    def no_hashing(*args, **kwargs):
        raise AssertionError("hashed")

    monkeypatch.setattr(load, "sha256_file", no_hashing)
    (tmp_path / "page.pth").write_text("<!DOCTYPE html><html>Not Found</html>")
    with pytest.raises(CheckpointError, match=r"not a PyTorch checkpoint \(HTML or XML text"):
        read_checkpoint(tmp_path / "page.pth")


# ------------------------------------------------------------------------- push of a damaged folder (3, 7)
def _damaged_copy(tmp: Path, converted: Path, edit) -> Path:
    folder = tmp / "model"
    shutil.copytree(converted, folder)
    edit(folder)
    return folder


def _edit_config(change):
    def edit(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))

    return edit


def _truncate_weights(folder: Path) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])


def _other_width(folder: Path) -> None:
    arch = tiny_config().to_dict()
    for stage in ("stage2", "stage3", "stage4"):
        arch[stage]["num_channels"] = [2 * c for c in arch[stage]["num_channels"]]  # W8 instead of W4
    model = timm.create_model("hrnet_w18", arch=arch, head="pose", num_classes=17, multi_scale_last=False)
    save_file(model.state_dict(), str(folder / "model.safetensors"))


def _set_stage2(config):
    config["model_args"]["arch"]["stage2"] = "BASIC"


def _set_num_blocks(config):
    config["model_args"]["arch"]["stage3"]["num_blocks"] = "222"


def _set_num_classes(config):
    config["model_args"]["num_classes"] = "17"


def _drop_model_args(config):
    config["model_args"] = [1]


PUSH_DAMAGE = {
    "truncated_weights": (_truncate_weights, r"model\.safetensors is damaged or not a safetensors file"),
    "empty_weights": (
        lambda f: (f / "model.safetensors").write_bytes(b""),
        r"model\.safetensors is damaged or not a safetensors file",
    ),
    "pickle_as_weights": (
        lambda f: shutil.copyfile(POSE_CKPT, f / "model.safetensors"),
        r"model\.safetensors is damaged or not a safetensors file",
    ),
    "weights_of_another_layout": (_other_width, r"does not fit the hrnet_w18 that config\.json describes"),
    "stage_as_a_string": (
        _edit_config(_set_stage2),
        r"model_args\.arch is not a valid HRNet config.*field stage2 must be a dict",
    ),
    "num_blocks_as_a_string": (_edit_config(_set_num_blocks), r"field stage3\.num_blocks must be a list"),
    "num_classes_as_a_string": (
        _edit_config(_set_num_classes),
        r"field model_args\.num_classes must be a non-negative integer",
    ),
    "model_args_not_an_object": (
        _edit_config(_drop_model_args),
        r"field model_args must be a JSON object, got list",
    ),
    "binary_config": (
        lambda f: (f / "config.json").write_bytes(b"\x80\x02}q\x00."),
        r"config\.json is not text|config\.json is not valid JSON",
    ),
}


def _push_case(name: str):
    edit, message = PUSH_DAMAGE[name]

    def case(tmp: Path, converted: Path):
        folder = _damaged_copy(tmp, converted, edit)
        return ["push", str(folder), "--repo-id", "org/model", "--dry-run"], message

    case.__name__ = f"push_{name}"
    return case


CASES += [_push_case(name) for name in PUSH_DAMAGE]


# --------------------------------------------------- loading a folder whose config.json has wrong types (7)
def _setter(*path, value=None, delete=False):
    """An edit of config.json setting (or deleting) the field at ``path``."""

    def change(config):
        target = config
        for key in path[:-1]:
            target = target[key]
        if delete:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


#: field -> (edit, what the one line must say after "<folder>/config.json: field ")
CONFIG_DAMAGE = {
    "model_args_a_list": (
        _setter("model_args", value=[1]),
        r"model_args must be a JSON object, got list \[1\]",
    ),
    "model_args_null": (_setter("model_args", value=None), r"model_args must be a JSON object, got null"),
    "pretrained_cfg_a_string": (
        _setter("pretrained_cfg", value="coco"),
        r"pretrained_cfg must be a JSON object, got string 'coco'",
    ),
    "architecture_an_int": (_setter("architecture", value=32), r"architecture must be a timm model name"),
    "architecture_missing": (_setter("architecture", delete=True), r"architecture is missing"),
    "architecture_unknown": (
        _setter("architecture", value="hrnet_w7"),
        r"architecture names no registered timm model \('hrnet_w7'",
    ),
    "num_classes_a_string": (
        _setter("num_classes", value="17"),
        r"num_classes must be a non-negative integer",
    ),
    "num_features_a_float": (
        _setter("num_features", value=4.5),
        r"num_features must be a non-negative integer",
    ),
    "label_names_an_int": (
        _setter("label_names", value=3),
        r"label_names must be a list of strings, got integer",
    ),
    "input_size_a_string": (
        _setter("pretrained_cfg", "input_size", value="256x192"),
        r"pretrained_cfg\.input_size must be \[C, H, W\]",
    ),
    "mean_of_two_values": (
        _setter("pretrained_cfg", "mean", value=[0.5, 0.5]),
        r"pretrained_cfg\.mean has 2 values for 3 input channels",
    ),
    "fixed_input_size_true": (
        _setter("pretrained_cfg", "fixed_input_size", value=True),
        r"pretrained_cfg\.fixed_input_size must be false",
    ),
    "keypoint_names_an_int": (
        _setter("pretrained_cfg", "keypoint_names", value=17),
        r"pretrained_cfg\.keypoint_names must be a list of strings",
    ),
    "flip_pairs_of_strings": (
        _setter("pretrained_cfg", "flip_pairs", value=[["1", "2"]]),
        r"pretrained_cfg\.flip_pairs must be a list of \[i, j\] keypoint index pairs",
    ),
    "flip_pair_beyond_the_keypoints": (
        _setter("pretrained_cfg", "flip_pairs", value=[[1, 2], [3, 40]]),
        r"pretrained_cfg\.flip_pairs\[1\] names keypoint 40 of a model with 17",
    ),
    "codec_a_string": (
        _setter("pretrained_cfg", "codec", value="udp"),
        r"pretrained_cfg\.codec must be a JSON object",
    ),
    "codec_sigma_a_string": (
        _setter("pretrained_cfg", "codec", "sigma", value="2"),
        r"pretrained_cfg\.codec\.sigma must be a positive number, got string '2'",
    ),
    "head_an_int": (
        _setter("model_args", "head", value=1),
        r"model_args\.head must be a string, got integer 1",
    ),
    "head_kernel_size_a_string": (
        _setter("model_args", "head_kernel_size", value="1"),
        r"model_args\.head_kernel_size must be a positive integer",
    ),
    "an_unknown_model_arg": (
        _setter("model_args", "img_size", value=[256, 192]),
        r"model_args\.img_size is not an argument of HRNet",
    ),
    "an_hrnet_field_beside_arch_not_a_boolean": (
        _setter("model_args", "multi_scale_last", value="no"),
        r"model_args overrides the HRNet config wrongly \(HRNet config field multi_scale_last must be true or false",
    ),
    "arch_null": (_setter("model_args", "arch", value=None), r"model_args\.arch is not a valid HRNet config"),
    "a_stage_as_a_string": (
        _setter("model_args", "arch", "stage2", value="BASIC"),
        r"model_args\.arch is not a valid HRNet config \(HRNet config field stage2 must be a dict",
    ),
}


def _pose_case(name: str, spec: str = "{folder}"):
    """``pose`` on a copy of the converted folder with the config.json damage ``name``."""
    edit, message = CONFIG_DAMAGE[name]

    def case(tmp: Path, converted: Path):
        folder = _damaged_copy(tmp, converted, _edit_config(edit))
        Image.new("RGB", (32, 32)).save(tmp / "person.png")
        model = spec.format(folder=folder)
        args = [
            "pose",
            str(tmp / "person.png"),
            "--model",
            model,
            "--box",
            "0,0,16,16",
            "--out",
            str(tmp / "out"),
        ]
        return args, rf"{re.escape(str(folder))}/config\.json: field {message}.*; correct it"

    case.__name__ = f"pose_with_config_{name}"
    return case


CASES += [_pose_case(name) for name in CONFIG_DAMAGE]
CASES.append(_pose_case("model_args_a_list", spec="local-dir:{folder}"))


def _export_with_a_wrong_config(tmp: Path, converted: Path):
    folder = _damaged_copy(tmp, converted, _edit_config(CONFIG_DAMAGE["pretrained_cfg_a_string"][0]))
    args = ["export", str(folder), "--out", str(tmp / "model.onnx")]
    return args, r"field pretrained_cfg must be a JSON object"


CASES.append(_export_with_a_wrong_config)


def _info_with_a_wrong_config(tmp: Path, converted: Path):
    folder = _damaged_copy(tmp, converted, _edit_config(CONFIG_DAMAGE["codec_sigma_a_string"][0]))
    return ["info", str(folder)], r"field pretrained_cfg\.codec\.sigma must be a positive number"


CASES.append(_info_with_a_wrong_config)


def test_timm_names_a_truncated_weights_file(converted, tmp_path):
    folder = _damaged_copy(tmp_path, converted, _truncate_weights)
    with pytest.raises(ValueError, match=rf"{folder}/model\.safetensors is truncated or damaged .*convert"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)


def test_timm_names_a_wrongly_typed_config_field(converted, tmp_path):
    folder = _damaged_copy(tmp_path, converted, _edit_config(_set_num_blocks))
    with pytest.raises(ValueError, match=r"field stage3\.num_blocks must be a list of positive integers"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)


#: what timm hands on to this package's entry point: every field below the top level, and the top-level fields
#: it copies into pretrained_cfg (the rest of the top level timm parses itself; the commands check it first)
REACHES_THE_ENTRY_POINT = [
    "num_classes_a_string",
    "label_names_an_int",
    "input_size_a_string",
    "fixed_input_size_true",
    "flip_pair_beyond_the_keypoints",
    "codec_sigma_a_string",
    "head_kernel_size_a_string",
    "an_unknown_model_arg",
    "arch_null",
]


@pytest.mark.parametrize("name", REACHES_THE_ENTRY_POINT)
def test_timm_names_the_wrong_field_and_the_file(name, converted, tmp_path):
    edit, message = CONFIG_DAMAGE[name]
    folder = _damaged_copy(tmp_path, converted, _edit_config(edit))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(folder))}/config\.json: field {message}"):
        timm.create_model(f"local-dir:{folder}", pretrained=True)


def _offline_hub_copy(tmp: Path, converted: Path, damage: str, monkeypatch) -> str:
    """A damaged copy of the converted folder as the offline Hub cache's ``org/pose``; its ``hf-hub:`` name."""
    import huggingface_hub
    from hub_cache import populate_hub_cache

    folder = _damaged_copy(tmp, converted, _edit_config(CONFIG_DAMAGE[damage][0]))
    files = {name: folder / name for name in ("config.json", "model.safetensors")}
    populate_hub_cache(tmp / "hub", "org/pose", files)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return "hf-hub:org/pose"


def test_a_hub_model_names_the_wrong_field_of_its_config(converted, tmp_path, monkeypatch, capsys):
    spec = _offline_hub_copy(tmp_path, converted, "model_args_a_list", monkeypatch)
    Image.new("RGB", (32, 32)).save(tmp_path / "person.png")
    argv = ["pose", str(tmp_path / "person.png"), "--model", spec, "--box", "0,0,16,16"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "config.json of hf-hub:org/pose: field model_args must be a JSON object, got list [1]" in err


def test_timm_names_the_wrong_field_of_a_hub_models_config(converted, tmp_path, monkeypatch):
    spec = _offline_hub_copy(tmp_path, converted, "head_kernel_size_a_string", monkeypatch)
    with pytest.raises(
        ValueError, match=r"^config\.json of hf-hub:org/pose: field model_args\.head_kernel_size"
    ):
        timm.create_model(spec, pretrained=True)


def _snapshot(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it is: a link's target, a file's digest, or 'dir'."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = "-> " + os.readlink(path)
            elif path.is_dir():
                out[rel] = "dir"
            elif not path.is_file():  # a named pipe: reading it would wait for a writer
                out[rel] = "special"
            elif path.stat().st_size > 2**26:  # the sparse 8 GB file: its size and time stand for it
                out[rel] = f"{path.stat().st_size} bytes, {path.stat().st_mtime_ns}"
            else:
                out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("make", CASES, ids=lambda f: f.__name__)
def test_hostile_input_gives_one_line_and_changes_nothing(make, converted, tmp_path, monkeypatch, capsys):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    argv, message = make(tmp_path, converted)
    before = _snapshot(tmp_path)
    rc = main(argv)
    captured = capsys.readouterr()
    err = captured.err
    assert rc == 2, captured.out + err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"hrnet-backbones {argv[0]}: error: "), err
    assert re.search(message, err), err
    assert _snapshot(tmp_path) == before
    assert not (tmp_path / "MARKER").exists()


def test_a_full_disk_while_writing_the_weights_is_one_line(tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    from hrnet_backbones.convert import writer

    def full_disk(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(writer, "save_file", full_disk)
    assert main(["convert", str(POSE_CKPT), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot write model.safetensors: " in err and "No space left" in err
    assert list(tmp_path.iterdir()) == []


def test_non_finite_weights_convert_with_a_warning(tmp_path):
    from hrnet_backbones.convert import convert_state_dict

    sd = dict(torch.load(POSE_CKPT, map_location="cpu", weights_only=True))
    sd["conv1.weight"] = sd["conv1.weight"].clone()
    sd["conv1.weight"][0, 0, 0, 0] = float("nan")
    notes = convert_state_dict(sd).notes
    assert any(n.startswith("warning: 1 tensor(s) hold NaN or infinite values (conv1.weight)") for n in notes)
    assert not any("hold NaN" in n for n in convert_state_dict(_pose_sd()).notes)
