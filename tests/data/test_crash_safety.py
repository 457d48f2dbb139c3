"""Crash safety: a writer killed with SIGKILL at any moment leaves a file that opens and holds every episode whose
``add_episode`` returned; ``resume=True`` continues it. Also: incomplete episodes, refusing to overwrite."""

from __future__ import annotations

import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from robot_rl.data import Dataset, DatasetError, DatasetWarning, DatasetWriter, Episode
from tests.data.crash_writer import small_episode
from tests.data.synthetic import assert_same_episode, crash_episode, make_episode, make_spec

REPO = Path(__file__).resolve().parents[2]
TRIALS = int(os.environ.get("ROBOT_RL_CRASH_TRIALS", "10"))
"""Random-time kills per run of the test; raise it (e.g. 300) for a stress run (a new file every 25 kills)."""


class WriterProcesses:
    """``python -m tests.data.crash_writer``: forks a writer per ``start`` and reports on stdout."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.data.crash_writer"], cwd=REPO, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=1)
        self.lines: list[str] = []
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.wait_for(lambda line: line == "ready", 0, timeout=120)

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.changed:
                self.lines.append(line.strip())
                self.changed.notify_all()

    def wait_for(self, match: Callable[[str], bool], since: int, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines[since:]:
                    assert not line.startswith("error"), line
                    if match(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"writer process: no expected line; got {self.lines[since:]}")
                self.changed.wait(left)

    def start(self, path: Path, seed: int, count: int = 0, kill_at: int = 0, size: str = "big") -> tuple[int, int]:
        """Fork a writer (see crash_writer.py); returns (its pid, index of its first output line)."""
        since = len(self.lines)
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"write {path} {seed} {count} {kill_at} {size}\n")
        self.proc.stdin.flush()
        return int(self.wait_for(lambda line: line.startswith("pid "), since).split()[1]), since

    def reaped(self, pid: int, since: int) -> tuple[bool, list[list[str]]]:
        """Wait until writer ``pid`` is gone; returns (whether SIGKILL ended it, its output lines, split)."""
        status = self.wait_for(lambda line: line.startswith(f"reaped {pid} "), since).split()[2]
        return status == str(signal.SIGKILL), [line.split() for line in self.lines[since:]]

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a writer a failed test never killed: stop its parent, ours
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def writers() -> Iterator[WriterProcesses]:
    procs = WriterProcesses()
    yield procs
    procs.close()


def check_file(path: Path, done: dict[str, int], make: Callable[[int], Episode], verified: set[str] | None = None,
               at_least: int = 0) -> tuple[int, bool]:
    """The file opens, holds every episode reported done, with the content written.

    Opening validates every episode's keys, dtypes, shapes and finite values; content is compared for every
    episode not in ``verified`` (then added to it) and for up to 20 that are. Returns (episode count, whether
    the reader had to undo an unfinished commit).
    """
    verified = set() if verified is None else verified
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with Dataset(path) as ds:
            names = ds.episode_names
            assert set(done) <= set(names) and len(names) >= at_least, f"lost {sorted(set(done) - set(names))}"
            old = sorted(set(names) & verified)
            again = random.Random(len(names)).sample(old, min(20, len(old)))
            for name in [n for n in names if n not in verified] + again:
                episode = ds.load_episode(name, images=True)
                assert episode.seed is not None
                assert_same_episode(episode, make(episode.seed))
                if name in done:
                    assert episode.seed == done[name]
                verified.add(name)
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    interrupted = [m for m in messages if "killed while committing" in m]
    # Episodes are written anonymously and linked at commit: a kill never leaves a visible partial one.
    assert messages == interrupted, messages
    return len(names), bool(interrupted)


def test_kill_9_at_random_moments_then_resume(tmp_path, writers):
    rng = random.Random(20261127)
    where: collections.Counter[str] = collections.Counter()
    reported = 0
    for trial in range(TRIALS):
        if trial % 25 == 0:
            path = tmp_path / f"crash{trial // 25}.h5"
            done: dict[str, int] = {}
            verified: set[str] = set()
        pid, since = writers.start(path, seed=1000 * (trial + 1))
        if trial == 2:  # while a writer holds the file, a reader gets a clear one-line error
            writers.wait_for(lambda line: line.startswith("done "), since)
            with pytest.raises(DatasetError, match="locked"):
                Dataset(path)
        # trial 0: kill at once (while creating the file); 1: while resuming; then anywhere
        time.sleep([0.0, 0.004][trial % 25] if trial % 25 < 2 else rng.uniform(0.0, 0.35))
        os.kill(pid, signal.SIGKILL)
        killed, events = writers.reaped(pid, since)
        assert killed, events
        for event in events:
            if event[0] == "done":
                done[event[1]] = int(event[2])
                reported += 1
        if any(e[0] == "opened" and e[-1] == "rolled-back" for e in events):
            where["(previous kill left an unfinished commit: rolled back)"] += 1
        last = [e[0] for e in events if e[0] in ("opened", "begin", "done")]
        where[{"begin": "inside add_episode", "done": "between episodes"}.get(last[-1] if last else "",
                                                                             "while opening")] += 1
        if not path.exists():
            assert not done  # killed before the file was created
            continue
        if check_file(path, done, crash_episode, verified)[1]:
            where["(mid-commit: reader used the journal)"] += 1
    print(f"\n{TRIALS} kills: {dict(where)}; {reported} episodes reported done, none lost")
    assert where["inside add_episode"] >= 1
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*rolled back", DatasetWarning)
        with DatasetWriter(path, make_spec(), source="crash-test", resume=True) as writer:
            before = writer.num_episodes
            writer.add_episode(crash_episode(7))
            writer.add_episode(crash_episode(8))
    assert check_file(path, done, crash_episode) == (before + 2, False)
    assert not Path(f"{path}-journal").exists()
    with Dataset(path) as ds:
        assert ds.notes == []
        assert sorted(ds.train_names + ds.valid_names) == sorted(ds.episode_names) and ds.train_names
        assert all(int(n.split("_")[1]) % 10 == 9 for n in ds.valid_names)
        with h5py.File(path, "r") as f:
            assert f["data"].attrs["total"] == ds.num_transitions == 40 * ds.num_episodes


def test_kill_before_every_file_write(tmp_path, writers):
    """Kill a writer just before each of its file-changing calls in turn: resume (rolling back and removing
    masks), two commits (the second splits /data's B-tree node: 9 links), close (masks). Each time the file opens
    with every committed episode, and resume then restores and continues it."""
    base = tmp_path / "base.h5"
    with DatasetWriter(base, make_spec(), source="crash-test") as w:
        for seed in range(7):
            w.add_episode(small_episode(seed))
    full = tmp_path / "full.h5"
    shutil.copy(base, full)
    pid, since = writers.start(full, seed=100, count=2, size="small")
    killed, events = writers.reaped(pid, since)
    assert not killed and events[-2][0] == "calls", events
    calls = int(events[-2][1])
    outcomes: collections.Counter[str] = collections.Counter()
    for n in range(1, calls + 1):
        path = tmp_path / f"kill{n}.h5"
        shutil.copy(base, path)
        pid, since = writers.start(path, seed=100, count=2, kill_at=n, size="small")
        killed, events = writers.reaped(pid, since)
        assert killed, (n, events)
        done = {e[1]: int(e[2]) for e in events if e[0] == "done"}
        count, interrupted = check_file(path, done, small_episode, at_least=7)
        outcomes[f"{count} episodes{' (via journal)' if interrupted else ''}"] += 1
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*rolled back", DatasetWarning)
            with DatasetWriter(path, make_spec(), source="crash-test", resume=True) as w:
                assert w.num_episodes == count
                w.add_episode(small_episode(200))
        with Dataset(path) as ds:
            assert ds.num_episodes == count + 1 and ds.notes == [] and ds.valid_names == (["demo_9"] * (count >= 9))
        path.unlink()
    print(f"\nkilled before each of {calls} file writes: {dict(outcomes)}")
    assert outcomes["9 episodes"] >= 1 and any("via journal" in k for k in outcomes)


def test_incomplete_episode_is_skipped_then_removed_by_resume(tmp_path):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, make_spec(), source="test") as w:
        for seed in range(3):
            w.add_episode(make_episode(seed))
    with h5py.File(path, "r+") as f:  # what a writer that writes in place leaves when killed mid-episode
        partial = f.create_group("data/demo_3")
        partial["actions"] = np.zeros((5, 2), np.float32)
        del f["mask"]
    with pytest.warns(DatasetWarning, match=r"d.h5: skipped incomplete episode\(s\) demo_3"):
        ds = Dataset(path)
    with ds:
        assert ds.episode_names == ["demo_0", "demo_1", "demo_2"]
        assert any("demo_3" in note for note in ds.notes) and any("/mask" in note for note in ds.notes)
        assert ds.train_names == ds.episode_names and ds.valid_names == []
    with pytest.warns(DatasetWarning, match=r"removed incomplete episode\(s\) demo_3"):
        writer = DatasetWriter(path, make_spec(), source="test", resume=True)
    with writer:
        assert writer.names == ["demo_0", "demo_1", "demo_2"]
        assert writer.add_episode(make_episode(10)) == "demo_3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with Dataset(path) as ds:
            assert ds.episode_names == ["demo_0", "demo_1", "demo_2", "demo_3"] and ds.notes == []
            assert_same_episode(ds.load_episode("demo_3", images=True), make_episode(10))


def test_refuses_to_overwrite_and_checks_env_on_resume(tmp_path):
    path = tmp_path / "d.h5"
    with DatasetWriter(path, make_spec(), source="test") as w:
        w.add_episode(make_episode(0))
    before = path.read_bytes()
    with pytest.raises(DatasetError, match="d.h5: file exists; pass resume=True"):
        DatasetWriter(path, make_spec(), source="test")
    other = make_spec()
    other = type(other)(**{**vars(other), "name": "toy/other-v0"})
    with pytest.raises(DatasetError, match="cannot append: the file's environment differs"):
        DatasetWriter(path, other, source="test", resume=True)
    assert path.read_bytes() == before and not Path(f"{path}-journal").exists()
    not_hdf5 = tmp_path / "notes.h5"
    not_hdf5.write_text("hello")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        DatasetWriter(not_hdf5, make_spec(), source="test", resume=True)
    assert not_hdf5.read_text() == "hello" and not Path(f"{not_hdf5}-journal").exists()
    with pytest.raises(DatasetError, match="is a directory"):
        DatasetWriter(tmp_path, make_spec(), source="test", resume=True)
    with DatasetWriter(tmp_path / "new.h5", make_spec(), source="test", resume=True) as w:  # absent: created
        assert w.add_episode(make_episode(1)) == "demo_0"
    assert not list(tmp_path.glob("*.creating*")) and not list(tmp_path.glob("*-journal"))


def _race_writer(path: str, barrier: object, results: object) -> None:
    from robot_rl.data import DatasetError, DatasetWriter
    from tests.data.synthetic import make_episode, make_spec

    barrier.wait()  # type: ignore[attr-defined]
    try:
        with DatasetWriter(path, make_spec(), source=f"writer {os.getpid()}") as w:
            w.add_episode(make_episode(2))
        results.put("created")  # type: ignore[attr-defined]
    except DatasetError as e:
        results.put(f"refused: {e}")  # type: ignore[attr-defined]


def test_two_writers_creating_the_same_new_file_at_once_one_wins_the_other_is_refused(tmp_path: Path) -> None:
    """Issue 15 item 9: two collects racing to create one new file lost 1 race in 4 (both wrote into it)."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    for i in range(8):
        path = str(tmp_path / f"race{i}.h5")
        barrier, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_race_writer, args=(path, barrier, results)) for _ in range(2)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes = sorted(results.get(timeout=5) for _ in procs)
        assert outcomes[0] == "created" and outcomes[1].startswith("refused: ") and "file exists" in outcomes[1], \
            outcomes
        with Dataset(path) as ds:  # the winner's file, whole: one episode, readable
            assert ds.episode_names == ["demo_0"]
        assert not list(tmp_path.glob("*.creating*"))
