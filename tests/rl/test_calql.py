"""Cal-QL (rl/calql.py): Monte-Carlo returns per episode, the calibrated CQL term, conservatism on a toy problem,
and train / resume / evaluate / fine-tune through the CLI on a small MetaWorld dataset."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.data import DatasetWriter, Episode, TransitionSampler
from robot_rl.envs import make_env
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint
from robot_rl.nn.networks import TanhGaussianActor
from robot_rl.rl import finetune as finetune_module
from robot_rl.rl.agent import gradient_step
from robot_rl.rl.calql import (
    NO_MC_RETURN,
    CalQL,
    CalQLConfig,
    calibrated_logsumexp_terms,
    mc_returns,
    refresh_mc_return,
)
from robot_rl.rl.finetune import FinetuneConfig, OnlineReplay, finetune, mixed_batch
from robot_rl.rl.policy import load_policy
from robot_rl.rl.train import TrainConfig, load_offline_data, make_agent


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_mc_returns_are_discounted_sums_per_episode_and_truncated_sums_at_time_limits():
    rewards = np.array([10.0, 20.0, 1.0, 2.0, 3.0], np.float32)
    episode = np.array([0, 0, 1, 1, 1])
    terminals = np.array([False, False, False, False, True])  # episode 0 is truncated (time limit), 1 terminates
    g = 0.9
    expected = [10 + g * 20, 20.0, 1 + g * 2 + g * g * 3, 2 + g * 3, 3.0]
    np.testing.assert_allclose(mc_returns(rewards, episode, terminals, g), expected, rtol=1e-6)


def test_offline_data_carries_mc_return_only_for_calql(tmp_path):
    spec = EnvSpec(name="toy/line-v0", observations={"state": ArraySpec((1,))},
                   action=ActionSpec(1, "ee_delta", scale=(1.0,), offset=(0.0,)), max_episode_steps=3)
    path = tmp_path / "two.h5"
    with DatasetWriter(path, spec, source="test") as w:
        for rewards, terminal in (([0.5, 4.0], False), ([1.0, 0.0, 2.0], True)):  # truncated, then terminated
            n = len(rewards)
            dones = np.zeros(n, bool)
            dones[-1] = True
            w.add_episode(Episode(states=np.zeros((n, 1), np.float32), actions=np.zeros((n, 1), np.float32),
                                  rewards=np.array(rewards, np.float32), next_states=np.zeros((n, 1), np.float32),
                                  terminals=dones & terminal, dones=dones))
    cfg = TrainConfig(dataset=str(path), algo="calql", normalize_rewards=False, normalize_obs=False,
                      calql=CalQLConfig(discount=0.5))
    data = load_offline_data(cfg)
    np.testing.assert_allclose(data.arrays["mc_return"], [0.5 + 0.5 * 4, 4.0, 1 + 0.25 * 2, 1.0, 2.0])
    scaled = load_offline_data(TrainConfig(dataset=str(path), algo="calql", calql=CalQLConfig(discount=0.5)))
    np.testing.assert_allclose(scaled.arrays["mc_return"], np.array([2.5, 4.0, 1.5, 1.0, 2.0]) * scaled.reward_scale,
                               rtol=1e-6)  # of the rewards train learns from (scaled)
    assert "mc_return" not in load_offline_data(TrainConfig(dataset=str(path), algo="rlpd")).arrays


def test_calibrated_terms_clip_policy_q_values_below_by_the_mc_return():
    q_random = torch.tensor([[[0.0, 1.0]]])  # [E=1, B=1, n=2]
    q_current = torch.tensor([[[-3.0, 5.0]]])
    q_next = torch.tensor([[[-1.0, 2.0]]])
    logp_current, logp_next = torch.tensor([[0.5, -0.5]]), torch.tensor([[0.2, 0.1]])
    mc = torch.tensor([1.5])
    terms = calibrated_logsumexp_terms(q_random, q_current, logp_current, q_next, logp_next, mc, 2, True)
    density = 2 * math.log(0.5)
    expected = [0 - density, 1 - density, 1.5 - 0.2, 2.0 - 0.1, 1.5 - 0.5, 5.0 + 0.5]  # max(Q, 1.5) - log pi
    torch.testing.assert_close(terms, torch.tensor([[expected]]))
    plain = calibrated_logsumexp_terms(q_random, q_current, logp_current, q_next, logp_next, mc, 2, False)
    torch.testing.assert_close(plain[0, 0, 2:], torch.tensor([-1.0 - 0.2, 2.0 - 0.1, -3.0 - 0.5, 5.0 + 0.5]))
    off = calibrated_logsumexp_terms(q_random, q_current, logp_current, q_next, logp_next,
                                     torch.tensor([NO_MC_RETURN]), 2, True)
    torch.testing.assert_close(off, plain)  # -inf: no calibration (online rows)


def _batch(mc_return: float, rows: int = 16, seed: int = 1) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"obs": torch.randn(rows, 3, generator=g), "actions": torch.rand(rows, 2, generator=g) * 2 - 1,
            "rewards": torch.randn(rows, generator=g), "next_obs": torch.randn(rows, 3, generator=g),
            "terminals": torch.zeros(rows, dtype=torch.bool), "mc_return": torch.full((rows,), mc_return)}


def _critic_loss(agent: CalQL, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    torch.manual_seed(3)
    return agent.losses(batch)["critic_loss"].detach()


def test_calibration_raises_the_cql_loss_when_mc_return_is_above_q_and_is_off_below_it():
    torch.manual_seed(0)
    cal = CalQL(3, 2, CalQLConfig(hidden=(16,), actions=4))
    plain = CalQL(3, 2, CalQLConfig(hidden=(16,), actions=4, calibrated=False))
    plain.load_state_dict(cal.state_dict())
    high, low = _batch(100.0), _batch(-100.0)  # fresh critics: Q near 0, far below 100 and far above -100
    assert _critic_loss(cal, high) > _critic_loss(plain, high) + 100  # logsumexp >= max(Q, 100) - log pi
    torch.testing.assert_close(_critic_loss(cal, low), _critic_loss(plain, low))
    torch.testing.assert_close(_critic_loss(cal, _batch(NO_MC_RETURN)), _critic_loss(plain, low))
    torch.manual_seed(3)
    assert float(cal.losses(high)["calibrated_frac"]) == 1.0


def test_one_update_is_one_joint_gradient_step():
    torch.manual_seed(0)
    a = CalQL(3, 2, CalQLConfig(hidden=(16,), actions=3))
    b = CalQL(3, 2, CalQLConfig(hidden=(16,), actions=3))
    b.load_state_dict(a.state_dict())
    batch = _batch(0.0)
    torch.manual_seed(5)
    a.update(batch)
    torch.manual_seed(5)
    gradient_step(b, b.losses(batch))
    changed = False
    for (name, p), (_, q), (_, r) in zip(a.state_dict().items(), b.state_dict().items(),
                                         CalQL(3, 2, CalQLConfig(hidden=(16,))).state_dict().items(), strict=True):
        assert torch.equal(p, q), name
        changed |= not torch.equal(p, r)
    assert changed


def _narrow_data(n: int = 2000) -> dict[str, torch.Tensor]:
    """Dataset actions near 0.5 only; reward 1 everywhere, so an unregularized critic has no reason to rank them."""
    g = torch.Generator().manual_seed(0)
    s = torch.rand(n, 2, generator=g) * 2 - 1
    a = 0.5 + 0.05 * torch.randn(n, 2, generator=g)
    return {"obs": s, "actions": a, "rewards": torch.ones(n), "next_obs": torch.rand(n, 2, generator=g) * 2 - 1,
            "terminals": torch.ones(n, dtype=torch.bool), "mc_return": torch.ones(n)}


def _gap_after(alpha: float, updates: int = 150) -> tuple[float, float, float]:
    torch.manual_seed(0)
    data = _narrow_data()
    sampler = TransitionSampler(data, "cpu", seed=0)
    agent = CalQL(2, 2, CalQLConfig(hidden=(32, 32), actions=4, cql_alpha=alpha, critic_lr=1e-3, batch_size=64))
    first = agent.update(sampler.sample(64))
    for _ in range(updates):
        agent.update(sampler.sample(64))
    obs = data["obs"][:256]
    with torch.no_grad():
        q_data = agent.critic(obs, data["actions"][:256]).mean()
        q_ood = agent.critic(obs, torch.full((256, 2), -0.7)).mean()  # far from every dataset action
    return float(first["cql_gap"]), float(q_data), float(q_ood)


def test_cql_term_is_positive_and_pushes_out_of_distribution_q_below_dataset_q():
    gap, q_data, q_ood = _gap_after(5.0)
    assert gap > 0  # logsumexp over sampled actions (importance-corrected) exceeds Q of the data action
    assert q_data - q_ood > 0.5, (q_data, q_ood)
    _, q_data0, q_ood0 = _gap_after(0.0)  # no CQL term: no such ordering (the rewards do not prefer any action)
    assert q_data - q_ood > 3 * abs(q_data0 - q_ood0), (q_data, q_ood, q_data0, q_ood0)


def test_finetuning_batches_carry_no_mc_return_for_online_rows():
    offline = TransitionSampler({"obs": torch.zeros(10, 2), "actions": torch.zeros(10, 1), "rewards": torch.zeros(10),
                                 "next_obs": torch.zeros(10, 2), "terminals": torch.zeros(10, dtype=torch.bool),
                                 "mc_return": torch.full((10,), 7.0)}, "cpu", seed=0)
    replay = OnlineReplay(8, 2, 1, torch.device("cpu"), seed=0, mc_return=True)
    replay.add({"obs": torch.ones(4, 2), "actions": torch.ones(4, 1), "rewards": torch.ones(4),
                "next_obs": torch.ones(4, 2), "terminals": torch.zeros(4, dtype=torch.bool)})
    batch = mixed_batch(offline, replay, 8, 4)
    assert batch["mc_return"][:4].eq(7.0).all() and batch["mc_return"][4:].eq(NO_MC_RETURN).all()
    assert "mc_return" not in OnlineReplay(8, 2, 1, torch.device("cpu"), seed=0).data


def test_refresh_mc_return_follows_relabeled_rewards_into_the_samplers_batches():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0])
    episode = np.array([0, 0, 1, 1])
    terminals = torch.tensor([False, False, False, True])
    sampler = TransitionSampler({"obs": torch.zeros(4, 2), "rewards": rewards.clone(), "terminals": terminals,
                                 "mc_return": torch.from_numpy(mc_returns(rewards.numpy(), episode,
                                                                          terminals.numpy(), 0.5))}, "cpu", seed=0)
    sampler.data["rewards"].copy_(torch.tensor([10.0, 20.0, 30.0, 40.0]))  # an online reward relabeled the rows
    refresh_mc_return(sampler.data, episode, 0.5)
    want = [10 + 0.5 * 20, 20.0, 30 + 0.5 * 40, 40.0]
    np.testing.assert_allclose(sampler.data["mc_return"].numpy(), want)
    batch = sampler.sample(64)  # batches read the packed columns, so they carry the new returns
    by_reward = dict(zip(batch["rewards"].tolist(), batch["mc_return"].tolist(), strict=True))
    assert by_reward == {r: g for r, g in zip([10.0, 20.0, 30.0, 40.0], want, strict=True) if r in by_reward}
    assert len(by_reward) == 4


class _Doubling:
    """A reward that learns online (``RewardLearner`` and ``RewardSource``): at env step 40 it changes from the
    simulator's reward to a constant 2.0, which it also uses for the offline rows."""

    name, relabels_offline = "doubling", True

    def __init__(self) -> None:
        self.changed = False

    def __call__(self, obs, action, next_obs, env_reward):
        return torch.full((len(action),), 2.0) if self.changed else env_reward.float()

    def observe(self, *args) -> None:
        pass

    def update(self, env_steps: int) -> bool:
        if env_steps == 40 and not self.changed:
            self.changed = True
            return True
        return False

    def rewards(self, states, actions):
        return torch.full((len(states),), 2.0)

    def restart(self) -> None:
        pass

    def metrics(self):
        return {}


