"""RLPD (rl/rlpd.py): it learns on a toy problem, its target uses a seeded random subset of critics, fine-tuning
batches are half offline, and it trains, resumes and fine-tunes through the CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.data import TransitionSampler
from robot_rl.nn.checkpoint import checkpoint_paths, load_checkpoint
from robot_rl.nn.networks import GaussianActor, TanhGaussianActor
from robot_rl.rl.agent import gradient_step
from robot_rl.rl.finetune import OnlineReplay, mixed_batch
from robot_rl.rl.policy import load_policy
from robot_rl.rl.rlpd import RLPD, RLPDConfig, random_subset, td_target
from robot_rl.rl.train import TrainConfig, describe_path, make_agent

SMALL = RLPDConfig(critics=4, hidden=(32, 32), utd=2, batch_size=64)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one thread is several times faster than two on a busy 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _bandit(n: int = 4000, seed: int = 0) -> tuple[dict[str, torch.Tensor], torch.Generator]:
    """One-step episodes: reward 1 - |a - best(s)| with best(s) = -0.8 s; every transition terminal."""
    g = torch.Generator().manual_seed(seed)
    s, a = torch.rand(n, 2, generator=g) * 2 - 1, torch.rand(n, 2, generator=g) * 2 - 1
    r = 1 - (a - (-0.8 * s)).norm(dim=1)
    return {"obs": s, "actions": a, "rewards": r, "next_obs": torch.rand(n, 2, generator=g) * 2 - 1,
            "terminals": torch.ones(n, dtype=torch.bool)}, g


def test_losses_are_finite_and_fall_and_the_policy_improves_on_a_toy_bandit():
    data, g = _bandit()
    sampler = TransitionSampler(data, "cpu", seed=0)
    torch.manual_seed(0)
    agent = RLPD(2, 2, RLPDConfig(critics=4, hidden=(32, 32), utd=2, batch_size=64, actor_lr=1e-3, critic_lr=1e-3))
    test = torch.rand(512, 2, generator=g) * 2 - 1

    def error() -> float:
        return float((agent.actor.act(test) - (-0.8 * test)).norm(dim=1).mean())

    before = error()
    history = [agent.update(sampler.sample(128)) for _ in range(300)]
    assert all(torch.isfinite(v).all() for m in history for v in m.values())

    def mean(key: str, part: slice) -> float:
        return sum(float(m[key]) for m in history[part]) / len(history[part])

    first, last = slice(0, 40), slice(-40, None)
    assert mean("critic_loss", last) < 0.2 * mean("critic_loss", first)
    assert mean("temperature_loss", last) < mean("temperature_loss", first)  # entropy above target: alpha falls
    assert mean("temperature", last) < 1.0
    assert error() < 0.7 * before, (before, error())


def test_target_takes_the_min_over_a_seeded_random_subset_of_target_critics():
    torch.manual_seed(0)
    agent = RLPD(3, 2, RLPDConfig(critics=6, target_subset=2, hidden=(16,)))
    with torch.no_grad():  # members disagree a lot, so the min over a subset differs from the min over all
        for p in agent.target_critic.parameters():
            p.normal_(0, 1)
    g = torch.Generator().manual_seed(1)
    batch = {"obs": torch.randn(32, 3, generator=g), "actions": torch.rand(32, 2, generator=g) * 2 - 1,
             "rewards": torch.randn(32, generator=g), "next_obs": torch.randn(32, 3, generator=g),
             "terminals": torch.rand(32, generator=g) < 0.3}
    subsets = set()
    for seed in range(20):
        torch.manual_seed(seed)
        target = td_target(agent, batch)
        torch.manual_seed(seed)  # the same draws by hand: the next action, then the subset
        next_a, next_logp = agent.actor.sample(batch["next_obs"])
        subset = random_subset(6, 2, torch.device("cpu"))
        assert subset.unique().numel() == 2
        subsets.add(tuple(sorted(subset.tolist())))
        with torch.no_grad():
            qs = agent.target_critic(batch["next_obs"], next_a)  # [6, B]
            soft = qs[subset].min(0).values - agent.log_alpha.exp() * next_logp
            full = qs.min(0).values - agent.log_alpha.exp() * next_logp
        alive = 1.0 - batch["terminals"].float()
        torch.testing.assert_close(target, batch["rewards"] + 0.99 * alive * soft)
        assert not torch.allclose(target, batch["rewards"] + 0.99 * alive * full)  # not the min over all six
        torch.manual_seed(seed)
        assert torch.equal(td_target(agent, batch), target)  # seeded: the same subset again
    assert len(subsets) > 5  # many different pairs across seeds


def test_fine_tuning_batches_are_half_offline_in_every_minibatch():
    offline = TransitionSampler({"obs": torch.zeros(100, 2), "actions": torch.zeros(100, 1),
                                 "rewards": torch.zeros(100), "next_obs": torch.zeros(100, 2),
                                 "terminals": torch.zeros(100, dtype=torch.bool)}, "cpu", seed=0)
    replay = OnlineReplay(50, 2, 1, torch.device("cpu"), seed=0)
    replay.add({"obs": torch.ones(50, 2), "actions": torch.ones(50, 1), "rewards": torch.ones(50),
                "next_obs": torch.ones(50, 2), "terminals": torch.zeros(50, dtype=torch.bool)})
    batch = mixed_batch(offline, replay, 16, 8, parts=3)
    assert batch["rewards"].shape == (48,)
    for chunk in batch["rewards"].chunk(3):  # RLPD's three critic minibatches: 8 offline (0) and 8 new (1) each
        assert chunk.sum().item() == 8.0
    assert torch.equal(mixed_batch(offline, replay, 16, 16)["rewards"], torch.zeros(16))  # offline-only


def test_utd_one_update_is_one_joint_gradient_step_and_utd_k_takes_k_critic_steps():
    torch.manual_seed(0)
    data, _ = _bandit(512)
    a = RLPD(2, 2, RLPDConfig(critics=3, hidden=(16,), utd=1, batch_size=32))
    b = RLPD(2, 2, RLPDConfig(critics=3, hidden=(16,), utd=1, batch_size=32))
    b.load_state_dict(a.state_dict())
    batch = {k: v[:32] for k, v in data.items()}
    torch.manual_seed(5)
    a.update(batch)
    torch.manual_seed(5)
    gradient_step(b, b.losses(batch))
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    c = RLPD(2, 2, RLPDConfig(critics=3, hidden=(16,), utd=3, batch_size=32))
    actor_before = [p.clone() for p in c.actor.parameters()]
    c.update({k: v[:96] for k, v in data.items()})
    steps = {id(p): s["step"] for p, s in c.optimizer.state.items()}
    assert all(int(steps[id(p)]) == 3 for p in c.critic.parameters())
    assert all(int(steps[id(p)]) == 1 for p in c.actor.parameters())
    assert any(not torch.equal(p, q) for p, q in zip(c.actor.parameters(), actor_before, strict=True))
    with pytest.raises(ValueError, match="utd \\* batch_size rows"):
        c.update({k: v[:50] for k, v in data.items()})


def test_an_iql_actor_loads_into_the_rlpd_actor_with_the_same_deterministic_actions():
    iql_actor = GaussianActor(5, 3, (16, 16))
    with torch.no_grad():
        iql_actor.log_std.fill_(-9.0)  # below the trainable range: clamped into it on loading
    agent = RLPD(5, 3, RLPDConfig(critics=2, hidden=(16, 16)))
    assert "actor loaded" in agent.load_actor(iql_actor.state_dict())
    obs = torch.randn(7, 5)
    torch.testing.assert_close(agent.actor.act(obs), iql_actor.act(obs))
    assert agent.actor.log_std.min().item() > TanhGaussianActor.LOG_STD_MIN
    other = RLPD(5, 3, RLPDConfig(critics=2, hidden=(8,)))
    assert "started fresh" in other.load_actor(iql_actor.state_dict())


def test_train_algo_rlpd_through_the_cli_and_resume_bit_identical(bandit_dataset, tmp_path, capsys):
    small = ["--set", "rlpd.hidden=[32,32]", "--set", "rlpd.critics=3", "--set", "rlpd.batch_size=32",
             "--set", "rlpd.utd=2", "--set", "threads=1", "--set", "log_every=20", "--set", "checkpoint_every=40"]
    out = tmp_path / "rlpd"
    assert main(["train", "--dataset", str(bandit_dataset), "--algo", "rlpd", "--steps", "80", "--out", str(out),
                 "--device", "cpu", "--eval-episodes", "0", *small]) == 0
    assert "update path: eager on cpu" in capsys.readouterr().err
    payload, _ = load_checkpoint(out)
    assert payload["algo"] == "rlpd" and payload["step"] == 80 and payload["config"]["rlpd"]["utd"] == 2
    assert any(k.startswith("critic.net.norms.") for k in payload["agent"])  # the LayerNorm critics
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(k in rows[-1] for k in ("critic_loss", "actor_loss", "temperature", "entropy"))
    policy = load_policy(out)
    assert isinstance(policy.actor, TanhGaussianActor) and policy({"state": torch.zeros(4, 2)}).shape == (4, 2)
    # a run killed after its step-40 checkpoint, resumed, equals the straight run bit for bit
    resumed = tmp_path / "resumed"
    (resumed / "checkpoints").mkdir(parents=True)
    shutil.copy(checkpoint_paths(out)[0], resumed / "checkpoints")
    shutil.copy(out / "config.yaml", resumed / "config.yaml")
    assert main(["train", "--resume", "--out", str(resumed), "--steps", "80", "--device", "cpu",
                 "--eval-episodes", "0"]) == 0
    straight, again = load_checkpoint(out)[0], load_checkpoint(resumed)[0]
    assert again["step"] == 80
    for name, value in straight["agent"].items():
        assert torch.equal(value, again["agent"][name]), name
    for k, state in straight["optimizer"]["state"].items():
        assert torch.equal(state["exp_avg"], again["optimizer"]["state"][k]["exp_avg"])


def test_rlpd_with_several_critic_steps_says_why_it_runs_eagerly_on_cuda(bandit_dataset):
    cfg = TrainConfig(dataset=str(bandit_dataset), algo="rlpd", rlpd=RLPDConfig(utd=4))
    line = describe_path(cfg, torch.device("cuda"))
    assert line.startswith("update path: eager on cuda (rlpd.utd=4: an update is 4 critic steps")
    one = TrainConfig(dataset=str(bandit_dataset), algo="rlpd", rlpd=RLPDConfig(utd=1))
    assert describe_path(one, torch.device("cuda")).startswith("update path: CUDA graph on cuda")


def test_rlpd_refuses_bad_settings_in_one_line(bandit_dataset):
    with pytest.raises(ValueError, match="critics >= 2"):
        RLPDConfig(critics=1)
    with pytest.raises(ValueError, match="rlpd.utd must be >= 1"):
        RLPDConfig(utd=0)
    with pytest.raises(ValueError, match="algo 'rlpd' learns from state observations only"):
        make_agent(TrainConfig(dataset=str(bandit_dataset), algo="rlpd", obs="image", image_size=16), 2, 2)


@pytest.mark.slow
@pytest.mark.parametrize("utd", [1, 2])
def test_compiled_rlpd_updates_match_eager_on_cpu(utd):
    """torch.compile'd losses give eager's numbers (inductor's own random stream is turned off: with it, the actor
    noise and the target subset differ from eager's draws, not the math)."""
    import torch._inductor.config as inductor

    with inductor.patch(fallback_random=True):
        _compare_compiled(utd)


def _compare_compiled(utd: int) -> None:
    from robot_rl.rl.compiled import compile_losses

    torch.manual_seed(0)
    cfg = RLPDConfig(hidden=(32, 32), critics=3, utd=utd, batch_size=32)
    eager, compiled = RLPD(5, 3, cfg), RLPD(5, 3, cfg)
    compiled.load_state_dict(eager.state_dict())
    compile_losses(compiled, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    for step in range(3):
        rows = 32 * utd
        batch = {"obs": torch.randn(rows, 5, generator=g), "actions": torch.rand(rows, 3, generator=g) * 2 - 1,
                 "rewards": torch.randn(rows, generator=g), "next_obs": torch.randn(rows, 5, generator=g),
                 "terminals": torch.rand(rows, generator=g) < 0.1}
        torch.manual_seed(100 + step)
        m_eager = eager.update(batch)
        torch.manual_seed(100 + step)
        m_compiled = compiled.update(batch)
        for k in m_eager:
            torch.testing.assert_close(m_compiled[k], m_eager[k], rtol=1e-4, atol=1e-5)
    for (name, p), q in zip(eager.state_dict().items(), compiled.state_dict().values(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-4, atol=1e-5, msg=name)
