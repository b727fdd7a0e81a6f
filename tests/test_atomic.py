"""last.pt is replaced atomically even where hard links are refused and the copy fallback dies midway."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest
import torch

from gantrain import checkpoint
from gantrain.checkpoint import CheckpointWriter, _atomic_link, atomic_save
from gantrain.errors import GantrainError

PART = 100  # bytes a failing copy gets onto the disk before it dies


def _refuse_links(monkeypatch: pytest.MonkeyPatch) -> None:
    """os.link fails as on a filesystem without hard links (FAT, some network mounts)."""

    def no_link(src, dst, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted (links refused by the test)")

    monkeypatch.setattr(os, "link", no_link)


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


def test_copy_fallback_that_fails_midway_leaves_last_pt_as_it_was(tmp_path, monkeypatch):
    old, new = tmp_path / "step_1.pt", tmp_path / "step_2.pt"
    atomic_save({"step": 1, "w": torch.zeros(64)}, old)
    atomic_save({"step": 2, "w": torch.ones(4096)}, new)
    last = tmp_path / "last.pt"
    _atomic_link(old, last)
    before = last.read_bytes()
    assert len(new.read_bytes()) > 4 * PART  # the copy dies well before the end

    _refuse_links(monkeypatch)
    calls = _copies_die_midway(monkeypatch)
    with pytest.raises(OSError) as caught:
        _atomic_link(new, last)
    assert caught.value.errno == errno.ENOSPC
    assert calls, "the copy fallback was not taken"
    assert last.read_bytes() == before, "last.pt was overwritten in place by a copy that failed"
    assert _files(tmp_path) == {"step_1.pt", "step_2.pt", "last.pt"}, "a temporary file was left behind"


def test_copy_fallback_replaces_last_pt_with_the_new_bytes(tmp_path, monkeypatch):
    old, new = tmp_path / "step_1.pt", tmp_path / "step_2.pt"
    atomic_save({"step": 1}, old)
    atomic_save({"step": 2, "w": torch.arange(1000)}, new)
    last = tmp_path / "last.pt"
    _atomic_link(old, last)
    assert os.path.samefile(old, last)  # where links work, last.pt is the step file itself
    _refuse_links(monkeypatch)
    _atomic_link(new, last)
    assert last.read_bytes() == new.read_bytes() and not os.path.samefile(new, last)
    assert _files(tmp_path) == {"step_1.pt", "step_2.pt", "last.pt"}
    _atomic_link(new, last)  # again, over an identical copy
    assert last.read_bytes() == new.read_bytes()
    assert _files(tmp_path) == {"step_1.pt", "step_2.pt", "last.pt"}


def test_stale_link_temp_of_a_killed_process_is_replaced(tmp_path):
    src, last = tmp_path / "step_1.pt", tmp_path / "last.pt"
    atomic_save({"step": 1}, src)
    stale = tmp_path / f".last.pt.{os.getpid()}.link.tmp"  # what a kill between link and rename leaves
    stale.write_bytes(b"stale")
    _atomic_link(src, last)
    assert os.path.samefile(src, last)
    assert _files(tmp_path) == {"step_1.pt", "last.pt"}


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


def test_writer_keeps_the_previous_checkpoint_when_the_copy_fallback_fails(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path, keep_last=2)
    first = writer.save({"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION, "step": 1}, 1)
    folder = tmp_path / "checkpoints"
    before = (folder / "last.pt").read_bytes()
    assert before == first.read_bytes()

    _refuse_links(monkeypatch)
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
