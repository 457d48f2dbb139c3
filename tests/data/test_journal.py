"""The rollback journal at byte level: what a crash leaves is undone exactly; torn records are ignored."""

from __future__ import annotations

import shutil

import pytest

from robot_rl.data import DatasetError
from robot_rl.data.journal import CommittedView, JournaledFile, read_journal, rollback


def crash_copy(path, tmp_path):
    """Copy the file and its journal as a kill -9 would leave them (the writer never gets to clean up)."""
    dst = tmp_path / "crashed.bin"
    shutil.copy(path, dst)
    shutil.copy(f"{path}-journal", f"{dst}-journal")
    return dst


def view_bytes(path) -> bytes:
    view = CommittedView(str(path))
    try:
        size = view.seek(0, 2)
        view.seek(0)
        return view.read(size)
    finally:
        view.close()


def test_uncommitted_changes_are_undone(tmp_path):
    path = tmp_path / "f.bin"
    original = bytes(range(256)) * 4
    path.write_bytes(original)
    jf = JournaledFile(str(path))
    jf.seek(100)
    jf.write(b"X" * 50)  # overwrite committed bytes
    jf.seek(120)
    jf.write(b"Y" * 10)  # again, inside the saved range: saved once
    jf.seek(2000)
    jf.write(b"Z" * 10)  # append past the end
    jf.truncate(900)  # cut committed bytes
    assert path.stat().st_size == 900
    crashed = crash_copy(path, tmp_path)
    journal = read_journal(str(crashed))
    assert journal is not None and journal.size == len(original) and len(journal.records) == 2
    assert CommittedView(str(crashed)).interrupted
    assert view_bytes(crashed) == original  # readers see the committed state without changing the file
    assert crashed.stat().st_size == 900
    with open(crashed, "r+b") as f:
        assert rollback(str(crashed), f.fileno())
        assert rollback(str(crashed), f.fileno()) is False  # idempotent: the journal is now empty
    assert crashed.read_bytes() == original
    jf.close()


def test_commit_and_torn_tail(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"a" * 100)
    jf = JournaledFile(str(path))
    jf.seek(10)
    jf.write(b"b" * 10)
    jf.commit()  # the new bytes are now the committed state
    assert read_journal(str(path)) is None
    jf.seek(0)
    jf.write(b"c" * 5)
    jf.seek(50)
    jf.write(b"d" * 5)
    crashed = crash_copy(path, tmp_path)
    with open(f"{crashed}-journal", "r+b") as j:  # tear the last record, as if killed while writing it
        j.truncate(j.seek(0, 2) - 3)
    with open(crashed, "r+b") as f:
        assert rollback(str(crashed), f.fileno())
    # the first change is undone; the torn record's write "never happened", so its range stays as on disk
    assert crashed.read_bytes() == b"a" * 10 + b"b" * 10 + b"a" * 30 + b"d" * 5 + b"a" * 45
    jf.close()
    assert not (tmp_path / "f.bin-journal").exists()
    assert path.read_bytes() == b"c" * 5 + b"a" * 5 + b"b" * 10 + b"a" * 30 + b"d" * 5 + b"a" * 45


def test_locks(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 10)
    jf = JournaledFile(str(path))
    with pytest.raises(DatasetError, match="locked"):
        JournaledFile(str(path))
    with pytest.raises(DatasetError, match="locked"):
        CommittedView(str(path))
    jf.close()
    view = CommittedView(str(path))
    assert not view.interrupted
    with pytest.raises(DatasetError, match="locked"):
        JournaledFile(str(path))
    view.close()
    JournaledFile(str(path)).close()
