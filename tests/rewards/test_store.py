from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from robot_rl.data import Dataset
from robot_rl.rewards import FIRST, SECOND, Label, Query, SegmentRef
from robot_rl.rewards.labelers.scripted import ScriptedTeacher
from robot_rl.rewards.labeling import label_queries
from robot_rl.rewards.pairs import make_queries, sample_pairs
from robot_rl.rewards.store import LabelStore, LabelStoreError


def test_put_get_first_answer_wins_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "labels.sqlite"
    a, b = SegmentRef("demo_0", 0, 5), SegmentRef("demo_1", 3, 5)
    d = str(tmp_path / "d.h5")
    with LabelStore(path) as store:
        assert store.get("k1") is None
        assert store.put("k1", Label(SECOND, {"why": "x"}), labeler="t", identity={"labeler": "t"}, dataset=d,
                         digest="d1", first=a, second=b)
        assert not store.put("k1", Label(FIRST), labeler="t", identity={}, dataset=d, digest="d1", first=a,
                             second=b)
        store.put("k2", Label(None, {"reason": "skip"}), labeler="t", identity={}, dataset=d, digest="d2",
                  first=b, second=a)
    with LabelStore(path) as store:
        assert len(store) == 2 and "k1" in store
        assert store.get("k1") == Label(SECOND, {"why": "x"})
        assert store.get("k2") == Label(None, {"reason": "skip"})
        rows = store.labels(dataset=str(tmp_path / ".." / tmp_path.name / "d.h5"))  # any path to the same file
        assert [r.key for r in rows] == ["k1", "k2"] and rows[0].first == a and rows[0].second == b
        assert store.summary() == [(str(tmp_path / "d.h5"), "t", 2, 1)]


def test_a_transport_error_is_asked_again_but_a_real_answer_is_final(tmp_path: Path) -> None:
    a, b = SegmentRef("demo_0", 0, 1), SegmentRef("demo_1", 0, 1)
    meta = {"labeler": "vlm", "identity": {}, "dataset": "d.h5", "digest": "x", "first": a, "second": b}
    with LabelStore(tmp_path / "l.sqlite") as store:
        with pytest.raises(ValueError, match="a labeler error is not an answer"):
            store.put("k", Label(None, {"error": "LLMTimeoutError: deadline"}), **meta)
        assert len(store) == 0
        store._db.execute("INSERT INTO labels VALUES ('k', 'vlm', '{}', 'd.h5', 'x', ?, ?, NULL, ?, 0)",
                          (json.dumps(a.to_json()), json.dumps(b.to_json()),
                           json.dumps({"error": "LLMTimeoutError: deadline"})))  # as older versions stored it
        assert store.get("k") is None and store.labels() == []  # no answer was given: ask again
        assert store.put("k", Label(FIRST, {"raw": "Answer: 0"}), **meta)
        assert store.get("k") == Label(FIRST, {"raw": "Answer: 0"}) and len(store) == 1
        store.put("u", Label(None, {"reason": "unparseable"}), **meta)
        assert store.get("u") == Label(None, {"reason": "unparseable"})  # an answer, if not a useful one


def test_a_file_that_is_not_a_store_gives_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(os.urandom(4096))
    with pytest.raises(LabelStoreError, match="not a usable label store") as e:
        LabelStore(bad)
    assert "\n" not in str(e.value)


class _Counting:
    """A labeler that counts what it was asked and can die after k answers."""

    name = "counting"
    uses_images = False

    def __init__(self, fail_after: int | None = None) -> None:
        self.asked: list[Query] = []
        self.fail_after = fail_after

    def identity(self) -> dict[str, Any]:
        return {"labeler": self.name}

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        for i, q in enumerate(queries):
            if self.fail_after is not None and len(self.asked) >= self.fail_after:
                raise ConnectionError("labeler went away")
            self.asked.append(q)
            yield i, Label(SECOND if q.second.true_rewards.sum() > q.first.true_rewards.sum() else FIRST)


def test_rerun_asks_only_what_is_not_stored(reach_dataset: Path, tmp_path: Path) -> None:
    store = LabelStore(tmp_path / "l.sqlite")
    with Dataset(reach_dataset) as ds:
        queries = make_queries(ds, sample_pairs(ds, 30, 5, seed=0))
    broken = _Counting(fail_after=12)
    with pytest.raises(ConnectionError):
        label_queries(queries, broken, store, str(reach_dataset))
    assert len(store) == 12
    labeler = _Counting()
    result = label_queries(queries + queries[:5], labeler, store, str(reach_dataset))  # duplicates asked once
    assert len(labeler.asked) == 18 and result.asked == 18 and result.reused == 12
    assert len(result.labels) == 35 and result.labels[30:] == result.labels[:5]
    again = _Counting()
    assert label_queries(queries, again, store, str(reach_dataset)).asked == 0 and not again.asked


