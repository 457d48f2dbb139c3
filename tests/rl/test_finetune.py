"""Online fine-tuning in a real MetaWorld env, from a short offline IQL run."""

import json
import math
import re

import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.envs import make_env
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint
from robot_rl.rewards.sources import GroundTruthReward, dataset_reward_source
from robot_rl.rl.finetune import FinetuneConfig, OnlineReplay, finetune


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    data = root / "d.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "4", "--episode-length", "30",
                 "--out", str(data)]) == 0
    assert main(["train", "--dataset", str(data), "--steps", "100", "--out", str(root / "iql"), "--device", "cpu",
                 "--set", "iql.hidden=[32,32]", "--set", "log_every=50", "--eval-episodes", "2"]) == 0
    return root


def test_dataset_reward_source_is_ground_truth_for_sim_data(offline_run):
    assert isinstance(dataset_reward_source(str(offline_run / "d.h5")), GroundTruthReward)
    with pytest.raises(ValueError, match="no finite reward"):
        GroundTruthReward()({}, torch.zeros(1, 4), {}, torch.tensor([float("nan")]))


def test_finetune_mixes_data_and_checkpoints(offline_run, tmp_path):
    env = make_env("metaworld/drawer-open-v3", num_envs=2, episode_length=30)
    cfg = FinetuneConfig(env_steps=200, warmup_env_steps=50, log_every=100, eval_every=100, eval_episodes=2)
    agent, last = finetune(offline_run / "iql", env, GroundTruthReward(), cfg, tmp_path / "ft")
    env.close()
    assert last["updates"] == 150  # one update per env step after the 50-step warm-up
    assert 0.0 <= last["eval/success_rate"] <= 1.0
    payload, _ = load_checkpoint(tmp_path / "ft")
    assert payload["step"] == 200 and payload["finetune"]["offline_ratio"] == 0.75
    before, _ = load_checkpoint(offline_run / "iql")
    changed = [k for k in payload["agent"] if not torch.equal(payload["agent"][k], before["agent"][k])]
    assert any(k.startswith("actor.") for k in changed) and any(k.startswith("critic.") for k in changed)


def test_finetune_refuses_a_mismatched_task(offline_run, tmp_path):
    env = make_env("gym/HalfCheetah-v5")
    with pytest.raises(ValueError, match="does not fit 'gym/HalfCheetah-v5': state dim 39 != 17"):
        finetune(offline_run / "iql", env, GroundTruthReward(), FinetuneConfig(env_steps=10), tmp_path / "x")
    env.close()


def test_online_replay_ring_buffer():
    r = OnlineReplay(4, 2, 1, torch.device("cpu"), seed=0)
    for i in range(3):
        r.add({"obs": torch.full((2, 2), float(i)), "actions": torch.zeros(2, 1), "rewards": torch.full((2,), float(i)),
               "next_obs": torch.zeros(2, 2), "terminals": torch.zeros(2, dtype=torch.bool)})
    assert r.size == 4
    assert sorted(r.data["rewards"].tolist()) == [1.0, 1.0, 2.0, 2.0]  # the oldest pair was overwritten
    assert set(r.sample(64)["rewards"].tolist()) <= {1.0, 2.0}


def test_finetune_and_eval_cli(offline_run, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(offline_run / "iql"), "--steps", "120", "--warmup", "60",
                 "--eval-every", "120", "--eval-episodes", "2", "--out", str(out)]) == 0
    assert checkpoint_paths(out) and (out / "report.md").exists() and (out / "curves.png").exists()
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(out), "--episodes", "2", "--num-envs", "2"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= result["eval/success_rate"] <= 1.0
    # fine-tuning's last periodic evaluation (one env) saw the same layouts as `eval` on two envs: the same returns
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    periodic = [r for r in rows if "eval/return_mean" in r and "critic_loss" in r]
    assert periodic and periodic[-1]["eval/return_mean"] == pytest.approx(result["eval/return_mean"], rel=1e-4)
    assert (out / "episode.gif").stat().st_size > 1000
    assert main(["eval", "--checkpoint", str(out), "--task", "gym/Hopper-v5", "--episodes", "1"]) == 2
    assert "does not fit" in capsys.readouterr().err


