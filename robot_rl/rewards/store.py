"""The label store: every answer a labeler gave, in SQLite, keyed by a content hash of (labeler identity, inputs).

- WAL journal with ``synchronous=FULL``: an answer is on disk once ``put`` returns, and a process killed at any
  moment (kill -9) loses nothing already stored; concurrent readers are fine.
- The key (``base.query_key``) covers the labeler, its model, prompt version and parameters, and the query's
  content, so rerunning a labeling job asks only what is not stored yet: no query is paid for twice.
- Each row keeps where its segments lie in which dataset, the answer, and its provenance (JSON).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from robot_rl.rewards.base import Label, SegmentRef

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,
    labeler TEXT NOT NULL,
    identity TEXT NOT NULL,
    dataset TEXT NOT NULL,
    digest TEXT NOT NULL,
    first TEXT NOT NULL,
    second TEXT NOT NULL,
    value REAL,
    provenance TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_dataset ON labels (dataset, labeler);
"""
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class StoredLabel:
    key: str
    labeler: str
    identity: dict[str, Any]
    dataset: str
    digest: str
    """sha256 of the query's inputs when it was asked (to notice a dataset that changed since)."""
    first: SegmentRef
    second: SegmentRef
    label: Label
    created: float


class LabelStoreError(RuntimeError):
    """A label store that cannot be used (corrupt, newer schema, not SQLite); one-line message."""


class LabelStore:
    """Open (or create) the store at ``path``. Use as a context manager.

    ``read_only``: open to read only (``put`` raises). By default a store is opened read-only when it exists but
    the file or its folder is not writable (read-only media, another user's files): SQLite's ``mode=ro``, which
    still reads a WAL left next to it, or, when it cannot (no WAL files and a folder where they cannot be made),
    ``immutable=1``, which is exact there because nothing can be pending.
    """

    def __init__(self, path: str | os.PathLike[str], read_only: bool | None = None) -> None:
        self.path = os.fspath(path)
        if os.path.isdir(self.path):
            raise LabelStoreError(f"{self.path}: is a directory, not a label store")
        parent = os.path.dirname(os.path.abspath(self.path))
        exists = os.path.exists(self.path)
        if read_only is None:
            read_only = exists and not (os.access(self.path, os.W_OK) and os.access(parent, os.W_OK))
        self.read_only = read_only
        if read_only:
            self._db = self._open_read_only()
            return
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as e:
            raise LabelStoreError(f"{self.path}: cannot create the label store's folder ({e.strerror})") from None
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise LabelStoreError(f"{self.path}: label store schema {version} is newer than this robot_rl's "
                                      f"({SCHEMA_VERSION}); upgrade robot_rl")
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as e:
            raise LabelStoreError(f"{self.path}: not a usable label store (SQLite says: {e})") from None

    def _open_read_only(self) -> sqlite3.Connection:
        if not os.path.isfile(self.path):
            raise LabelStoreError(f"{self.path}: no label store to read")
        base = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        error: sqlite3.DatabaseError | None = None
        for uri in (base, base + "&immutable=1"):
            try:
                db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
            except sqlite3.DatabaseError as e:
                error = error or e
                continue
            try:
                version = db.execute("PRAGMA user_version").fetchone()[0]
                db.execute("SELECT COUNT(*) FROM labels").fetchone()
            except sqlite3.DatabaseError as e:
                db.close()
                error = error or e
                continue
            if version > SCHEMA_VERSION:
                db.close()
                raise LabelStoreError(f"{self.path}: label store schema {version} is newer than this robot_rl's "
                                      f"({SCHEMA_VERSION}); upgrade robot_rl")
            return db
        raise LabelStoreError(f"{self.path}: not a readable label store (opened read-only; SQLite says: {error})")

    def __contains__(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM labels WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM labels").fetchone()[0])

    def get(self, key: str) -> Label | None:
        """The stored answer for ``key`` (``None`` if never asked; a stored can't-tell is ``Label(None)``).

        A can't-tell that records a transport ``error`` (the labeler got no answer: server down, deadline) counts
        as never asked, so that a rerun asks it again; every real answer is final."""
        row = self._db.execute("SELECT value, provenance FROM labels WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        label = Label(row[0], json.loads(row[1]))
        return None if _unanswered(label) else label

    def put(self, key: str, label: Label, *, labeler: str, identity: dict[str, Any], dataset: str, digest: str,
            first: SegmentRef, second: SegmentRef) -> bool:
        """Store an answer (durably, before returning). The first answer for a key wins: returns False, changing
        nothing, if ``key`` is already stored (unless what is stored is an unanswered error, see ``get``).

        A can't-tell carrying a transport ``error`` is not an answer and is refused (``ValueError``): the labeler
        got no reply, so the query must be asked again, not recorded (stores written before this rule may still
        hold such rows; ``get`` and ``labels`` skip them)."""
        if self.read_only:
            raise LabelStoreError(f"{self.path}: opened read-only (the file or its folder is not writable); cannot "
                                  f"store the answer for '{key}'")
        if _unanswered(label):
            raise ValueError(f"{self.path}: not storing '{key}': a labeler error is not an answer "
                             f"({label.provenance.get('error')})")
        if self.get(key) is None:
            self._db.execute("DELETE FROM labels WHERE key = ?", (key,))
        cur = self._db.execute(
            "INSERT OR IGNORE INTO labels VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, labeler, json.dumps(identity, sort_keys=True), os.path.abspath(dataset), digest,
             json.dumps(first.to_json()), json.dumps(second.to_json()), label.value,
             json.dumps(label.provenance, default=str), time.time()))
        return cur.rowcount == 1

    def labels(self, dataset: str | None = None, labeler: str | None = None) -> list[StoredLabel]:
        """Stored answers, oldest first; for one dataset (any path naming the same file) and/or labeler. Rows of
        unanswered errors (written by older versions) are left out."""
        sql, args = "SELECT * FROM labels", []
        where = []
        if dataset is not None:
            where.append("dataset = ?")
            args.append(os.path.abspath(dataset))
        if labeler is not None:
            where.append("labeler = ?")
            args.append(labeler)
        if where:
            sql += " WHERE " + " AND ".join(where)
        return [row for row in self._rows(sql + " ORDER BY created, rowid", args) if not _unanswered(row.label)]

    def summary(self) -> list[tuple[str, str, int, int]]:
        """``(dataset, labeler, answers, can't-tell)`` per dataset and labeler."""
        rows = self._db.execute("SELECT dataset, labeler, COUNT(*), SUM(value IS NULL) FROM labels "
                                "GROUP BY dataset, labeler ORDER BY dataset, labeler").fetchall()
        return [(r[0], r[1], int(r[2]), int(r[3])) for r in rows]

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> LabelStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _rows(self, sql: str, args: list[Any]) -> Iterator[StoredLabel]:
        for key, labeler, identity, dataset, digest, first, second, value, provenance, created in \
                self._db.execute(sql, args):
            yield StoredLabel(key, labeler, json.loads(identity), dataset, digest,
                              SegmentRef.from_json(json.loads(first)), SegmentRef.from_json(json.loads(second)),
                              Label(value, json.loads(provenance)), created)


def _unanswered(label: Label) -> bool:
    return label.value is None and "error" in label.provenance


def default_store_path(dataset: str) -> str:
    """Where labels of ``dataset`` go unless told otherwise: next to it, ``<dataset>.labels.sqlite``."""
    return os.fspath(dataset) + ".labels.sqlite"
