"""The actor/learner link (robot_rl.ros.dds.learning) over real DDS on loopback, in one process with two
participants: spooled batches arrive, are stored before they are acked, duplicates are re-acked without being stored
twice, a killed actor's open batch is recovered, a restarted learner reloads, weights are latched."""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cyclonedds", reason="needs the dds extra")

from robot_rl.ros.dds.learning import HUMAN, POLICY, ActorLink, LearnerLink, RowLayout, Spool  # noqa: E402
from robot_rl.ros.dds.msgs import Blob  # noqa: E402
from robot_rl.ros.dds.participant import Participant  # noqa: E402
from robot_rl.ros.dds.qos import loopback_config  # noqa: E402

LAYOUT = RowLayout(3, 2)
_domains = itertools.count()


@pytest.fixture
def domain(monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setenv("CYCLONEDDS_URI", loopback_config())
    return 100 + (os.getpid() * 11 + 5 + next(_domains)) % 130


def row(i: int, source: int = POLICY) -> np.ndarray:
    return LAYOUT.pack(np.full(3, i), np.full(2, 0.5), np.full(3, i + 1), float(i % 2), False, False, source, True, 0)


def until(cond: Callable[[], bool], timeout_s: float, pump: Callable[[], object]) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pump()
        if cond():
            return True
        time.sleep(0.02)
    return False


def test_row_layout_round_trips_and_refuses_foreign_rows() -> None:
    u = LAYOUT.unpack(np.stack([row(1), row(2, HUMAN)]))
    np.testing.assert_array_equal(u["obs"][1], [2, 2, 2])
    np.testing.assert_array_equal(u["next_obs"][0], [2, 2, 2])
    assert u["source"].tolist() == [POLICY, HUMAN] and u["reward"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="batch x: 7 floats are not whole rows of 14"):
        LAYOUT.rows(np.zeros(7, np.float32).tobytes(), "batch x")


def test_spool_recovers_what_a_killed_actor_left(tmp_path: Path) -> None:
    spool = Spool(tmp_path, LAYOUT, "a1")
    for i in range(3):
        spool.append(row(i))
    # a kill -9 in the middle of a write: a partial row at the end of the open batch
    open_file = next(tmp_path.glob("*.open"))
    with open(open_file, "ab") as f:
        f.write(row(9).tobytes()[:10])
    again = Spool(tmp_path, LAYOUT, "a2")
    [sealed] = again.pending()
    assert sealed.name == "a1-00000000.rows"
    np.testing.assert_array_equal(LAYOUT.rows(sealed.read_bytes(), "x"), np.stack([row(i) for i in range(3)]))
    with pytest.raises(ValueError, match="spool of another robot"):
        Spool(tmp_path, RowLayout(4, 2), "a3")


def test_batches_are_stored_then_acked_and_survive_a_learner_restart(domain: int, tmp_path: Path) -> None:
    actor_p, learner_p = Participant(domain), Participant(domain)
    try:
        actor = ActorLink(actor_p, Spool(tmp_path / "spool", LAYOUT, "a"), batch_rows=4, resend_s=0.3)
        learner = LearnerLink(learner_p, tmp_path / "received", LAYOUT)
        for i in range(10):
            actor.record(row(i, HUMAN if i == 3 else POLICY))
        actor.spool.seal()  # 4 + 4 + 2 rows
        got: list[tuple[str, np.ndarray]] = []
        assert until(lambda: not actor.spool.pending(), 20, lambda: (actor.pump(), got.extend(learner.poll(0.05))))
        assert sorted(n for n, _ in got) == ["a-00000000", "a-00000001", "a-00000002"]
        assert sum(len(r) for _, r in got) == 10 and actor.acked == 3
        # an ack lost on the way: the actor sends the batch again; the learner re-acks and stores nothing new
        duplicate = tmp_path / "spool" / "a-00000001.rows"
        duplicate.write_bytes(np.stack([row(4), row(5), row(6), row(7)]).tobytes())
        again: list[tuple[str, np.ndarray]] = []
        assert until(lambda: not duplicate.exists(), 20, lambda: (actor.pump(), again.extend(learner.poll(0.05))))
        assert again == []
        # a restarted learner finds everything
        restarted = LearnerLink(learner_p, tmp_path / "received", LAYOUT)
        stored = restarted.stored()
        assert sum(len(r) for _, r in stored) == 10
        assert int(sum((LAYOUT.unpack(r)["source"] == HUMAN).sum() for _, r in stored)) == 1
        # a foreign robot's batch (another width) is refused and never acked
        foreign = actor_p.writer("learning/transitions", Blob)
        foreign.write(Blob(sender="other", seq=0, kind="transitions", data=np.zeros(5, np.float32).tobytes()))
        assert until(lambda: bool(learner.rejected), 10, lambda: learner.poll(0.05))
        assert "batch other-00000000: 5 floats are not whole rows" in learner.rejected[0]
        assert not (tmp_path / "received" / "other-00000000.rows").exists()
    finally:
        actor_p.close()
        learner_p.close()


def test_weights_are_latched_for_an_actor_that_starts_late(domain: int, tmp_path: Path) -> None:
    learner_p = Participant(domain)
    try:
        learner = LearnerLink(learner_p, tmp_path / "received", LAYOUT)
        learner.publish_weights(1, b"old")
        learner.publish_weights(2, b"new")
        actor_p = Participant(domain)
        try:
            actor = ActorLink(actor_p, Spool(tmp_path / "spool", LAYOUT, "a"))
            seen: list[Blob] = []
            assert until(lambda: bool(seen), 20, lambda: seen.extend(m for m in [actor.pump()] if m is not None))
            assert (int(seen[-1].seq), bytes(seen[-1].data)) == (2, b"new")
        finally:
            actor_p.close()
    finally:
        learner_p.close()
