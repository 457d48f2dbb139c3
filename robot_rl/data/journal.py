"""A rollback journal that makes each commit to an HDF5 file atomic when the writer is killed.

Why: HDF5 updates metadata in place, one write per dirty node, in address order. A writer killed between two of
those writes leaves a file whose groups point at nodes not yet written (measured by killing a writer before each of
its writes: a ``/data`` B-tree node split during a commit, or a deletion, left files that would not open, or lost
``/data``). Flushing after each episode narrows that window; it does not close it.

How: the writer hands h5py a ``JournaledFile`` (h5py's ``fileobj`` driver). Before it overwrites or truncates any
byte that was in the file at the last commit, it appends the old bytes to ``<file>-journal``. ``commit()`` empties
the journal: that one ``ftruncate`` is the commit point. After a crash the journal still holds the old bytes:
``rollback()`` writes them back and cuts the file to its committed size (what ``DatasetWriter(resume=True)`` does),
and ``CommittedView`` shows a reader the same committed state without changing the file (what ``Dataset`` does).

Journal format (little-endian): header ``b"RRLJ"``, committed size (u64), crc32 of those 12 bytes (u32); then per
saved range ``b"REC "``, offset (u64), length (u64), crc32 of the data (u32), data. A torn last record is ignored:
the write it guards had not started.
"""

from __future__ import annotations

import fcntl
import os
import struct
import zlib
from dataclasses import dataclass, field

from robot_rl.data.errors import DatasetError

JOURNAL_SUFFIX = "-journal"
_HEADER = struct.Struct("<4sQI")
_RECORD = struct.Struct("<4sQQI")
_HEADER_MAGIC = b"RRLJ"
_RECORD_MAGIC = b"REC "


def journal_path(path: str) -> str:
    return path + JOURNAL_SUFFIX


@dataclass
class Journal:
    """A parsed journal: the committed size, and the committed bytes of every range changed since."""

    size: int
    records: list[tuple[int, bytes]] = field(default_factory=list)


