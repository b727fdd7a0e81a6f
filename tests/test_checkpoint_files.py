"""Checkpoint files without training: loading and its refusals, step files, fallback to an older file, pruning."""
from __future__ import annotations

import logging
import os
import pickle
import re
import stat
import zipfile

import pytest
import torch

from gantrain import checkpoint
from gantrain.checkpoint import (CheckpointWriter, atomic_save, load_checkpoint, newest_good, open_run_or_checkpoint, run_folder_of, step_checkpoints)
from gantrain.errors import GantrainError


def state(step: int) -> dict:
    """A minimal checkpoint of today's format."""
    return {"format": checkpoint.FORMAT, "format_version": checkpoint.FORMAT_VERSION, "step": step}


def names(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_load_round_trip_and_refusals(tmp_path):
    good = tmp_path / "good.pt"
    atomic_save({**state(7), "stats": {"x": torch.arange(3)}}, good)
    loaded = load_checkpoint(good)
    assert loaded["step"] == 7 and torch.equal(loaded["stats"]["x"], torch.arange(3))
    with pytest.raises(GantrainError, match=f"checkpoint {tmp_path / 'missing.pt'} does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(GantrainError, match="does not exist"):
        load_checkpoint(tmp_path)  # a folder is not a checkpoint file
    cases = {
        "not_ours.pt": ({"format": "something-else", "format_version": 1}, "is not a gantrain checkpoint"),
        "a_list.pt": ([1, 2, 3], "is not a gantrain checkpoint"),
        "newer.pt": ({**state(1), "format_version": checkpoint.FORMAT_VERSION + 1},
                     f"format version {checkpoint.FORMAT_VERSION + 1}, newer than this gantrain reads"),
        "odd.pt": ({**state(1), "surprise": 1}, r"unexpected entries \['surprise'\]; refusing to load it$"),
        "later.pt": ({**state(1), "surprise": 1, "versions": {"gantrain": "99.0.0"}},
                     r"unexpected entries \['surprise'\]; refusing to load it \(written by gantrain 99.0.0, this is "
                     r"[0-9.]+: pip install -U gantrain\)"),
        "a_format.pt": ({"format": "a-format-sorting-first", "format_version": 1}, "is not a gantrain checkpoint"),
        "no_format.pt": ({"format_version": 1, "step": 1}, "is not a gantrain checkpoint"),
    }
    for name, (content, message) in cases.items():
        torch.save(content, tmp_path / name)
        with pytest.raises(GantrainError, match=message):
            load_checkpoint(tmp_path / name)
    data = good.read_bytes()
    (tmp_path / "half.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(GantrainError, match="is truncated or corrupt"):
        load_checkpoint(tmp_path / "half.pt")
    for name, content in [("empty.pt", b""), ("zeros.pt", bytes(4096)), ("PK.pt", b"PK"), ("text.pt", b"# notes\n"),
                          ("garbage.pt", b"garbage"), ("zip_end.pt", b"PK\x05\x06" + bytes(18))]:
        (tmp_path / name).write_bytes(content)  # not a zip archive, as torch.save writes: some other file
        with pytest.raises(GantrainError, match=f"{re.escape(str(tmp_path / name))} is not a gantrain checkpoint"):
            load_checkpoint(tmp_path / name)


def test_unreadable_checkpoint_is_named(tmp_path, monkeypatch):
    path = tmp_path / "locked.pt"
    atomic_save(state(1), path)
    real_open = open

    def no_read(file, *args, **kwargs):
        if str(file) == str(path):
            raise PermissionError(13, "Permission denied")  # chmod 000 does not stop root, so fake it
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "open", no_read, raising=False)  # the module's open, ahead of the builtin
    with pytest.raises(GantrainError) as caught:
        load_checkpoint(path)
    assert str(caught.value) == f"cannot read checkpoint {path} (Permission denied); check its permissions"


class Payload:
    """An object outside the allow-list: loading it with weights_only=False would run code."""

    def __reduce__(self):
        return (os.getcwd, ())


def test_checkpoint_with_foreign_objects_is_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({**state(1), "stats": Payload()}, evil)
    with pytest.raises(GantrainError, match="refused.*allow-list"):
        load_checkpoint(evil)


def test_step_checkpoints_sorted_by_step_and_run_folder(tmp_path):
    folder = tmp_path / "checkpoints"
    assert step_checkpoints(folder) == []  # no folder yet
    folder.mkdir()
    for name in ("step_00000100.pt", "step_00000020.pt", "step_3.pt", "last.pt", "best.pt", "step_00000020.pt.tmp",
                 "xstep_00000001.pt", "step_00000001.pt.bak"):
        (folder / name).write_bytes(b"")
    assert step_checkpoints(folder) == [(3, folder / "step_3.pt"), (20, folder / "step_00000020.pt"),
                                        (100, folder / "step_00000100.pt")]
    assert run_folder_of(folder / "last.pt") == tmp_path
    assert run_folder_of(tmp_path / "elsewhere" / "model.pt") == tmp_path / "elsewhere"
    assert run_folder_of(tmp_path / "a" / "model.pt") == tmp_path / "a"
    assert run_folder_of(f"{tmp_path}/checkpoints/step_3.pt") == tmp_path  # a path given as a string


def test_newest_good_prefers_last_then_newest_readable_step(tmp_path, caplog):
    assert newest_good(tmp_path) is None  # no checkpoints folder
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert newest_good(tmp_path) is None  # an empty one
    for step in (1, 2, 3):
        atomic_save(state(step), folder / f"step_{step:08d}.pt")
    atomic_save(state(9), folder / "last.pt")
    path, loaded = newest_good(tmp_path)
    assert path == folder / "last.pt" and loaded["step"] == 9
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        (folder / "last.pt").write_bytes(b"garbage")
        (folder / "step_00000003.pt").write_bytes(b"garbage")
        path, loaded = newest_good(tmp_path)
    assert path == folder / "step_00000002.pt" and loaded["step"] == 2
    assert caplog.text.count("skipping unreadable checkpoint") == 2 and "using" in caplog.text and "instead" in caplog.text
    caplog.clear()
    (folder / "last.pt").unlink()  # no last.pt, the newest step file is good: no warning
    atomic_save(state(3), folder / "step_00000003.pt")
    with caplog.at_level(logging.WARNING, logger="gantrain"):
        assert newest_good(tmp_path)[0] == folder / "step_00000003.pt"
    assert caplog.text == ""
    for p in folder.iterdir():
        p.write_bytes(b"garbage")
    with pytest.raises(GantrainError, match=f"no readable checkpoint in {re.escape(str(folder))}: .*step_00000003.pt"):
        newest_good(tmp_path)


def test_open_run_or_checkpoint(tmp_path):
    writer = CheckpointWriter(tmp_path)
    saved = writer.save(state(4), 4)
    path, loaded = open_run_or_checkpoint(tmp_path)
    assert path == tmp_path / "checkpoints" / "last.pt" and loaded["step"] == 4
    path, loaded = open_run_or_checkpoint(saved)
    assert path == saved and loaded["step"] == 4
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GantrainError, match="holds no checkpoint in checkpoints/"):
        open_run_or_checkpoint(empty)


def test_writer_prunes_after_success_and_cleans_stale_temps(tmp_path):
    writer = CheckpointWriter(tmp_path, keep_last=2)
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / ".step_00000005.pt.abc123.tmp").write_bytes(b"left by a killed process")
    (folder / ".last.pt.999.link.tmp").write_bytes(b"left by a killed process")
    for step in (10, 20, 30, 40):
        assert writer.save(state(step), step) == folder / f"step_{step:08d}.pt"
    assert names(folder) == ["last.pt", "step_00000030.pt", "step_00000040.pt"]
    assert load_checkpoint(folder / "last.pt")["step"] == 40
    assert (folder / "last.pt").read_bytes() == (folder / "step_00000040.pt").read_bytes()
    assert not os.path.samefile(folder / "last.pt", folder / "step_00000040.pt")  # a file of its own, not a link
    best = writer.save_named(state(20), "best")
    assert best == folder / "best.pt" and load_checkpoint(best)["step"] == 20
    assert names(folder) == ["best.pt", "last.pt", "step_00000030.pt", "step_00000040.pt"]
    # keep_last=1 keeps just the newest step file; a re-save of the same step keeps that file
    one = CheckpointWriter(tmp_path / "one", keep_last=1)
    one.save(state(1), 1)
    one.save(state(1), 1)
    assert names(tmp_path / "one" / "checkpoints") == ["last.pt", "step_00000001.pt"]
    one.save(state(2), 2)
    assert names(tmp_path / "one" / "checkpoints") == ["last.pt", "step_00000002.pt"]