def test_finetune_recomputes_calql_mc_returns_after_an_online_relabel_of_the_offline_rows(metaworld_data, tmp_path,
                                                                                         monkeypatch):
    run = tmp_path / "calql"
    assert main(["train", "--dataset", str(metaworld_data), "--algo", "calql", "--steps", "10", "--out", str(run),
                 "--device", "cpu", "--eval-episodes", "0", "--set", "calql.hidden=[16,16]",
                 "--set", "calql.batch_size=16", "--set", "calql.actions=2", "--set", "log_every=10"]) == 0
    seen = []

    def spy(data, episode_index, discount):
        refresh_mc_return(data, episode_index, discount)
        seen.append((data["rewards"].clone(), data["mc_return"].clone(), episode_index, discount))

    monkeypatch.setattr(finetune_module, "refresh_mc_return", spy)
    env = make_env("metaworld/drawer-open-v3", num_envs=1, episode_length=30)
    reward = _Doubling()
    try:
        finetune(run, env, reward, FinetuneConfig(env_steps=60, warmup_env_steps=20, log_every=60, eval_every=0,
                                                  eval_episodes=0), tmp_path / "ft", learner=reward)
    finally:
        env.close()
    assert len(seen) == 1
    rewards, returns, episode_index, discount = seen[0]
    payload, _ = load_checkpoint(run)
    assert discount == payload["config"]["calql"]["discount"] and len(episode_index) == 90  # 3 episodes of 30
    scale = rewards[0].item() / 2.0
    assert torch.allclose(rewards, torch.full_like(rewards, 2.0 * scale))  # relabeled to the new reward
    ends = np.r_[episode_index[1:] != episode_index[:-1], True]
    first = 2.0 * scale * sum(discount ** k for k in range(30))  # return-to-go from each episode's first row
    assert returns[ends].tolist() == pytest.approx([2.0 * scale] * 3)
    assert returns[np.r_[True, ends[:-1]]].tolist() == pytest.approx([first] * 3, rel=1e-5)


