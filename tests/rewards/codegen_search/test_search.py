"""A whole search, 2 iterations x K=2, on MetaWorld drawer-open with a tiny IQL budget; the replay server plays the
LLM: iteration 1 gets one good reward and one malicious one, iteration 2 one good and one that fails at run time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_rl.llm import LLMConfig
from robot_rl.rewards.codegen.search import RECORDS, SearchConfig, run_search
from robot_rl.rewards.codegen.train import TrainBudget
from tests.llm.replay_server import RecordedRequest, ReplayServer, fast_config
from tests.rewards.codegen_search import replies

TASK = "metaworld/drawer-open-v3"
TINY = TrainBudget(trainer="iql", iql_steps=60, eval_episodes=2, stat_points=3)


def responder(request: RecordedRequest) -> str:
    i = replies.sample_index(request.body, 2)
    if "Feedback on the reward functions" not in request.last_text:
        return [replies.GOOD, replies.MALICIOUS][i]
    return [replies.GOOD_V2, replies.RUNTIME_ERROR][i]


def config(server: ReplayServer, out: Path, **kw: object) -> SearchConfig:
    llm: LLMConfig = fast_config(server, deadline_s=30.0)
    settings: dict = {"llm": llm, "out": out, "task": TASK, "iterations": 2, "samples": 2, "budget": TINY,
                      "workers": 2, "collect_episodes": 4, "timeout_s": 300.0, "final_seeds": 2}
    settings.update(kw)
    return SearchConfig(**settings)


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("search")
    events: list[tuple[str, dict]] = []
    with ReplayServer(responder=responder) as server:
        result = run_search(config(server, out), on_event=lambda kind, data: events.append((kind, data)))
        yield result, server.requests, events, server


def test_every_candidate_is_recorded_with_its_outcome(search) -> None:
    result, _, _, _ = search
    lines = [json.loads(line) for line in (result.out / RECORDS).read_text().splitlines()]
    candidates = {r["id"]: r for r in lines if r["kind"] == "candidate"}
    # it0-s1 was rejected by the gate and asked for again as it0-s2 (Eureka's regeneration); a run-time failure
    # (it1-s1) is not regenerated
    assert sorted(candidates) == ["it0-s0", "it0-s1", "it0-s2", "it1-s0", "it1-s1"]
    assert [r["iteration"] for r in lines if r["kind"] == "iteration"] == [0, 1]
    assert candidates["it0-s1"]["status"] == "rejected"
    assert "line 2" in candidates["it0-s1"]["reason"] and "not allowed" in candidates["it0-s1"]["reason"]
    assert candidates["it1-s1"]["status"] == "failed"
    assert "handle_angle" in candidates["it1-s1"]["reason"]
    for good in ("it0-s0", "it0-s2", "it1-s0"):
        r = candidates[good]
        assert r["status"] == "ok", r["reason"]
        assert 0.0 <= r["success_rate"] <= 1.0 and r["eval_episodes"] == 2
        assert len(r["stats"]) == 3 and [p["step"] for p in r["stats"]] == [20, 40, 60]
        assert set(r["stats"][0]["terms"]) == {"reward", "reach", "pull"}
        assert r["code"].startswith("def compute_reward")
        assert r["model"] == "replay-model"


def test_iteration_two_is_told_iteration_one_errors_and_component_stats(search) -> None:
    _, requests, _, _ = search
    assert len(requests) == 5
    first = [r for r in requests if "Feedback on the reward functions" not in r.last_text]
    second = [r for r in requests if "Feedback on the reward functions" in r.last_text]
    assert len(first) == 3 and len(second) == 2
    assert len({r.body["seed"] for r in first}) == 3  # the regenerated sample is a new request, not a cache hit
    # Text2Reward's few-shot: verified rewards of the closest other tasks, never the task's own
    assert "Task 'metaworld/drawer-close-v3' (close the drawer)" in first[0].last_text
    assert "Task 'metaworld/drawer-open-v3'" not in first[0].last_text
    text = second[0].last_text
    assert "it0-s1: FAILED (rejected)" in text and "line 2:" in text and "not allowed" in text
    assert "it0-s0: success" in text
    assert "  reach: [" in text and "  pull: [" in text and "max" in text and "min" in text
    assert "The best reward function so far (it0-s" in text
    assert "class DrawerOpenV3:" in text and "open the drawer" in text
    assert requests[0].body["seed"] != requests[1].body["seed"]


def test_best_code_and_provenance_and_report(search) -> None:
    result, _, events, _ = search
    out = result.out
    best = json.loads((out / "best_reward.json").read_text())
    assert best["id"] == result.best["id"] and best["id"] in ("it0-s0", "it0-s2", "it1-s0")
    assert best["model"] == "replay-model" and best["prompt_version"] == "reward-search-v2"
    assert (out / best["prompt_file"]).exists()
    code = (out / "best_reward.py").read_text()
    assert result.best["code"] in code and "def compute_reward(obs, action)" in code
    report = (out / "report.md").read_text()
    assert "it1-s1" in report and "success_by_iteration.png" in report
    assert (out / "success_by_iteration.png").stat().st_size > 1000
    assert [k for k, _ in events].count("candidate") == 5


def test_the_best_reward_is_trained_again_on_other_seeds_with_its_correlation_to_the_truth(search) -> None:
    result, _, events, _ = search
    lines = [json.loads(line) for line in (result.out / RECORDS).read_text().splitlines()]
    finals = [r for r in lines if r["kind"] == "final"]
    assert sorted(r["seed"] for r in finals) == [1, 2] and {r["best"] for r in finals} == {result.best["id"]}
    final = json.loads((result.out / "best_reward.json").read_text())["final_evaluation"]
    assert final == result.final and final["seeds"] == [1, 2] and len(final["success_rates"]) == 2
    assert final["success_mean"] == sum(final["success_rates"]) / 2
    assert -1 <= final["truth_correlation"] <= 1 and -1 <= final["truth_return_correlation"] <= 1
    report = (result.out / "report.md").read_text()
    assert f"## Final evaluation of {result.best['id']} on 2 more seeds" in report
    assert "Correlation with the simulator's reward over the dataset" in report
    assert [k for k, _ in events].count("final_run") == 2


def test_an_existing_search_needs_resume_and_resume_skips_finished_iterations(search) -> None:
    result, _, _, server = search
    server.reset()
    with pytest.raises(FileExistsError, match="--resume"):
        run_search(config(server, result.out))
    again = run_search(config(server, result.out, resume=True))
    assert server.count == 0
    assert again.best is not None and again.best["id"] == result.best["id"]
    assert again.final is not None and again.final["success_rates"] == result.final["success_rates"]  # not retrained
    lines = (result.out / RECORDS).read_text().splitlines()
    assert sum(json.loads(line)["kind"] == "final" for line in lines) == 2
