"""Commands refuse, in one line with exit status 2, what would otherwise silently do nothing or destroy a result:
``train-reward`` over an existing model or with 0 steps, ``eval`` on an unknown task or with no episodes; ``eval``
on a task other than the run's own writes its own files next to the run's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from robot_rl.cli.main import main
from robot_rl.rewards.model import RewardModelConfig
from robot_rl.rewards.model.network import RewardModelError
from tests.rewards.conftest import write_reach


def _one_line_error(err: str, *needles: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("robot-rl "), err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def labeled(tmp_path_factory) -> Path:
    data = write_reach(tmp_path_factory.mktemp("reach") / "reach.h5", episodes=6)
    assert main(["label", str(data), "--pairs", "40", "--segment-length", "10"]) == 0
    return data


def test_train_reward_refuses_to_overwrite_a_model_without_overwrite(labeled: Path, tmp_path: Path, capsys) -> None:
    run = tmp_path / "reward"
    args = ["train-reward", str(labeled), "--out", str(run), "--steps", "5", "--set", "hidden=[16]"]
    assert main(args) == 0
    model = run / "reward_model.pt"
    before = model.read_bytes()
    capsys.readouterr()
    assert main([*args, "--set", "seed=1"]) == 2
    _one_line_error(capsys.readouterr().err, str(model), "--overwrite")
    assert model.read_bytes() == before
    assert main([*args, "--set", "seed=1", "--overwrite"]) == 0
    assert model.read_bytes() != before  # another seed: really retrained


@pytest.mark.parametrize("steps", ["0", "-3"])
def test_train_reward_refuses_fewer_than_one_step(labeled: Path, tmp_path: Path, capsys, steps: str) -> None:
    run = tmp_path / "reward"
    assert main(["train-reward", str(labeled), "--out", str(run), "--steps", steps]) == 2
    _one_line_error(capsys.readouterr().err, f"steps must be >= 1, got {steps}")
    assert not (run / "reward_model.pt").exists()
    with pytest.raises(RewardModelError, match="steps must be >= 1"):
        RewardModelConfig(steps=int(steps))


@pytest.fixture(scope="module")
def iql_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("iql")
    data = root / "d.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "2", "--episode-length", "20",
                 "--out", str(data)]) == 0
    assert main(["train", "--dataset", str(data), "--steps", "20", "--out", str(root / "iql"), "--device", "cpu",
                 "--set", "iql.hidden=[16,16]", "--set", "log_every=10", "--eval-episodes", "1"]) == 0
    return root / "iql"


def test_eval_refuses_an_unknown_task_naming_close_ones(iql_run: Path, capsys) -> None:
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(iql_run), "--task", "metaworld/drawer-opn-v3", "--episodes", "1"]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, "metaworld/drawer-opn-v3", "metaworld/drawer-open-v3")
    assert captured.out == ""


@pytest.mark.parametrize("episodes", ["0", "-1"])
def test_eval_refuses_fewer_than_one_episode(iql_run: Path, capsys, episodes: str) -> None:
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(iql_run), "--episodes", episodes]) == 2
    captured = capsys.readouterr()
    _one_line_error(captured.err, f"--episodes must be >= 1, got {episodes}")
    assert captured.out == ""


def test_eval_on_another_task_keeps_the_runs_own_files(iql_run: Path, capsys) -> None:
    own_eval, own_gif, report = iql_run / "eval.json", iql_run / "episode.gif", iql_run / "report.md"
    before = own_eval.read_bytes(), own_gif.read_bytes(), report.read_bytes()
    assert json.loads(before[0])["task"] == "metaworld/drawer-open-v3"
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(iql_run), "--task", "metaworld/drawer-close-v3", "--episodes", "1",
                 "--num-envs", "1"]) == 0
    captured = capsys.readouterr()
    other = iql_run / "eval-metaworld-drawer-close-v3.json"
    assert json.loads(other.read_text())["task"] == "metaworld/drawer-close-v3"
    assert (iql_run / "episode-metaworld-drawer-close-v3.gif").stat().st_size > 1000
    assert other.name in "".join(captured.err.split())  # says where it wrote (rich may wrap the line)
    assert (own_eval.read_bytes(), own_gif.read_bytes(), report.read_bytes()) == before
    assert "eval/success_rate" in json.loads(captured.out.strip().splitlines()[-1])


@pytest.mark.parametrize(("argv", "needle"), [
    (["--set", "cuda_graphs=maybe"], "cuda_graphs must be true or false"),
    (["--set", "compile=1"], "compile must be true or false"),
])
def test_train_refuses_non_boolean_switches(labeled: Path, tmp_path: Path, capsys, argv: list[str],
                                            needle: str) -> None:
    assert main(["train", "--dataset", str(labeled), "--out", str(tmp_path / "run"), *argv]) == 2
    _one_line_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--env-workers", "-1"], "--env-workers must be between 0 and --num-envs (1), got -1"),
    (["--env-workers", "3", "--num-envs", "2"], "--env-workers must be between 0 and --num-envs (2), got 3"),
    (["--threads", "-2"], "threads must be >= 0"),
])
def test_finetune_refuses_bad_worker_and_thread_counts(iql_run: Path, tmp_path: Path, capsys, argv: list[str],
                                                       needle: str) -> None:
    assert main(["finetune", "--checkpoint", str(iql_run), "--out", str(tmp_path / "ft"), "--steps", "10",
                 *argv]) == 2
    _one_line_error(capsys.readouterr().err, needle)
    assert not (tmp_path / "ft" / "checkpoints").exists()