@pytest.fixture(scope="module")
def metaworld_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("calql")
    data = root / "d.h5"
    assert main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "3", "--episode-length", "30",
                 "--out", str(data)]) == 0
    return data


def test_train_algo_calql_through_the_cli_resumes_bit_identical_evaluates_and_finetunes(metaworld_data, tmp_path,
                                                                                       capsys):
    small = ["--set", "calql.hidden=[32,32]", "--set", "calql.batch_size=32", "--set", "calql.actions=4",
             "--set", "threads=1", "--set", "log_every=25", "--set", "checkpoint_every=25"]
    out = tmp_path / "calql"
    assert main(["train", "--dataset", str(metaworld_data), "--algo", "calql", "--steps", "50", "--out", str(out),
                 "--device", "cpu", "--eval-episodes", "1", *small]) == 0
    assert "update path: eager on cpu" in capsys.readouterr().err
    payload, _ = load_checkpoint(out)
    assert payload["algo"] == "calql" and payload["step"] == 50 and payload["config"]["calql"]["actions"] == 4
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    trained = [row for row in rows if "critic_loss" in row]
    assert len(trained) == 2
    assert all(k in trained[-1] for k in ("critic_loss", "cql_gap", "calibrated_frac", "actor_loss", "temperature"))
    evaluated = json.loads((out / "eval.json").read_text())  # the trained policy ran an episode in the sim task
    assert evaluated and (out / "report.md").exists()
    assert evaluated["eval/episodes"] == 1  # with the success rate's 95% interval, which one episode leaves wide
    assert evaluated["eval/success_ci95_low"] <= evaluated["eval/success_rate"] <= evaluated["eval/success_ci95_high"]
    assert evaluated["eval/success_ci95_high"] - evaluated["eval/success_ci95_low"] > 0.7
    policy = load_policy(out)
    assert isinstance(policy.actor, TanhGaussianActor)
    assert policy({"state": torch.zeros(2, 39)}).shape == (2, 4)
    # a run killed after its step-25 checkpoint, resumed, equals the straight run bit for bit
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint_paths(out)[0], resumed / "checkpoints")
    shutil.copy(out / "config.yaml", resumed / "config.yaml")
    assert main(["train", "--resume", "--out", str(resumed), "--steps", "50", "--device", "cpu",
                 "--eval-episodes", "0"]) == 0
    straight, again = load_checkpoint(out)[0], load_checkpoint(resumed)[0]
    assert again["step"] == 50
    for name, value in straight["agent"].items():
        assert torch.equal(value, again["agent"][name]), name
    # fine-tuning continues the Cal-QL agent online (online rows uncalibrated), half offline batches
    ft = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(out), "--steps", "60", "--warmup", "40", "--eval-episodes", "0",
                 "--threads", "1", "--out", str(ft)]) == 0
    assert "calql agent of the checkpoint" in capsys.readouterr().err
    tuned, _ = load_checkpoint(ft)
    assert tuned["algo"] == "calql" and tuned["finetune"]["offline_ratio"] == 0.5
    assert math.isfinite(tuned["metrics"]["critic_loss"])
    key = next(k for k in straight["agent"] if k.startswith("critic."))
    assert not torch.equal(tuned["agent"][key], straight["agent"][key])


