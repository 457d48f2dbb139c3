"""Candidate pools: a crash or a hang of one candidate never takes the others (or the search) down.

``test_ray_pool_*`` starts a local Ray instance (2 CPUs, no dashboard): marked slow, ~20-40 s here."""

from __future__ import annotations

import os
import time

import pytest

from robot_rl.rewards.codegen.gate import extract_code
from robot_rl.rewards.codegen.pool import LocalPool, RayPool
from robot_rl.rewards.codegen.select import load_preferences
from robot_rl.rewards.codegen.train import CandidateJob, TrainBudget
from tests.rewards.codegen_search import replies
from tests.rewards.conftest import SPEC

NONE = TrainBudget(trainer="none")


def job(name: str, code: str = "", deadline_s: float = 60.0, preferences: object = None) -> CandidateJob:
    return CandidateJob(name, 0, int(name[-1]), code, None, SPEC.to_json(), NONE, preferences=preferences,
                        deadline_s=deadline_s)


def echo(j: CandidateJob) -> dict:
    return {"id": j.id, "status": "ok", "pid": os.getpid()}


def crash_or_hang(j: CandidateJob) -> dict:
    if j.id.startswith("crash"):
        os._exit(3)
    if j.id.startswith("hang"):
        time.sleep(120)
    if j.id.startswith("raise"):
        raise SystemExit("escaped")
    return echo(j)


def test_local_pool_contains_crashes_and_hangs_and_keeps_the_rest() -> None:
    done: list[str] = []
    jobs = [job("crash0"), job("hang1", deadline_s=1.0), job("raise2"), job("good3")]
    start = time.monotonic()
    results = LocalPool(2, target=crash_or_hang, grace_s=0.5).run(jobs, on_done=lambda r: done.append(r["id"]))
    assert time.monotonic() - start < 60
    by_id = {r["id"]: r for r in results}
    assert [r["id"] for r in results] == ["crash0", "hang1", "raise2", "good3"]
    assert by_id["crash0"]["status"] == "failed" and "exit status 3" in by_id["crash0"]["reason"]
    assert by_id["hang1"]["status"] == "timeout" and "killed" in by_id["hang1"]["reason"]
    assert by_id["raise2"]["status"] == "failed" and "SystemExit: escaped" in by_id["raise2"]["reason"]
    assert by_id["good3"]["status"] == "ok" and by_id["good3"]["pid"] != os.getpid()
    assert sorted(done) == sorted(by_id)


def test_local_pool_runs_real_candidates_in_separate_processes(labeled_reach) -> None:
    dataset, store = labeled_reach
    prefs = load_preferences(str(dataset), str(store))
    results = LocalPool(2).run([job("good0", extract_code(replies.REACH_TRUE), preferences=prefs),
                                job("bad1", extract_code(replies.RUNTIME_ERROR), preferences=prefs)])
    assert results[0]["status"] == "ok" and results[0]["agreement"] == 1.0
    assert results[1]["status"] == "failed" and "KeyError" in results[1]["reason"] and "handle_angle" in \
        results[1]["reason"]


@pytest.mark.slow
def test_ray_pool_on_a_local_ray_scores_and_isolates_candidates(labeled_reach) -> None:
    dataset, store = labeled_reach
    prefs = load_preferences(str(dataset), str(store))
    pool = RayPool("local", 2)
    try:
        results = pool.run([job("good0", extract_code(replies.REACH_TRUE), preferences=prefs),
                            job("neg1", extract_code(replies.REACH_NEGATED), preferences=prefs),
                            job("bad2", extract_code(replies.RUNTIME_ERROR), preferences=prefs)])
    finally:
        pool.close()
    assert [r["status"] for r in results] == ["ok", "ok", "failed"]
    assert results[0]["agreement"] == 1.0 and results[1]["agreement"] == 0.0
    assert "handle_angle" in results[2]["reason"]

