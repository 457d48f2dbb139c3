"""StepGraphs: K captured steps equal K eager ones; the reward-model ensemble and the success classifier use it.

On the CPU the recorded body runs without capture (warm-up undone, sums, remainder steps); the gpu-marked tests
capture for real.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from robot_rl.nn.cuda_graph import StepGraphs

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (CUDA-graph capture)")


def _toy(device: torch.device):
    """A step with every ingredient: a generator-drawn batch, dropout (default generator), AdamW, a counter."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Dropout(0.1),
                                torch.nn.Linear(32, 1)).to(device)
    data = torch.randn(500, 5, generator=torch.Generator().manual_seed(2)).to(device)
    return model, data


def _make_step(model, data, device):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    gen = torch.Generator(device=device).manual_seed(3)
    counter = torch.zeros((), device=device)

    def step() -> torch.Tensor:
        batch = data[torch.randint(len(data), (64,), device=device, generator=gen)]
        loss = (model(batch[:, :4]).squeeze(-1) - batch[:, 4]).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        counter.add_(1)
        return torch.stack([loss.detach(), counter.clone()])

    return step, opt, gen, counter


def _compare(device: torch.device) -> None:
    model_a, data = _toy(device)
    model_b = copy.deepcopy(model_a)
    step_a, *_ = _make_step(model_a, data, device)
    step_b, opt_b, gen_b, counter_b = _make_step(model_b, data, device)
    graphs = StepGraphs(step_b, [model_b], opt_b, [gen_b], 4, extra=[counter_b])
    rng = torch.cuda.get_rng_state() if device.type == "cuda" else torch.get_rng_state()
    rng_b = rng.clone()
    for n in (8, 3, 1):
        set_rng = torch.cuda.set_rng_state if device.type == "cuda" else torch.set_rng_state
        get_rng = torch.cuda.get_rng_state if device.type == "cuda" else torch.get_rng_state
        set_rng(rng)
        eager = sum(step_a() for _ in range(n))
        rng = get_rng()
        set_rng(rng_b)
        replayed = graphs.run(n)
        rng_b = get_rng()
        assert torch.allclose(eager, replayed, rtol=1e-4, atol=1e-5), (n, eager, replayed)
        for p, q in zip(model_a.parameters(), model_b.parameters(), strict=True):
            assert torch.allclose(p, q, rtol=1e-4, atol=1e-5)


def test_step_graph_body_on_cpu_equals_eager_steps():
    _compare(torch.device("cpu"))


def test_step_graphs_refuse_zero_steps():
    model, data = _toy(torch.device("cpu"))
    step, opt, gen, _ = _make_step(model, data, torch.device("cpu"))
    with pytest.raises(ValueError, match="n >= 1"):
        StepGraphs(step, [model], opt, [gen], 4).run(0)


@pytest.mark.gpu
@needs_cuda
def test_step_graphs_on_cuda_equal_eager_steps():
    _compare(torch.device("cuda"))


def _preferences(n: int = 300):
    from robot_rl.rewards.model import PreferenceData

    rng = np.random.default_rng(0)
    first, second = rng.normal(size=(n, 10, 3)).astype(np.float32), rng.normal(size=(n, 10, 3)).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, 10, 2)).astype(np.float32)
    labels = (first[..., 0].sum(1) < second[..., 0].sum(1)).astype(np.float32)
    return PreferenceData(first, actions, second, actions.copy(), labels)


@pytest.mark.gpu
@needs_cuda
def test_reward_model_training_graphed_equals_eager_on_cuda():
    from robot_rl.rewards.model import RewardModelConfig, train_reward_model

    config = RewardModelConfig(steps=40, log_every=20, batch_size=32, hidden=(64, 64))
    graphed, m_g = train_reward_model(_preferences(), config, device="cuda")
    eager, m_e = train_reward_model(_preferences(), dataclasses.replace(config, cuda_graphs=False), device="cuda")
    assert m_g["path"] == "cuda-graph" and m_e["path"] == "eager"
    for p, q in zip(graphed.parameters(), eager.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-5)
    assert m_g["loss"] == pytest.approx(m_e["loss"], rel=1e-3)


def test_reward_trainer_graph_body_on_cpu_equals_eager_steps():
    from robot_rl.rewards.model import RewardModelConfig
    from robot_rl.rewards.model.training import RewardTrainer, _build_model

    data = _preferences(100)
    config = RewardModelConfig(batch_size=16, hidden=(32,))
    trainers = []
    for _ in range(2):
        torch.manual_seed(0)
        model = _build_model(config, 3, 2, np.zeros(3), np.ones(3))
        states = torch.as_tensor(np.stack([data.first_states, data.second_states], 1))
        actions = torch.as_tensor(np.stack([data.first_actions, data.second_actions], 1))
        trainers.append(RewardTrainer(model, states, actions, torch.as_tensor(data.labels)))
    eager, graphed = trainers
    graphs = StepGraphs(graphed.step, [graphed.model], graphed.optimizer, [graphed.generator], 4)
    a = sum(eager.step() for _ in range(7))
    b = graphs.run(7)
    assert torch.allclose(a, b, rtol=1e-5, atol=1e-5)
    for p, q in zip(eager.model.parameters(), graphed.model.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
@needs_cuda
def test_success_classifier_training_graphed_equals_eager_on_cuda():
    from robot_rl.rewards.success.classifier import SuccessConfig
    from robot_rl.rewards.success.training import fit_classifier

    rng = np.random.default_rng(0)
    states = rng.normal(size=(400, 4)).astype(np.float32)
    labels = (states[:, 0] > 0.3).astype(np.float32)
    weights = np.ones(400)
    config = SuccessConfig(steps=48, log_every=16, batch_size=32, hidden=(32, 32))
    runs = []
    for graphs in (True, False):
        torch.manual_seed(0)
        runs.append(fit_classifier(dataclasses.replace(config, cuda_graphs=graphs), 4, None, states, None, labels,
                                   weights, "cuda"))
    (m_g, last_g), (m_e, last_e) = runs
    for p, q in zip(m_g.parameters(), m_e.parameters(), strict=True):
        assert torch.allclose(p, q, rtol=1e-3, atol=1e-5)
    assert last_g["loss"] == pytest.approx(last_e["loss"], rel=1e-3)
