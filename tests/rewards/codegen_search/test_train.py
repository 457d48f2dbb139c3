"""Candidate training in-process (the reward code itself still runs only in the sandbox's worker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from robot_rl.envs import make_env
from robot_rl.rewards.codegen.gate import extract_code
from robot_rl.rewards.codegen.train import CandidateJob, TrainBudget, run_candidate
from tests.rewards.codegen_search import replies

TASK = "metaworld/drawer-open-v3"
TINY_DATA = Path(__file__).resolve().parents[3] / "datasets" / "samples" / "drawer-open-tiny.h5"


@pytest.fixture(scope="module")
def spec_json() -> str:
    env = make_env(TASK)
    yield env.spec.to_json()
    env.close()


def test_ppo_trains_on_the_sandboxed_reward_and_records_terms(spec_json: str) -> None:
    budget = TrainBudget(trainer="ppo", ppo_steps=64, ppo_envs=2, eval_episodes=1, stat_points=2)
    result = run_candidate(CandidateJob("p0", 0, 0, extract_code(replies.GOOD), TASK, spec_json, budget))
    assert result["status"] == "ok", result["reason"]
    assert [p["step"] for p in result["stats"]] == [32, 64]
    terms = result["stats"][0]["terms"]
    assert set(terms) == {"reward", "reach", "pull"}
    assert terms["reward"]["min"] <= terms["reward"]["mean"] <= terms["reward"]["max"] < 0
    assert result["success_rate"] in (0.0, 1.0) and result["steps"] == 64


def test_iql_stops_at_its_deadline(spec_json: str) -> None:
    budget = TrainBudget(trainer="iql", iql_steps=50, eval_episodes=1, stat_points=2)
    job = CandidateJob("i0", 0, 0, extract_code(replies.GOOD), TASK, spec_json, budget, str(TINY_DATA),
                       deadline_s=0.0)
    result = run_candidate(job)
    assert result["status"] == "timeout" and "wall-clock budget" in result["reason"]


def test_iql_refuses_a_dataset_of_another_task(spec_json: str, labeled_reach) -> None:
    dataset, _ = labeled_reach
    budget = TrainBudget(trainer="iql", iql_steps=10, eval_episodes=1, stat_points=1)
    result = run_candidate(CandidateJob("i1", 0, 1, extract_code(replies.GOOD), TASK, spec_json, budget,
                                        str(dataset)))
    assert result["status"] == "failed"
    assert "does not fit 'metaworld/drawer-open-v3'" in result["reason"] and "state dim 2 != 39" in result["reason"]


def test_budgets_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown trainer 'sac'"):
        TrainBudget(trainer="sac")
    with pytest.raises(ValueError, match="iql_steps must be >= 1"):
        TrainBudget(iql_steps=0)


def test_train_iql_learns_from_the_rewards_it_is_given_and_evaluates(spec_json: str) -> None:
    """The iql trainer's core on a dataset's own (simulator) rewards, as a true-reward baseline uses it."""
    from robot_rl.core.specs import EnvSpec
    from robot_rl.data import GROUND_TRUTH, Dataset
    from robot_rl.rewards.codegen.train import train_iql

    with Dataset(TINY_DATA) as ds:
        t = ds.transitions(reward_key=GROUND_TRUTH)
    marks: list[int] = []
    budget = TrainBudget(iql_steps=6, eval_episodes=2, stat_points=3)
    result = train_iql(TASK, EnvSpec.from_json(spec_json), t, budget,
                       at_mark=lambda env, policy, step: marks.append(step))
    assert marks == [2, 4, 6]
    assert result["eval_episodes"] == 2 and result["success_rate"] in (0.0, 0.5, 1.0)
    assert result["eval_return"] > 0  # MetaWorld's reward is positive on every step
    with pytest.raises(Exception, match="wall-clock budget"):
        train_iql(TASK, EnvSpec.from_json(spec_json), t, budget, deadline=0.0)
