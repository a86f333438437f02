"""The converter under damaged and hostile input (issue 14): every case ends with exit status 2 and one line on
stderr that names the problem and the fix; no traceback, nothing written or removed anywhere under the test's
folder (the input, the output, the current folder), and no code from a file run.

Each case prepares its files in ``tmp`` (the test runs with ``tmp / "cwd"`` as the current folder) and returns the
command line and a pattern the one line must match.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pytest
from fixture_data import OFFICIAL

from hrnet_backbones.cli import main

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
]


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
