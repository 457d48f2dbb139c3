"""``robot-rl reward-search`` end to end (replay server as the LLM), and ``--check-sandbox``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from tests.llm.replay_server import TEST_KEY_ENV, ReplayServer
from tests.rewards.codegen_search import replies


def test_search_on_labels_writes_best_code_that_relabel_can_use(labeled_reach, tmp_path, capsys) -> None:
    dataset, store = labeled_reach
    out = tmp_path / "search"
    answers = [replies.REACH_NEGATED, replies.REACH_TRUE, replies.TWO_FUNCTIONS]
    with ReplayServer(responder=lambda r: answers[replies.sample_index(r.body, 3)]) as server:
        rc = main(["reward-search", "--trainer", "none", "--dataset", str(dataset), "--labels", str(store),
                   "--llm-url", server.base_url, "--model", "replay-model", "--api-key-env", TEST_KEY_ENV,
                   "--iterations", "1", "--samples", "3", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "it0-s1: label agreement 100%" in err and "it0-s0: label agreement 0%" in err
    assert "it0-s2: rejected" in err and "2 functions" in err
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


@pytest.mark.parametrize(("argv", "message"), [
    (["--task", "metaworld/drawer-open-v3"], "needs --llm-url URL and --model NAME"),
    (["--llm-url", "http://127.0.0.1:9/v1", "--model", "m"], "--task is required with --trainer iql"),
    (["--llm-url", "http://127.0.0.1:9/v1", "--model", "m", "--trainer", "none", "--dataset", "d.h5"],
     "trainer 'none' scores candidates on labels only"),
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
