"""fractalsync_models.atomic_write: permissions follow the umask, no clobbering, no leftovers."""

import os
import stat

import pytest

from fractalsync_models import atomic_write
from fractalsync_models.atomic_write import write_atomic


def _no_space(*args, **kwargs):
    raise OSError(28, "No space left on device")


@pytest.fixture
def restore_umask():
    """The process umask is restored after the test."""
    old = os.umask(0o022)
    yield
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002, 0o000])
def test_mode_follows_the_umask(tmp_path, restore_umask, mask):
    os.umask(mask)
    target = tmp_path / "grid.json"
    write_atomic(target, "{}\n")
    plain = tmp_path / "plain.json"
    plain.write_text("{}\n")  # what a normal file gets
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(target.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    write_atomic(target, b"\x00\x01", overwrite=True)  # a replacement gets it too
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask
    assert target.read_bytes() == b"\x00\x01"


def test_str_is_utf8_and_bytes_are_as_given(tmp_path):
    write_atomic(tmp_path / "a.txt", "tempo 120 ♩\n")
    assert (tmp_path / "a.txt").read_bytes() == "tempo 120 ♩\n".encode()
    write_atomic(tmp_path / "b.bin", bytes(range(256)))
    assert (tmp_path / "b.bin").read_bytes() == bytes(range(256))


def test_no_clobber(tmp_path):
    target = tmp_path / "x.json"
    write_atomic(target, "one", overwrite=False)
    with pytest.raises(FileExistsError, match=r"x\.json exists"):
        write_atomic(target, "two", overwrite=False)
    assert target.read_text() == "one"
    write_atomic(target, "three")
    assert target.read_text() == "three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


def test_no_clobber_without_hard_links(tmp_path, monkeypatch):
    """On file systems without hard links the existence check precedes the rename."""
    def no_link(src, dst):
        raise PermissionError("hard links not supported")

    monkeypatch.setattr(atomic_write.os, "link", no_link)
    target = tmp_path / "x.json"
    write_atomic(target, "one", overwrite=False)
    with pytest.raises(FileExistsError):
        write_atomic(target, "two", overwrite=False)
    assert target.read_text() == "one"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]


@pytest.mark.parametrize("fail_at", ["fsync", "replace"])
def test_failure_leaves_no_temp_file_and_the_old_content(tmp_path, monkeypatch, fail_at):
    target = tmp_path / "model.onnx"
    target.write_bytes(b"old model")
    monkeypatch.setattr(atomic_write.os, fail_at, _no_space)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(target, b"new model" * 1000)
    assert target.read_bytes() == b"old model"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_failure_on_a_new_file_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic_write.os, "fsync", _no_space)
    with pytest.raises(OSError, match="No space left"):
        write_atomic(tmp_path / "new.json", "{}")
    assert list(tmp_path.iterdir()) == []


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "x.json", "{}")