_KILLED_JOB = """
import sys, time
from robot_rl.data import Dataset
from robot_rl.rewards.labeling import label_queries
from robot_rl.rewards.pairs import make_queries, sample_pairs
from robot_rl.rewards.labelers.scripted import ScriptedTeacher
from robot_rl.rewards.store import LabelStore

class Slow(ScriptedTeacher):
    def label(self, queries):
        for i, q in enumerate(queries):
            time.sleep(0.01)
            yield i, self.answer(q)
        time.sleep(60)

with Dataset(sys.argv[1]) as ds:
    queries = make_queries(ds, sample_pairs(ds, 400, 5, seed=0))
label_queries(queries, Slow(), LabelStore(sys.argv[2]), sys.argv[1], progress=lambda n, t, l: print(n, flush=True))
"""


def test_kill_9_mid_labeling_loses_nothing_and_resume_asks_the_rest_once(reach_dataset: Path, tmp_path: Path
                                                                         ) -> None:
    path = tmp_path / "labels.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_JOB, str(reach_dataset), str(path)], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    seen = 0
    deadline = time.monotonic() + 60
    while seen < 60 and time.monotonic() < deadline:
        seen = int(proc.stdout.readline() or 0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    assert seen >= 60
    with LabelStore(path) as store:
        stored = len(store)
        assert stored >= seen  # every answer reported was on disk
        with Dataset(reach_dataset) as ds:
            queries = make_queries(ds, sample_pairs(ds, 400, 5, seed=0))
        labeler = _Counting()
        labeler.name = "scripted"
        teacher = ScriptedTeacher()
        labeler.identity = teacher.identity  # type: ignore[method-assign]  # same keys as the killed job
        result = label_queries(queries, labeler, store, str(reach_dataset))
        assert result.reused == stored and result.asked == len({*map(id, labeler.asked)})
        assert result.asked + result.reused == len(store) == len({q.digest(False) for q in queries})
        for r, q in zip(store.labels()[:stored], queries, strict=False):
            answer = teacher.answer(q)  # stored with the task sentence it was asked for
            assert r.label == Label(answer.value, {**answer.provenance, "task_text": q.task_text})


_READ_STORE = """
import sys
from robot_rl.rewards.store import LabelStore, LabelStoreError
with LabelStore(sys.argv[1]) as store:
    assert store.read_only
    print(len(store), [r.label.value for r in store.labels()])
    try:
        store.put("new", Label(1.0), labeler="t", identity={}, dataset="d.h5", digest="x", first=a, second=a)
    except LabelStoreError as e:
        print("refused:", e)
"""


def _fill(store: LabelStore, n: int) -> None:
    a = SegmentRef("demo_0", 0, 1)
    for i in range(n):
        store.put(f"k{i}", Label(float(i % 2)), labeler="t", identity={}, dataset="d.h5", digest="x", first=a,
                  second=a)


def test_read_only_store_reads_and_refuses_writes(tmp_path: Path) -> None:
    path = tmp_path / "l.sqlite"
    with LabelStore(path) as store:
        _fill(store, 3)
    with LabelStore(path, read_only=True) as store:
        assert len(store) == 3 and store.get("k1") == Label(SECOND)
        with pytest.raises(LabelStoreError, match="opened read-only"):
            _fill(store, 1)
    with pytest.raises(LabelStoreError, match="no label store to read"):
        LabelStore(tmp_path / "absent.sqlite", read_only=True)


@pytest.mark.skipif(shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"]).returncode != 0,
                    reason="needs user namespaces (unshare -rm) to mount a folder read-only")
def test_store_on_read_only_media_opens_to_read(tmp_path: Path) -> None:
    """Both a cleanly closed store and one whose writer is still open (answers only in its WAL) on a read-only
    bind mount: opened read-only by itself, every answer read, writes refused in one line."""
    media = tmp_path / "media"
    media.mkdir()
    with LabelStore(media / "closed.sqlite") as store:
        _fill(store, 4)
    live = LabelStore(media / "live.sqlite")
    _fill(live, 5)  # still open: the answers sit in live.sqlite-wal
    assert (media / "live.sqlite-wal").stat().st_size > 0
    script = ("from robot_rl.rewards.base import Label, SegmentRef; a = SegmentRef('demo_0', 0, 1)\n"
              + _READ_STORE)
    try:
        for name, count in (("closed.sqlite", 4), ("live.sqlite", 5)):
            cmd = f'mount --bind -o ro "{media}" "{media}" && exec "{sys.executable}" -c "$0" "$1"'
            out = subprocess.run(["unshare", "-rm", "sh", "-c", cmd, script, str(media / name)],
                                 capture_output=True, text=True, timeout=60, cwd=Path(__file__).parents[2],
                                 env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
            assert out.returncode == 0, out.stderr
            lines = out.stdout.splitlines()
            assert lines[0] == f"{count} {[float(i % 2) for i in range(count)]}"
            assert lines[1].startswith("refused:") and "opened read-only" in lines[1]
    finally:
        live.close()
