import dataclasses
import shutil
import warnings

import numpy as np
import pytest
import torch

from robot_rl.data import DatasetError
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint
from robot_rl.rl.iql import IQLConfig
from robot_rl.rl.policy import load_policy
from robot_rl.rl.train import TrainConfig, TrainingDiverged, train
from tests.rl.conftest import SPEC, best_action, write_bandit

SMALL = IQLConfig(hidden=(64, 64), batch_size=64)


def config(dataset, **kw) -> TrainConfig:
    base = dict(dataset=str(dataset), steps=200, log_every=50, checkpoint_every=100, device="cpu", iql=SMALL)
    return TrainConfig(**{**base, **kw})


def action_error(run_dir) -> float:
    policy = load_policy(run_dir)
    states = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (512, 2)).astype(np.float32))
    act = policy({"state": states}).numpy()
    return float(np.linalg.norm(act - best_action(states.numpy()), axis=1).mean())


def test_iql_picks_the_good_actions_bc_averages_them(bandit_dataset, tmp_path):
    # Rewards make the good 30% of actions stand out; IQL's advantage weights follow them, BC imitates all.
    iql_cfg = dataclasses.replace(SMALL, temperature=10.0)
    train(config(bandit_dataset, algo="iql", steps=1500, iql=iql_cfg), tmp_path / "iql")
    train(config(bandit_dataset, algo="bc", steps=1500, iql=iql_cfg), tmp_path / "bc")
    iql_err, bc_err = action_error(tmp_path / "iql"), action_error(tmp_path / "bc")
    assert iql_err < 0.7 * bc_err, (iql_err, bc_err)
    assert (tmp_path / "iql" / "metrics.jsonl").exists() and (tmp_path / "iql" / "config.yaml").exists()


def test_resume_gives_the_same_weights_as_one_straight_run(bandit_dataset, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    agent_a, _, _ = train(config(bandit_dataset, steps=200, checkpoint_every=100), straight)
    # A run killed right after its step-100 checkpoint: copy that checkpoint alone, then resume.
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint_paths(straight)[0], resumed / "checkpoints")
    agent_b, _, _ = train(config(bandit_dataset, steps=200, checkpoint_every=100), resumed, resume=True)
    for (name, a), (_, b) in zip(agent_a.state_dict().items(), agent_b.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    opt_a, opt_b = agent_a.optimizer.state_dict()["state"], agent_b.optimizer.state_dict()["state"]
    assert all(torch.equal(opt_a[k]["exp_avg"], opt_b[k]["exp_avg"]) for k in opt_a)


def test_refuses_to_overwrite_a_run_without_resume(bandit_dataset, tmp_path):
    train(config(bandit_dataset, steps=100), tmp_path)
    with pytest.raises(FileExistsError, match="--resume"):
        train(config(bandit_dataset, steps=100), tmp_path)


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(bandit_dataset, tmp_path):
    train(config(bandit_dataset, steps=200, checkpoint_every=100), tmp_path)
    newest = checkpoint_paths(tmp_path)[-1]
    newest.write_bytes(newest.read_bytes()[:1000])  # torn write
    with pytest.warns(UserWarning, match="unreadable checkpoint"):
        payload, path = load_checkpoint(tmp_path)
    assert payload["step"] == 100 and path != newest


def test_nan_rewards_name_the_episode(tmp_path):
    ds = write_bandit(tmp_path / "nan.h5", episodes=10, nan_episode=6)
    with pytest.raises(DatasetError, match=r"episode demo_6: reward 'rewards' has NaN values.*relabel"):
        train(config(ds), tmp_path / "run")


def test_divergence_stops_with_step_and_keeps_last_good_checkpoint(bandit_dataset, tmp_path):
    holder = {}

    def poison(step, metrics):
        if step == 100:  # after the step-100 checkpoint is decided, blow up a weight
            with torch.no_grad():
                agent = holder["agent"]
                next(agent.critic.parameters()).fill_(float("nan"))

    import robot_rl.rl.train as train_mod

    real = train_mod.make_agent

    def capture(*a, **k):
        holder["agent"] = real(*a, **k)
        return holder["agent"]

    train_mod.make_agent = capture
    try:
        with pytest.raises(TrainingDiverged, match=r"diverged at step 150: .*last good checkpoint: .*step_000000100"):
            train(config(bandit_dataset, steps=300, log_every=50, checkpoint_every=100), tmp_path, on_log=poison)
    finally:
        train_mod.make_agent = real
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        payload, _ = load_checkpoint(tmp_path)
    assert payload["step"] == 100
    assert all(torch.isfinite(v).all() for v in payload["agent"].values())


def test_policy_spec_mismatch_says_what(bandit_dataset, tmp_path):
    train(config(bandit_dataset, steps=50, log_every=50, checkpoint_every=50), tmp_path)
    policy = load_policy(tmp_path)
    policy.check_spec(SPEC)
    other = dataclasses.replace(SPEC, name="toy/other", action=dataclasses.replace(SPEC.action, dim=3,
                                scale=(1.0,) * 3, offset=(0.0,) * 3))
    with pytest.raises(ValueError, match="does not fit 'toy/other': action dim 2 != 3"):
        policy.check_spec(other)


def test_resume_logs_every_step_once(bandit_dataset, tmp_path):
    """A run killed after logging step 150 but before its step-200 checkpoint: the resume logs 150 again, once."""
    from robot_rl.rl.logger import read_metrics

    run = tmp_path / "run"
    train(config(bandit_dataset, steps=150, checkpoint_every=100), run)
    checkpoint_paths(run)[-1].unlink()  # the step-150 checkpoint (written only because the run ended there)
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 160, "critic_lo')  # torn by the kill
    assert [r["step"] for r in read_metrics(run)] == [50, 100, 150]
    train(config(bandit_dataset, steps=200, checkpoint_every=100), run, resume=True)
    assert [r["step"] for r in read_metrics(run)] == [50, 100, 150, 200]
    assert (run / "metrics.jsonl").read_text().count("\n") == 4
