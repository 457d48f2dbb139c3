"""Every bad candidate of the issue, as LLM replies in one search iteration (trainer ``none``: label agreement on a
small dataset, so each candidate still runs in the sandbox): each one is rejected by the gate or contained at run
time, recorded with its reason and quoted in the next iteration's feedback, and the good reply beside them wins."""

from __future__ import annotations

import json

import pytest

from robot_rl.rewards.codegen.search import RECORDS, SearchConfig, run_search
from robot_rl.rewards.codegen.train import TrainBudget
from tests.llm.replay_server import RecordedRequest, ReplayServer, fast_config
from tests.rewards.codegen.candidates import GATE_REJECTS, fn
from tests.rewards.codegen_search import replies

# passes the gate, fails (or is contained) only when it runs: name -> (code, what the record says)
RUNTIME = {
    "infinite loop": (fn("x = 0\nwhile True:\n    x = x + 1\nreturn action.sum(-1), {}"), "did not return within"),
    "memory bomb": (fn("x = torch.zeros(8000000000)\nreturn action.sum(-1), {}"), "compute_reward raised"),
    "NaN reward": (fn("return action.sum(-1) * float('nan'), {}"), "non-finite reward"),
    "1e30 reward": (fn("return torch.full((len(action),), 1e30), {}"), "over the bound"),
    "inf component": (fn("r = action.sum(-1)\nreturn r, {'c': r / 0.0}"), "non-finite component 'c'"),
    "wrong shape": (fn("return obs['state'], {}"), "reward of shape"),
    "wrong dtype": (fn("return (obs['state'][:, 0] > 0).long(), {}"), "expected a floating dtype"),
    "exception": (fn("if (obs['state'].abs() >= 0.0).any():\n    raise ValueError('handle not found')\n"
                     "return action.sum(-1), {}"), "ValueError at line 3: handle not found"),
}
FLOOD = fn("for i in range(20000):\n    print('x' * 1000)\n"
           "distance = torch.linalg.vector_norm(obs['state'], dim=-1)\nreturn -distance, {'distance': -distance}")
BAD = {name: code for name, (code, _) in [*GATE_REJECTS.items(), *RUNTIME.items()]}
NAMES = [*BAD, "stdout flood", "good"]
REPLY = {**{name: f"```python\n{code}```" for name, code in BAD.items()}, "stdout flood": f"```python\n{FLOOD}```",
         "good": replies.REACH_TRUE}


@pytest.fixture(scope="module")
def outcome(labeled_reach, tmp_path_factory: pytest.TempPathFactory):
    dataset, store = labeled_reach
    out = tmp_path_factory.mktemp("bad-candidates")

    def responder(request: RecordedRequest) -> str:
        return REPLY[NAMES[replies.sample_index(request.body, len(NAMES))]]

    with ReplayServer(responder=responder) as server:
        cfg = SearchConfig(llm=fast_config(server, deadline_s=30.0), out=out, iterations=1, samples=len(NAMES),
                           budget=TrainBudget(trainer="none"), dataset=str(dataset), labels=str(store), workers=2,
                           timeout_s=120.0, sandbox_limits={"deadline_s": 3.0}, regenerate=0)
        result = run_search(cfg)
    lines = [json.loads(line) for line in (out / RECORDS).read_text().splitlines()]
    records = {NAMES[r["index"]]: r for r in lines if r["kind"] == "candidate"}
    feedback = next(r["feedback"] for r in lines if r["kind"] == "iteration")
    return result, records, feedback


def test_gate_rejects_each_one_with_its_reason(outcome) -> None:
    _, records, feedback = outcome
    for name, (_, reason) in GATE_REJECTS.items():
        r = records[name]
        assert r["status"] == "rejected", (name, r)
        assert reason in r["reason"], (name, r["reason"])
        assert r["reason"] in feedback, name


def test_runtime_failures_are_contained_and_quoted_in_the_feedback(outcome) -> None:
    _, records, feedback = outcome
    for name, (_, reason) in RUNTIME.items():
        r = records[name]
        assert r["status"] == "failed", (name, r)
        assert reason in r["reason"] and "\n" not in r["reason"], (name, r["reason"])
        assert f"FAILED (failed): {r['reason']}" in feedback, name


def test_a_flood_of_output_is_contained_and_the_good_reply_wins(outcome) -> None:
    result, records, _ = outcome
    assert records["stdout flood"]["status"] == "ok"  # it runs; its 20 MB of prints go to /dev/null
    assert records["good"]["status"] == "ok" and records["good"]["agreement"] == 1.0
    assert result.best is not None and NAMES[result.best["index"]] in ("good", "stdout flood")
    assert result.best["agreement"] == 1.0