def test_writer_reports_a_failed_named_save(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path)
    writer.save_named(state(1), "best")
    before = (tmp_path / "checkpoints" / "best.pt").read_bytes()

    def disk_full(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(GantrainError, match="could not write checkpoint .*best.pt .*No space left on device.*free disk"):
        writer.save_named(state(2), "best")
    with pytest.raises(GantrainError, match="could not write checkpoint .*step_00000002.pt .*previous checkpoints are intact"):
        writer.save(state(2), 2)
    assert (tmp_path / "checkpoints" / "best.pt").read_bytes() == before
    assert names(tmp_path / "checkpoints") == ["best.pt"]


def test_error_messages_stay_one_short_line(tmp_path, monkeypatch):
    path = tmp_path / "x.pt"
    atomic_save(state(1), path)
    for raised, expected in [
        (RuntimeError("y" * 500 + "\nsecond line"), "is truncated or corrupt (" + "y" * 160 + "...); use another"),
        (RuntimeError("failed finding central directory. If you are seeing this error, there is a high chance"),
         "is truncated or corrupt (failed finding central directory); use another"),  # its first sentence
        (RuntimeError("word " * 40), "is truncated or corrupt (" + " ".join(["word"] * 32) + "...); use another"),
        (RuntimeError(""), "is truncated or corrupt (RuntimeError); use another"),
        (EOFError("  \n"), "is truncated or corrupt (EOFError); use another"),
        (pickle.UnpicklingError("z" * 300 + "\nmore detail"), "is corrupt (" + "z" * 160 + "...); use another"),
        (pickle.UnpicklingError(""), "is corrupt (unpickling failed); use another"),
    ]:
        def load(*args, exc=raised, **kwargs):
            raise exc

        monkeypatch.setattr(torch, "load", load)
        with pytest.raises(GantrainError) as caught:
            load_checkpoint(path)
        assert str(caught.value) == f"checkpoint {path} {expected} checkpoint"


def test_writer_message_names_the_os_error(tmp_path, monkeypatch):
    writer = CheckpointWriter(tmp_path)
    for exc, shown in [(OSError(28, "No space left on device"), "(No space left on device)"),
                       (OSError("quota exceeded"), "(quota exceeded)")]:
        def save(obj, f, *args, exc=exc, **kwargs):
            raise exc

        monkeypatch.setattr(torch, "save", save)
        with pytest.raises(GantrainError) as caught:
            writer.save(state(1), 1)
        assert f"could not write checkpoint {tmp_path / 'checkpoints' / 'step_00000001.pt'} {shown}; the previous" \
               in str(caught.value)
        with pytest.raises(GantrainError) as caught:
            writer.save_named(state(1), "best")
        assert f"{shown}; free disk space" in str(caught.value)


def test_default_writer_keeps_three_and_keep_zero_keeps_the_newest(tmp_path):
    writer = CheckpointWriter(tmp_path / "a")
    for step in range(1, 6):
        writer.save(state(step), step)
    assert names(tmp_path / "a" / "checkpoints") == ["last.pt", "step_00000003.pt", "step_00000004.pt",
                                                     "step_00000005.pt"]
    zero = CheckpointWriter(tmp_path / "b", keep_last=0)
    zero.save(state(1), 1)
    zero.save(state(3), 3)
    assert names(tmp_path / "b" / "checkpoints") == ["last.pt", "step_00000003.pt"]
    zero.save(state(2), 2)  # written again after a resume from step 2: only what was just written is kept
    assert names(tmp_path / "b" / "checkpoints") == ["last.pt", "step_00000002.pt"]
    named = CheckpointWriter(tmp_path / "new" / "run").save_named(state(5), "best")  # folders made as needed
    assert named == tmp_path / "new" / "run" / "checkpoints" / "best.pt" and load_checkpoint(named)["step"] == 5


def test_saving_survives_a_filesystem_without_directory_fsync_and_undeletable_stale_temps(tmp_path, monkeypatch):
    real_fsync, real_open = os.fsync, os.open

    def fsync(fd):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")  # as some network filesystems answer for a folder
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    writer = CheckpointWriter(tmp_path)
    (tmp_path / "checkpoints" / ".stuck.tmp").mkdir(parents=True)  # a stale "temp" that unlink cannot remove
    writer.save(state(1), 1)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 1

    def no_dir_open(path, flags, *args, **kwargs):
        if os.path.isdir(path):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_dir_open)
    writer.save(state(2), 2)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2
    assert names(tmp_path / "checkpoints") == [".stuck.tmp", "last.pt", "step_00000001.pt", "step_00000002.pt"]

    def failing_file_fsync(fd):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", failing_file_fsync)  # a file that cannot be made durable is an error
    with pytest.raises(GantrainError, match="Input/output error"):
        writer.save(state(3), 3)
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["step"] == 2


