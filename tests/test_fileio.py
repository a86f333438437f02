"""Atomic writes end with the permissions an ordinary write would have, and never leave a partial file."""

import os
import stat

import pytest

from hrnet_backbones.fileio import atomic_folder, atomic_path, atomic_write_text, refuse_existing


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


def test_an_atomic_folder_appears_complete_with_the_umask_permissions(tmp_path, umask_022):
    with atomic_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
        assert not (tmp_path / "out").exists()
    assert (tmp_path / "out" / "a.txt").read_text() == "a"
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_atomic_folder_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_folder(tmp_path / "out") as tmp:
        (tmp / "half.txt").write_text("half")
        raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_an_atomic_folder_replaces_a_non_empty_one_only_with_force(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match="--force"), atomic_folder(tmp_path / "out"):
        pass
    with atomic_folder(tmp_path / "out", force=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_atomic_folder_never_replaces_a_file(tmp_path):
    (tmp_path / "out").write_text("a file")
    with pytest.raises(FileExistsError, match="not a folder"), atomic_folder(tmp_path / "out", force=True):
        pass
    assert (tmp_path / "out").read_text() == "a file"
