"""last.pt is an independent copy of the newest step file, replaced atomically even when the copy dies midway."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from gantrain import checkpoint
from gantrain.checkpoint import CheckpointWriter, _atomic_copy, atomic_save
from gantrain.errors import GantrainError

PART = 100  # bytes a failing copy gets onto the disk before it dies


def _copies_die_midway(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every byte-copying path of shutil writes PART bytes, then fails as a full disk would."""
    calls: list[str] = []

    def copyfileobj(fsrc, fdst, length=0):
        calls.append("copyfileobj")
        fdst.write(fsrc.read(PART))
        fdst.flush()
        raise OSError(errno.ENOSPC, "No space left on device (raised by the test)")

    real_sendfile = os.sendfile

    def sendfile(out_fd, in_fd, offset, count):  # shutil.copyfile's fast path on Linux
        calls.append("sendfile")
        if offset is not None and offset >= PART:
            raise OSError(errno.ENOSPC, "No space left on device (raised by the test)")
        return real_sendfile(out_fd, in_fd, offset, min(count, PART))

    monkeypatch.setattr(shutil, "copyfileobj", copyfileobj)
    monkeypatch.setattr(os, "sendfile", sendfile)
    return calls


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_copy_that_fails_midway_leaves_last_pt_as_it_was(tmp_path, monkeypatch):
    old, new = tmp_path / "step_1.pt", tmp_path / "step_2.pt"
    atomic_save({"step": 1, "w": torch.zeros(64)}, old)
    atomic_save({"step": 2, "w": torch.ones(4096)}, new)
    last = tmp_path / "last.pt"
    _atomic_copy(old, last)
    before = last.read_bytes()
    assert len(new.read_bytes()) > 4 * PART  # the copy dies well before the end

    calls = _copies_die_midway(monkeypatch)
    with pytest.raises(OSError) as caught:
        _atomic_copy(new, last)
    assert caught.value.errno == errno.ENOSPC
    assert calls, "the copy was not made through shutil"
    assert last.read_bytes() == before, "last.pt was overwritten in place by a copy that failed"
    assert _files(tmp_path) == {"step_1.pt", "step_2.pt", "last.pt"}, "a temporary file was left behind"


def test_last_pt_is_a_file_of_its_own(tmp_path):
    """`cp other.pt checkpoints/last.pt` (a write through the name) never changes the step file."""
    old, new = tmp_path / "step_1.pt", tmp_path / "step_2.pt"
    atomic_save({"step": 1}, old)
    atomic_save({"step": 2, "w": torch.arange(1000)}, new)
    last = tmp_path / "last.pt"
    _atomic_copy(old, last)
    _atomic_copy(new, last)
    assert last.read_bytes() == new.read_bytes() and not os.path.samefile(new, last)
    step_bytes = new.read_bytes()
    shutil.copyfile(old, last)  # what cp does: opens last.pt for writing and truncates it
    assert new.read_bytes() == step_bytes and last.read_bytes() == old.read_bytes()
    assert _files(tmp_path) == {"step_1.pt", "step_2.pt", "last.pt"}


def test_files_follow_the_umask(tmp_path):
    previous = os.umask(0o027)
    try:
        atomic_save({"step": 1}, tmp_path / "a.pt")
        _atomic_copy(tmp_path / "a.pt", tmp_path / "b.pt")
    finally:
        os.umask(previous)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o640


def test_an_exclusive_write_never_replaces_a_file(tmp_path):
    target = tmp_path / "x.bin"
    checkpoint.atomic_write(target, lambda f: f.write(b"first"), exclusive=True)
    with pytest.raises(FileExistsError):
        checkpoint.atomic_write(target, lambda f: f.write(b"second"), exclusive=True)
    assert target.read_bytes() == b"first" and _files(tmp_path) == {"x.bin"}


def test_atomic_save_that_fails_midway_keeps_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "best.pt"
    atomic_save({"step": 1}, path)
    before = path.read_bytes()

    def torch_save_dies(obj, f, *args, **kwargs):
        f.write(b"partial checkpoint bytes")
        raise OSError(errno.ENOSPC, "No space left on device (raised by the test)")

    monkeypatch.setattr(torch, "save", torch_save_dies)
    with pytest.raises(OSError):
        atomic_save({"step": 2}, path)
    assert path.read_bytes() == before
    assert _files(tmp_path) == {"best.pt"}

    def interrupted(f):
        f.write(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # any exception, not only OSError, cleans up
        checkpoint._atomic_write(path, interrupted)
    assert path.read_bytes() == before and _files(tmp_path) == {"best.pt"}


def test_writer_keeps_the_previous_checkpoint_when_the_copy_to_last_pt_fails(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path, keep_last=2)
    first = writer.save({"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION, "step": 1}, 1)
    folder = tmp_path / "checkpoints"
    before = (folder / "last.pt").read_bytes()
    assert before == first.read_bytes()

    _copies_die_midway(monkeypatch)
    big = {"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION, "step": 2,
           "stats": {"w": torch.ones(4096)}}
    with pytest.raises(GantrainError, match="previous checkpoints are intact"):
        writer.save(big, 2)
    assert (folder / "last.pt").read_bytes() == before
    assert not [name for name in _files(folder) if name.endswith(".tmp")]
    assert checkpoint.load_checkpoint(folder / "last.pt")["step"] == 1


def test_failed_write_whose_temp_is_already_gone_reports_the_write_error(tmp_path):
    """Another writer's stale-temp sweep (CheckpointWriter.save removes .*.tmp) may delete our temp first."""
    path = tmp_path / "best.pt"
    atomic_save({"step": 1}, path)
    before = path.read_bytes()

    def write_then_lose_the_temp(f):
        f.write(b"partial")
        for temp in tmp_path.glob(".best.pt.*.tmp"):
            temp.unlink()
        raise OSError(errno.ENOSPC, "No space left on device (raised by the test)")

    with pytest.raises(OSError) as caught:
        checkpoint._atomic_write(path, write_then_lose_the_temp)
    assert caught.value.errno == errno.ENOSPC  # not the FileNotFoundError of the clean-up
    assert path.read_bytes() == before and _files(tmp_path) == {"best.pt"}
