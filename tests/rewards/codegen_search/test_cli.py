"""``robot-rl reward-search`` end to end (replay server as the LLM), and ``--check-sandbox``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from tests.llm.replay_server import TEST_KEY_ENV, ReplayServer
from tests.rewards.codegen_search import replies


def test_search_on_labels_writes_best_code_that_relabel_can_use(labeled_reach, tmp_path, capsys) -> None:
    dataset, store = labeled_reach
    out = tmp_path / "search"
    answers = [replies.REACH_NEGATED, replies.REACH_TRUE, replies.MALICIOUS]
    with ReplayServer(responder=lambda r: answers[replies.sample_index(r.body, 3)]) as server:
        rc = main(["reward-search", "--trainer", "none", "--dataset", str(dataset), "--labels", str(store),
                   "--llm-url", server.base_url, "--model", "replay-model", "--api-key-env", TEST_KEY_ENV,
                   "--iterations", "1", "--samples", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "it0-s1: label agreement 100%" in err and "it0-s0: label agreement 0%" in err
    assert "it0-s2: rejected" in err and "'__class__' is not allowed" in " ".join(err.split())
    best = json.loads((out / "best_reward.json").read_text())
    assert best["id"] == "it0-s1" and best["scores"]["agreement"] == 1.0 and best["ranking"] == "labels"
    assert (out / "report.md").exists() and (out / "success_by_iteration.png").exists()
    copy = tmp_path / "reach.h5"
    copy.write_bytes(dataset.read_bytes())
    rc = main(["relabel", str(copy), "--source", f"code:{out / 'best_reward.py'}", "--id", "searched"])
    assert rc == 0, capsys.readouterr().err
    with Dataset(copy) as ds:
        ep = ds.load_episode(ds.episode_names[0])
        expected = -np.linalg.norm(ep.next_states, axis=1)
        np.testing.assert_allclose(ep.reward_labels["searched"][0], expected, rtol=1e-5, atol=1e-6)


def test_search_without_labels_or_simulator_ranks_by_distance_to_a_reference_label(labeled_reach, tmp_path,
                                                                                     capsys) -> None:
    """Trainer none, no preference labels: the candidates are ranked by their EPIC/STARC-style distance to a reward
    label of the dataset (here the true reward; on robot data, a reward model's label)."""
    dataset, _ = labeled_reach
    answers = [replies.REACH_NEGATED, replies.REACH_TRUE, replies.MALICIOUS]
    out = tmp_path / "search"
    with ReplayServer(responder=lambda r: answers[replies.sample_index(r.body, 3)]) as server:
        argv = ["reward-search", "--trainer", "none", "--dataset", str(dataset), "--llm-url", server.base_url,
                "--model", "replay-model", "--api-key-env", TEST_KEY_ENV, "--iterations", "1", "--samples", "3",
                "--regenerate", "0"]
        assert main([*argv, "--reference", "nope", "--out", str(tmp_path / "bad")]) == 2
        assert "no reward label 'nope' for --reference (labels: ground_truth)" in capsys.readouterr().err
        rc = main([*argv, "--reference", "ground_truth", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    records = {r["id"]: r for r in map(json.loads, (out / "candidates.jsonl").read_text().splitlines())
               if r["kind"] == "candidate"}
    assert records["it0-s1"]["distance"] < 0.01  # the true reward itself
    assert records["it0-s0"]["distance"] > 0.99  # its negation: opposite
    assert records["it0-s2"]["status"] == "rejected" and "distance" not in records["it0-s2"]
    best = json.loads((out / "best_reward.json").read_text())
    assert best["id"] == "it0-s1" and best["ranking"] == "distance"
    assert best["scores"]["distance"] == records["it0-s1"]["distance"]
    assert "distance to the reference reward label" in (out / "report.md").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "metaworld/drawer-open-v3"], "needs --llm-url URL and --model NAME"),
    (["--llm-url", "http://127.0.0.1:9/v1", "--model", "m"], "--task is required with --trainer iql"),
    (["--llm-url", "http://127.0.0.1:9/v1", "--model", "m", "--trainer", "none", "--dataset", "d.h5"],
     "trainer 'none' scores candidates on labels or on the distance to a reference label"),
    (["--llm-url", "http://127.0.0.1:9/v1", "--model", "m", "--task", "metaworld/drawer-open-v3", "--select",
      "distance"], "selection by distance needs --reference LABEL"),
    (["--llm-url", "http://127.0.0.1:9/v1", "--model", "m", "--task", "metaworld/drawer-open-v3", "--labels",
      "s.sqlite"], "label agreement needs the dataset"),
])
def test_bad_arguments_give_one_line_errors(argv: list[str], message: str, capsys, tmp_path) -> None:
    rc = main(["reward-search", *argv, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and message in err and err.count("\n") == 0


def test_check_sandbox_prints_the_active_layers(capsys) -> None:
    from robot_rl.rewards.codegen.sandbox import sandbox_layers

    assert main(["reward-search", "--check-sandbox"]) == 0
    out = capsys.readouterr().out
    layers = sandbox_layers()
    lines = out.strip().splitlines()
    assert lines[0].split() == ["layer", "active", "detail"]
    assert len(lines) == len(layers) + 1 and any(x.active for x in layers)
    for line, layer in zip(lines[1:], layers, strict=True):
        assert line.startswith(layer.name)
        assert line[len(layer.name):].split()[0] == ("yes" if layer.active else "NO")


REPLY_DIR = Path(__file__).resolve().parents[1] / "codegen" / "replies"
TINY = str(Path(__file__).resolve().parents[3] / "datasets" / "samples" / "drawer-open-tiny.h5")


def test_check_reply_runs_one_reply_through_the_search_path_and_prints_statistics(capsys) -> None:
    reply = REPLY_DIR / "01_eureka_full.md"
    assert main(["reward-search", "--check-reply", str(reply), "--dataset", TINY]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"accepted: {reply}" and out[1] == "normalized:"
    assert "  line 1: removed 'import torch'" in out
    assert f"reward over 90 transitions of {TINY} (batched):" in out
    with Dataset(TINY) as ds:
        s, a = ds.transitions()["next_states"], ds.transitions()["actions"]
    reach = np.exp(-np.linalg.norm(s[:, 0:3] - s[:, 4:7], axis=1) / 0.1)
    reward = reach + 2.0 * np.exp(-np.linalg.norm(s[:, 4:7] - s[:, 36:39], axis=1) / 0.05) - 0.01 * (a ** 2).sum(1)
    rows = {line.split()[0]: [float(v) for v in line.split()[1:]] for line in out if line.startswith("  ")
            and line.split()[0] in ("reward", "reach_reward")}
    np.testing.assert_allclose(rows["reward"], [reward.mean(), reward.std(), reward.min(), reward.max()], rtol=1e-3)
    np.testing.assert_allclose(rows["reach_reward"], [reach.mean(), reach.std(), reach.min(), reach.max()], rtol=1e-3)


def test_check_reply_prints_every_reason_and_exits_2(capsys, tmp_path) -> None:
    reply = REPLY_DIR / "36_rejected_reads_a_file.md"
    assert main(["reward-search", "--check-reply", str(reply), "--dataset", TINY]) == 2
    assert capsys.readouterr().out.splitlines() == [
        f"rejected: {reply}", "3 reasons:", "  line 1: import of 'os' is not allowed",
        "  line 2: import of 'json' is not allowed", "  line 5: 'with' is not allowed"]
    failing = tmp_path / "reply.md"
    failing.write_text("Sure:\n```python\ndef compute_reward(obs, action):\n"
                       "    return obs['handle_angle'][:, 0]\n```\n")
    assert main(["reward-search", "--check-reply", str(failing), "--dataset", TINY]) == 2
    assert capsys.readouterr().out.splitlines()[-1] == \
        "  in the sandbox: compute_reward raised KeyError at line 2: 'handle_angle'"
    assert main(["reward-search", "--check-reply", str(failing)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--check-reply needs --dataset FILE.h5" in err and err.count("\n") == 0