@pytest.mark.slow
def test_finetune_with_env_workers_steps_while_updating(offline_run, tmp_path, capsys, monkeypatch):
    from robot_rl.envs.subproc import SubprocEnv

    calls = {"step": 0, "step_async": 0}
    for name in calls:
        original = getattr(SubprocEnv, name)

        def counted(self, action, _original=original, _name=name):
            calls[_name] += 1
            return _original(self, action)
        monkeypatch.setattr(SubprocEnv, name, counted)
    env = make_env("metaworld/drawer-open-v3", num_envs=2, workers=2, episode_length=30)
    cfg = FinetuneConfig(env_steps=300, warmup_env_steps=50, log_every=100, eval_every=300, eval_episodes=2,
                         threads=1)
    try:
        _, last = finetune(offline_run / "iql", env, GroundTruthReward(), cfg, tmp_path / "ft")
    finally:
        env.close()
    assert last["updates"] == 250 and 0.0 <= last["eval/success_rate"] <= 1.0
    # 150 steps of 2 envs: the first by step(), the other 149 sent before the updates of the step before them
    assert calls["step_async"] - calls["step"] == 149
    err = capsys.readouterr().err
    assert re.search(r"finetune: torch CPU threads 1 \(threads setting\); learner on \S+; 2 env worker process\(es\)",
                     err)
    payload, _ = load_checkpoint(tmp_path / "ft")
    assert payload["step"] == 300 and payload["finetune"]["threads"] == 1


def test_finetune_algo_rlpd_starts_from_the_iql_actor_with_half_offline_batches(offline_run, tmp_path, capsys):
    from robot_rl.nn.networks import TanhGaussianActor
    from robot_rl.rl.policy import load_policy

    env = make_env("metaworld/drawer-open-v3", num_envs=2, episode_length=30)
    cfg = FinetuneConfig(env_steps=300, warmup_env_steps=100, log_every=150, eval_every=300, eval_episodes=2,
                         threads=1, algo="rlpd", train_overrides={"rlpd": {"hidden": [32, 32], "critics": 3,
                                                                           "batch_size": 32, "utd": 2}})
    try:
        agent, last = finetune(offline_run / "iql", env, GroundTruthReward(), cfg, tmp_path / "rlpd")
    finally:
        env.close()
    err = capsys.readouterr().err
    assert "rlpd from the iql checkpoint's offline data: actor loaded from the checkpoint" in err
    assert "batches 16/32 offline" in err and "update path: eager" in err
    assert last["updates"] == 200 and 0.0 <= last["eval/success_rate"] <= 1.0
    assert all(math.isfinite(last[k]) for k in ("critic_loss", "actor_loss", "temperature_loss"))
    payload, _ = load_checkpoint(tmp_path / "rlpd")
    assert payload["algo"] == "rlpd" and payload["finetune"]["offline_ratio"] == 0.5
    assert payload["config"]["rlpd"]["critics"] == 3 and payload["step"] == 300
    iql, _ = load_checkpoint(offline_run / "iql")
    assert not torch.equal(payload["agent"]["actor.net.0.weight"], iql["agent"]["actor.net.0.weight"])
    assert isinstance(load_policy(tmp_path / "rlpd").actor, TanhGaussianActor)


def test_finetune_cli_algo_rlpd_and_its_refusals(offline_run, tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(offline_run / "iql"), "--algo", "rlpd", "--steps", "60",
                 "--warmup", "40", "--eval-episodes", "0", "--threads", "1", "--out", str(out), "--critic-warmup", "30",
                 "--set", "rlpd.hidden=[16]", "--set", "rlpd.critics=2", "--set", "rlpd.batch_size=16"]) == 0
    err = capsys.readouterr().err
    assert "actor started fresh" in err  # hidden [16] does not fit the IQL actor's [32, 32]
    assert "30 critic-only updates on the offline data first" in err
    payload, _ = load_checkpoint(out)
    assert payload["algo"] == "rlpd" and payload["config"]["rlpd"]["hidden"] == [16]
    # an RLPD run continues as RLPD; it cannot go back to IQL
    assert main(["finetune", "--checkpoint", str(out), "--algo", "iql", "--steps", "20", "--eval-episodes", "0",
                 "--out", str(tmp_path / "back")]) == 2
    assert "cannot fine-tune a rlpd checkpoint with iql" in capsys.readouterr().err