def read_journal(path: str) -> Journal | None:
    """The journal next to ``path``; ``None`` if there is none (or it has no valid header)."""
    try:
        with open(journal_path(path), "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None
    if len(raw) < _HEADER.size:
        return None
    magic, size, crc = _HEADER.unpack_from(raw)
    if magic != _HEADER_MAGIC or crc != zlib.crc32(raw[:12]):
        return None
    journal = Journal(size)
    at = _HEADER.size
    while at + _RECORD.size <= len(raw):
        magic, offset, length, crc = _RECORD.unpack_from(raw, at)
        data = raw[at + _RECORD.size: at + _RECORD.size + length]
        if magic != _RECORD_MAGIC or len(data) != length or zlib.crc32(data) != crc:
            break  # torn tail: its write never happened
        journal.records.append((offset, data))
        at += _RECORD.size + length
    return journal


def rollback(path: str, fd: int) -> bool:
    """Restore ``path`` (open as ``fd``, locked) to its last commit if a journal says a commit was interrupted:
    put back the saved bytes and cut off what the commit appended.

    Returns True if committed bytes were restored. Idempotent: a rollback killed half-way is simply redone.
    """
    journal = read_journal(path)
    if journal is None:
        return False
    for offset, data in journal.records:
        _write_all(fd, data, offset)
    os.ftruncate(fd, journal.size)  # drops whatever the interrupted commit appended
    os.fsync(fd)
    with open(journal_path(path), "r+b") as j:
        j.truncate(0)
        os.fsync(j.fileno())
    return bool(journal.records)


def fsync_directory(path: str) -> None:
    """Make the names in ``path``'s directory (a rename, a new file) survive power loss."""
    fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _lock(fd: int, path: str, exclusive: bool) -> None:
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DatasetError(f"{path}: file is locked (is a writer still running on it?)") from None


def _write_all(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n


def _read_exact(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``, zero-filled past the end of the file (as HDF5's own driver does)."""
    data = os.pread(fd, size, offset)
    return data if len(data) == size else data + bytes(size - len(data))


class JournaledFile:
    """A read-write file object for ``h5py.File(obj, "r+")`` that journals every change to committed bytes.

    Opening takes an exclusive ``flock`` on the file (HDF5's own readers then see it locked) and rolls back an
    interrupted commit. ``durable=True`` adds ``fsync`` so that commits also survive power loss.
    """

    def __init__(self, path: str, durable: bool = False) -> None:
        self.path = path
        self.durable = durable
        fd = os.open(path, os.O_RDWR)
        _lock(fd, path, exclusive=True)
        try:
            self.rolled_back = rollback(path, fd)
            self._jfd = os.open(journal_path(path), os.O_RDWR | os.O_CREAT, 0o644)
            if durable:
                fsync_directory(path)  # the journal's name must survive power loss too
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(self._jfd, 0)
        self._fd = fd
        self._pos = 0
        self._committed = os.fstat(fd).st_size
        self._journal_size = 0
        self._saved: list[tuple[int, int]] = []
        """Ranges [start, stop) of committed bytes already in the journal in this transaction."""

    # -- the file protocol h5py's fileobj driver uses --------------------------------------------------------

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self._pos = offset
        elif whence == os.SEEK_CUR:
            self._pos += offset
        else:
            self._pos = os.fstat(self._fd).st_size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = max(os.fstat(self._fd).st_size - self._pos, 0)
        data = _read_exact(self._fd, size, self._pos)
        self._pos += size
        return data

    def write(self, data: bytes | bytearray | memoryview) -> int:
        n = len(data)
        self._begin()
        self._save(self._pos, self._pos + n)
        _write_all(self._fd, data, self._pos)
        self._pos += n
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self._pos if size is None else size
        self._begin()
        self._save(size, self._committed)
        os.ftruncate(self._fd, size)
        return size

    def flush(self) -> None:
        """Writes go straight to the OS (no buffer); ``commit`` is what makes them count."""

    # -- transactions ----------------------------------------------------------------------------------------

    def commit(self) -> None:
        """Make everything written so far the committed state (call after ``h5py.File.flush()``)."""
        if self.durable:
            os.fsync(self._fd)
        if self._journal_size:
            os.ftruncate(self._jfd, 0)  # the commit point
            if self.durable:
                os.fsync(self._jfd)
        self._journal_size = 0
        self._saved = []
        self._committed = os.fstat(self._fd).st_size

    def close(self) -> None:
        """Commit, remove the (empty) journal, release the lock."""
        if self._fd < 0:
            return
        self.commit()
        os.close(self._jfd)
        os.unlink(journal_path(self.path))
        os.close(self._fd)
        self._fd = -1

    def _begin(self) -> None:
        """Start a transaction at its first change: the journal header records the committed size, so that a
        rollback also cuts off what an interrupted commit appended."""
        if self._journal_size == 0:
            head = struct.pack("<4sQ", _HEADER_MAGIC, self._committed)
            self._append(head + struct.pack("<I", zlib.crc32(head)))

    def _save(self, start: int, stop: int) -> None:
        """Append the committed bytes in [start, stop) not yet saved in this transaction to the journal."""
        stop = min(stop, self._committed)
        if start >= stop:
            return
        missing = [(start, stop)]
        for a, b in self._saved:
            missing = [piece for s, e in missing for piece in ((s, min(e, a)), (max(s, b), e)) if piece[0] < piece[1]]
        records = []
        for s, e in missing:
            old = _read_exact(self._fd, e - s, s)
            records.append(_RECORD.pack(_RECORD_MAGIC, s, e - s, zlib.crc32(old)) + old)
            self._saved.append((s, e))
        if records:
            self._append(b"".join(records))

    def _append(self, blob: bytes) -> None:
        _write_all(self._jfd, blob, self._journal_size)  # always before the data write it guards
        self._journal_size += len(blob)
        if self.durable:
            os.fsync(self._jfd)


class CommittedView:
    """A read-only file object for ``h5py.File(obj, "r")`` that shows the last committed state of a file whose
    writer was killed mid-commit (the file's bytes, with the journal's saved bytes over them), changing nothing.

    Opening takes a shared ``flock`` (``DatasetError`` if a writer holds the file) and keeps it until ``close()``,
    so that no writer can start meanwhile; ``interrupted`` says whether a commit was left unfinished.
    """

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        _lock(fd, path, exclusive=False)
        journal = read_journal(path)  # read under the lock: no writer can change it now
        self.interrupted = journal is not None and bool(journal.records)
        self._fd = fd
        self._size = journal.size if journal is not None and self.interrupted else os.fstat(fd).st_size
        self._records = journal.records if journal is not None else []
        self._pos = 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos}.get(whence, self._size)
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        start = self._pos
        size = max(self._size - start, 0) if size < 0 else size
        stop = start + size
        data = bytearray(_read_exact(self._fd, size, start))
        for offset, old in self._records:
            a, b = max(start, offset), min(stop, offset + len(old))
            if a < b:
                data[a - start: b - start] = old[a - offset: b - offset]
        if stop > self._size:  # bytes the interrupted commit appended are not part of the committed file
            data[max(self._size - start, 0):] = bytes(stop - max(self._size, start))
        self._pos = stop
        return bytes(data)

    def write(self, data: bytes) -> int:
        raise OSError("read-only view of a dataset file")

    def truncate(self, size: int | None = None) -> int:
        raise OSError("read-only view of a dataset file")

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