def test_finetune_algo_calql_starts_from_an_iql_run_with_new_critics_and_a_critic_warmup(metaworld_data, tmp_path,
                                                                                         capsys):
    iql = tmp_path / "iql"
    assert main(["train", "--dataset", str(metaworld_data), "--steps", "20", "--out", str(iql), "--device", "cpu",
                 "--set", "iql.hidden=[32,32]", "--set", "log_every=20", "--eval-episodes", "0"]) == 0
    ft = tmp_path / "ft"
    assert main(["finetune", "--checkpoint", str(iql), "--algo", "calql", "--steps", "50", "--warmup", "40",
                 "--eval-episodes", "0", "--threads", "1", "--out", str(ft), "--critic-warmup", "5",
                 "--set", "calql.hidden=[32,32]", "--set", "calql.batch_size=16", "--set", "calql.actions=2"]) == 0
    err = capsys.readouterr().err
    assert "calql from the iql checkpoint's offline data: actor loaded from the checkpoint" in err
    assert "5 critic-only updates on the offline data first" in err and "batches 8/16 offline" in err
    payload, _ = load_checkpoint(ft)
    assert payload["algo"] == "calql" and payload["config"]["calql"]["hidden"] == [32, 32]
    # a Cal-QL run cannot go back to IQL (no way to start IQL's value network from it): one line, exit 2
    assert main(["finetune", "--checkpoint", str(ft), "--algo", "iql", "--steps", "20", "--eval-episodes", "0",
                 "--out", str(tmp_path / "back")]) == 2
    assert "cannot fine-tune a calql checkpoint with iql" in capsys.readouterr().err


def test_calql_refuses_bad_settings_and_images_in_one_line(metaworld_data):
    with pytest.raises(ValueError, match="calql needs critics >= 1"):
        CalQLConfig(actions=0)
    with pytest.raises(ValueError, match="algo 'calql' learns from state observations only"):
        make_agent(TrainConfig(dataset=str(metaworld_data), algo="calql", obs="image", image_size=16), 2, 2)
