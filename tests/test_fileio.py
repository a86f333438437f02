"""Atomic writes end with the permissions an ordinary write would have, and never leave a partial file."""

import os
import re
import stat

import pytest

from hrnet_backbones.fileio import (
    atomic_folder,
    atomic_path,
    atomic_write_text,
    check_output_folder,
    make_parent_folders,
    only_these_entries,
    ordinary_mode,
    refuse_existing,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_atomic_write_has_the_umask_permissions(tmp_path, umask_022):
    path = atomic_write_text(tmp_path / "sub" / "a.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "{}"


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.bin") as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_keeps_the_previous_file(tmp_path):
    atomic_write_text(tmp_path / "a.txt", "old")
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("new")
        raise RuntimeError
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_refuse_existing_names_every_existing_path_unless_forced(tmp_path):
    (tmp_path / "a").write_text("x")
    (tmp_path / "b").write_text("x")
    with pytest.raises(FileExistsError, match=r"a, .*b already exist; pass --force"):
        refuse_existing([tmp_path / "a", tmp_path / "b", tmp_path / "c"], force=False)
    refuse_existing([tmp_path / "a"], force=True)
    refuse_existing([tmp_path / "c"], force=False)


def test_atomic_folder_and_its_files_have_the_umask_permissions(tmp_path, umask_022):
    with atomic_folder(tmp_path / "model") as tmp:
        fd = os.open(tmp / "private.bin", os.O_CREAT | os.O_WRONLY, 0o600)  # as safetensors writes
        os.close(fd)
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "model" / "private.bin").stat().st_mode) == 0o644
    assert ordinary_mode() == 0o644 and ordinary_mode(is_dir=True) == 0o755


def test_a_failed_folder_leaves_nothing_and_keeps_the_previous_one(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "model", replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
        raise RuntimeError("disk full")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["old.txt"]


def test_atomic_folder_replaces_only_when_told(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "old.txt").write_text("old")
    with pytest.raises(FileExistsError), atomic_folder(tmp_path / "model") as tmp:
        (tmp / "new.txt").write_text("new")
    with atomic_folder(tmp_path / "model", replace=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    assert [p.name for p in (tmp_path / "model").iterdir()] == ["new.txt"]


def test_an_atomic_folder_is_written_into_an_empty_existing_folder(tmp_path):
    (tmp_path / "out").mkdir()
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.txt"]


def test_check_output_folder_never_lets_force_replace_a_foreign_folder(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "precious.txt").write_text("x")
    monkeypatch.chdir(tmp_path)

    def ours(folder):
        return only_these_entries(folder, ("synth.json",), "synth")

    with pytest.raises(FileExistsError, match="--force"):
        check_output_folder("data", False, command="synth", is_ours=ours)
    with pytest.raises(ValueError, match="precious.txt"):
        check_output_folder("data", True, command="synth", is_ours=ours)
    for cwd in (".", "", str(tmp_path), str(tmp_path.parent)):
        with pytest.raises(ValueError, match="current folder"):
            check_output_folder(cwd, True, command="synth", is_ours=ours)
    with pytest.raises(ValueError, match="holds the input"):
        check_output_folder("data", True, command="synth", is_ours=ours, inputs=["data/precious.txt"])
    (tmp_path / "empty").mkdir()
    check_output_folder("empty", False, command="synth", is_ours=ours)


def test_make_parent_folders_creates_the_missing_ones(tmp_path):
    target = tmp_path / "a" / "b" / "model.onnx"
    make_parent_folders(target)
    assert (tmp_path / "a" / "b").is_dir() and not target.exists()


def test_make_parent_folders_names_the_path_and_the_option_when_it_cannot(tmp_path):
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "sub" / "model.onnx"
    with pytest.raises(
        ValueError, match=rf"cannot create the output folder {re.escape(str(target))}: .*--dest"
    ):
        make_parent_folders(target, flag="--dest")