JUNK = (b"hello world\n", b"garbage", b"j\xee;\xd3\x8f\xd7\xd4\xce\x14\xba\x17\xe7mQN", b"")  # what a stray write can leave


def test_a_last_pt_that_is_not_a_checkpoint_falls_back_to_a_step_file(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    atomic_save(state(1), folder / "step_00000001.pt")
    for junk in JUNK:
        (folder / "last.pt").write_bytes(junk)
        with pytest.raises(GantrainError) as caught:
            load_checkpoint(folder / "last.pt")
        assert str(folder / "last.pt") in str(caught.value) and "could run code" not in str(caught.value)
        path, loaded = newest_good(tmp_path)
        assert path == folder / "step_00000001.pt" and loaded["step"] == 1


def zip_checkpoint(path, pickle_bytes: bytes) -> None:
    """A file laid out as torch.save writes it (a zip archive), whose pickle is the given bytes."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle_bytes)
        archive.writestr("archive/version", b"3\n")
        archive.writestr("archive/byteorder", b"little")


# Checkpoints whose zip layout is intact but whose content is damaged (as a bit flip on disk leaves them): before
# the fix in load_checkpoint, a KeyError escaped from torch's unpickler (newest_good crashed instead of falling
# back), and junk was reported as "could run code".
def test_damaged_checkpoint_is_named_and_skipped(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    atomic_save(state(1), folder / "step_00000001.pt")
    zip_checkpoint(folder / "last.pt", b"hello world\n")  # 'h' reads a memo entry that does not exist
    with pytest.raises(GantrainError, match="is (truncated or )?corrupt"):
        load_checkpoint(folder / "last.pt")
    path, loaded = newest_good(tmp_path)
    assert path == folder / "step_00000001.pt" and loaded["step"] == 1


def test_damaged_checkpoint_is_called_corrupt_not_unsafe(tmp_path):
    path = tmp_path / "last.pt"
    zip_checkpoint(path, b"\x80\x02cos\nsystem\nq\x00.")  # a real attempt to import os.system: refused
    with pytest.raises(GantrainError, match="refused.*could run code"):
        load_checkpoint(path)
    for junk in (b"garbage", b"\xff\xff\xff"):
        zip_checkpoint(path, junk)
        with pytest.raises(GantrainError, match="is (truncated or )?corrupt") as caught:
            load_checkpoint(path)
        # the message names the cause, not the generic header torch puts first
        assert "Weights only load failed" not in str(caught.value)
