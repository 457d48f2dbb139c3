"""The Bradley-Terry reward-model ensemble: it learns a known reward, its vectorized members equal members run
alone, training is deterministic, files round-trip, and bad inputs fail with one-line errors."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import robot_rl.rewards.model.training as training_module
from robot_rl.nn.networks import EnsembleLinear
from robot_rl.rewards.base import Segment, SegmentRef
from robot_rl.rewards.model import (
    PreferenceData,
    RewardModel,
    RewardModelConfig,
    RewardModelError,
    RewardTrainer,
    pair_logits,
    plot_reward_vs_truth,
    reward_correlation,
    train_reward_model,
)

GOAL = np.array([0.3, -0.2], np.float32)
SMALL = RewardModelConfig(hidden=(64, 64), batch_size=64, steps=400, lr=1e-3, valid_fraction=0.25)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small networks run fastest on one thread (and a busy 2-core machine stalls thread pools)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def episodes(n: int, seed: int, length: int = 30, dim: int = 4) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Moves between random points of [-1, 1]^2 (state dims 0-1; dims 2+ drift slowly, irrelevant), actions the
    noisy velocity; true reward r = -||s[:2] - GOAL||."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        w = np.linspace(0, 1, length)[:, None]
        pos = (1 - w) * rng.uniform(-1, 1, 2) + w * rng.uniform(-1, 1, 2) + rng.normal(0, 0.03, (length, 2))
        drift = rng.normal(0, 1, (1, dim - 2)) + np.cumsum(rng.normal(0, 0.05, (length, dim - 2)), axis=0)
        states = np.concatenate([pos, drift], axis=1).astype(np.float32)
        vel = np.diff(pos, axis=0, append=pos[-1:]) * 10 + rng.normal(0, 0.3, (length, 2))
        actions = np.clip(vel, -1, 1).astype(np.float32)
        out.append((states, actions, -np.linalg.norm(pos - GOAL, axis=1).astype(np.float32)))
    return out


def preferences(eps: list[tuple[np.ndarray, np.ndarray, np.ndarray]], pairs: int, seed: int, length: int = 10,
                flip: bool = False) -> PreferenceData:
    """Random segment pairs labeled by a perfect teacher (1 when the second has the higher true return)."""
    rng = np.random.default_rng(seed)

    def segment() -> tuple[np.ndarray, ...]:
        s, a, r = eps[rng.integers(len(eps))]
        t = rng.integers(len(s) - length + 1)
        return s[t:t + length], a[t:t + length], r[t:t + length]

    first = [segment() for _ in range(pairs)]
    second = [segment() for _ in range(pairs)]
    labels = np.array([float(b[2].sum() > a[2].sum()) for a, b in zip(first, second, strict=True)], np.float32)
    if flip:
        labels = 1.0 - labels

    def stack(segs: list[tuple[np.ndarray, ...]], i: int) -> np.ndarray:
        return np.stack([seg[i] for seg in segs])

    return PreferenceData(stack(first, 0), stack(first, 1), stack(second, 0), stack(second, 1), labels,
                          first_true=stack(first, 2), second_true=stack(second, 2))


@pytest.fixture(scope="module")
def trained() -> tuple[RewardModel, dict[str, Any], PreferenceData]:
    data = preferences(episodes(60, seed=100), 400, seed=0)
    model, metrics = train_reward_model(data, SMALL)
    return model, metrics, data


def test_learns_a_known_reward_from_preferences(trained: tuple[RewardModel, dict[str, Any], PreferenceData]) -> None:
    model, metrics, _ = trained
    assert metrics["train_pairs"] == 300 and metrics["valid_pairs"] == 100
    assert metrics["valid_accuracy"] > 0.85, metrics
    assert metrics["valid_true_agreement"] > 0.85 and metrics["valid_true_pairs"] == 100
    assert all(acc > 0.8 for acc in metrics["valid_member_accuracy"]) and len(metrics["valid_member_accuracy"]) == 3
    assert metrics["train_accuracy"] > 0.9 and metrics["loss"] < 0.3
    corr = reward_correlation(model, episodes(30, seed=999))  # episodes never seen in training
    assert corr["pooled"] > 0.85, corr
    assert corr["mean_episode"] > 0.7 and corr["episodes"] == 30 and corr["steps"] == 900


def test_flipped_labels_learn_the_opposite_reward() -> None:
    """A sign error anywhere between labels, logits and loss shows up as anti-correlation with the truth."""
    data = preferences(episodes(60, seed=100), 400, seed=0, flip=True)
    model, metrics = train_reward_model(data, SMALL)
    assert metrics["valid_accuracy"] > 0.85  # it fits the (flipped) labels...
    assert metrics["valid_true_agreement"] < 0.15  # ...which disagree with the truth
    assert reward_correlation(model, episodes(30, seed=999))["pooled"] < -0.8


def test_plot_and_correlation_skip_unknown_truth(trained: tuple[RewardModel, dict[str, Any], PreferenceData],
                                                 tmp_path: Path) -> None:
    model, _, _ = trained
    eps = episodes(3, seed=7)
    s, a, r = eps[0]
    r = r.copy()
    r[:5] = np.nan
    eps[0] = (s, a, r)
    eps.append((s, a, np.full(len(s), np.nan, np.float32)))  # no truth at all: left out of the mean
    corr = reward_correlation(model, eps)
    assert corr["episodes"] == 3 and math.isnan(corr["per_episode"][3]) and corr["steps"] == 85
    png = plot_reward_vs_truth(model, eps[:3], tmp_path / "plots" / "reward_vs_truth.png", names=["a", "b", "c"])
    assert png.exists() and png.read_bytes()[:4] == b"\x89PNG"


def test_vectorized_members_equal_each_member_alone() -> None:
    torch.manual_seed(0)
    config = RewardModelConfig(hidden=(32, 32, 32), members=4)
    model = RewardModel(config, 5, 2, state_mean=torch.randn(5), state_std=torch.rand(5) + 0.5)
    states, actions = torch.randn(6, 7, 5), torch.rand(6, 7, 2) * 2 - 1
    out = model(states, actions)
    assert out.shape == (4, 6, 7) and out.abs().max() <= 1.0
    for e in range(4):
        alone = model.member(e)(states, actions)
        assert torch.allclose(out[e], alone, atol=1e-6)
        # by hand, from the stacked weights: LeakyReLU layers, tanh output
        x = torch.cat([(states - model.state_mean) / model.state_std, actions], -1)
        for i, layer in enumerate(model.layers):
            assert isinstance(layer, EnsembleLinear)
            x = x @ layer.weight[e] + layer.bias[e, 0]
            x = F.leaky_relu(x) if i < len(model.layers) - 1 else torch.tanh(x)
        assert torch.allclose(out[e], x.squeeze(-1), atol=1e-6)
    assert not torch.allclose(out[0], out[1], atol=1e-3)  # different initial weights
    assert torch.allclose(model.reward(states, actions), out.mean(0), atol=1e-6)
    probs = model.preference_probs(states[:3], actions[:3], states[3:], actions[3:])
    assert probs.shape == (4, 3)
    assert torch.allclose(probs, torch.sigmoid(out[:, 3:].sum(-1) - out[:, :3].sum(-1)), atol=1e-6)


def test_members_draw_their_own_minibatches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start every member from member 0's weights: only per-member bootstrap batches can make them differ."""
    build = training_module._build_model

    def identical_members(*args: Any) -> RewardModel:
        model = build(*args)
        with torch.no_grad():
            for p in model.layers.parameters():
                p.copy_(p[:1].expand_as(p))
        return model

    monkeypatch.setattr(training_module, "_build_model", identical_members)
    data = preferences(episodes(20, seed=1), 50, seed=1)
    model, _ = train_reward_model(data, dataclasses.replace(SMALL, steps=5, batch_size=8))
    for p in model.layers.parameters():
        assert not torch.allclose(p[0], p[1]) and not torch.allclose(p[1], p[2])


def test_one_step_changes_every_member_and_equal_labels_are_soft_targets() -> None:
    data = preferences(episodes(20, seed=2), 40, seed=2)
    model = RewardModel(RewardModelConfig(hidden=(16, 16)), 4, 2)
    states = torch.stack([torch.as_tensor(data.first_states), torch.as_tensor(data.second_states)], 1)
    actions = torch.stack([torch.as_tensor(data.first_actions), torch.as_tensor(data.second_actions)], 1)
    vector = model.vector_inputs(states, actions)
    index = torch.randint(40, (3, 16), generator=torch.Generator().manual_seed(0))
    logits = pair_logits(model, vector, None, index)
    F.binary_cross_entropy_with_logits(logits, torch.as_tensor(data.labels)[index]).backward()
    for layer in model.layers:
        assert isinstance(layer, EnsembleLinear)
        for p in (layer.weight, layer.bias):
            assert p.grad is not None and all(p.grad[e].abs().sum() > 0 for e in range(3))
    # all pairs "equally good": the fit is P = 1/2 everywhere, and no accuracy is defined
    equal = dataclasses.replace(data, labels=np.full(40, 0.5, np.float32))
    model, metrics = train_reward_model(equal, dataclasses.replace(SMALL, steps=150, batch_size=16))
    probs = model.preference_probs(data.first_states, data.first_actions, data.second_states, data.second_actions)
    assert (probs - 0.5).abs().max() < 0.1
    assert math.isnan(metrics["valid_accuracy"]) and math.isnan(metrics["train_accuracy"])
    assert metrics["loss"] == pytest.approx(math.log(2), abs=0.02)


def test_training_is_deterministic_per_seed() -> None:
    data = preferences(episodes(20, seed=3), 60, seed=3)
    config = dataclasses.replace(SMALL, steps=30, batch_size=16, log_every=10)
    calls: list[tuple[int, dict[str, float]]] = []
    a, ma = train_reward_model(data, config, progress=lambda step, m: calls.append((step, m)))
    b, mb = train_reward_model(data, config)
    c, _ = train_reward_model(data, dataclasses.replace(config, seed=1))
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.state_dict()["layers.0.weight"], c.state_dict()["layers.0.weight"])
    assert ma["loss"] == mb["loss"] and ma["valid_accuracy"] == mb["valid_accuracy"]
    assert [step for step, _ in calls] == [10, 20, 30] and set(calls[0][1]) == {"loss", "accuracy"}


def test_save_load_round_trip(trained: tuple[RewardModel, dict[str, Any], PreferenceData], tmp_path: Path) -> None:
    model, metrics, data = trained
    path = model.save(tmp_path / "run" / "reward_model.pt")
    assert [p.name for p in path.parent.iterdir()] == ["reward_model.pt"]  # no temporary file left behind
    loaded = RewardModel.load(path, "cpu")
    assert loaded.config == model.config and loaded.metrics["valid_accuracy"] == metrics["valid_accuracy"]
    assert torch.equal(loaded.state_mean, model.state_mean)
    s, a = data.first_states, data.first_actions
    assert torch.equal(loaded.reward(s, a), model.reward(s, a))
    model.save(path)  # overwriting an existing file is atomic too
    assert torch.equal(RewardModel.load(path).reward(s, a), model.reward(s, a))


@pytest.mark.parametrize("content", [b"", b"not a torch file", "truncated"])
def test_unreadable_model_files_give_one_line_errors(trained: tuple[RewardModel, dict[str, Any], PreferenceData],
                                                    tmp_path: Path, content: bytes | str) -> None:
    path = tmp_path / "reward_model.pt"
    if content == "truncated":
        good = trained[0].save(tmp_path / "good.pt").read_bytes()
        path.write_bytes(good[: len(good) // 2])
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)
    with pytest.raises(RewardModelError) as err:
        RewardModel.load(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(RewardModelError, match="no such reward model file"):
        RewardModel.load(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(RewardModelError, match="not a robot_rl reward model"):
        RewardModel.load(path)


def test_bad_preference_data_is_refused_in_one_line() -> None:
    data = preferences(episodes(5, seed=4), 6, seed=4)
    nan_states = np.array(data.second_states)
    nan_states[3, 2, 1] = np.nan
    cases = {
        "at least 2 labeled pairs": dataclasses.replace(data, labels=data.labels[:1]),
        "NaN or inf values .first at pair 3": dataclasses.replace(data, second_states=nan_states),
        "labels must be 0, 0.5 or 1; pair 0": dataclasses.replace(data, labels=np.full(6, 0.3, np.float32)),
        "first_actions must be": dataclasses.replace(data, first_actions=data.first_actions[:, :4]),
        "second_states must have the shape": dataclasses.replace(data, second_states=data.second_states[:, :4]),
        "needs first_frames": data,  # an image model without frames
    }
    for message, bad in cases.items():
        config = RewardModelConfig(obs="image") if message == "needs first_frames" else SMALL
        with pytest.raises(RewardModelError, match=message) as err:
            train_reward_model(bad, config)
        assert "\n" not in str(err.value)
    with pytest.raises(RewardModelError, match="at least 2"):
        train_reward_model(PreferenceData(*(np.zeros((0, 10, 4), np.float32),) * 4, np.zeros(0, np.float32)))
    with pytest.raises(RewardModelError, match="members must be >= 1"):
        RewardModelConfig(members=0)
    with pytest.raises(RewardModelError, match="too small"):
        RewardModel(RewardModelConfig(obs="image", image_size=16), 4, 2)
    assert RewardModelConfig(hidden=[8, 8]).hidden == (8, 8)  # type: ignore[arg-type]  # YAML lists


def test_from_segments_drops_cant_tell_pairs() -> None:
    def seg(i: int) -> Segment:
        return Segment(SegmentRef("demo_0", i, 3), np.full((3, 4), i, np.float32), np.zeros((3, 2), np.float32),
                       np.full(3, float(i), np.float32))

    data = PreferenceData.from_segments([(seg(0), seg(1)), (seg(2), seg(3)), (seg(4), seg(5))], [1.0, None, 0.5])
    assert data.num_pairs == 2 and np.shape(data.first_states) == (2, 3, 4)
    assert list(np.asarray(data.labels)) == [1.0, 0.5] and np.asarray(data.second_true)[1, 0] == 5.0


IMAGE = RewardModelConfig(obs="image", image_size=32, conv_channels=(8, 16), conv_kernels=(5, 3),
                          conv_strides=(3, 2), image_hidden=(32,), batch_size=8, steps=4, shift_pad=2)


def test_image_members_are_vectorized_and_equal_each_member_alone() -> None:
    torch.manual_seed(0)
    model = RewardModel(IMAGE, 4, 2)
    frames = torch.randint(0, 256, (5, 3, 32, 32, 3), dtype=torch.uint8)
    actions = torch.rand(5, 3, 2) * 2 - 1
    out = model(None, actions, frames)
    assert out.shape == (3, 5, 3)
    for e in range(3):
        assert torch.allclose(out[e], model.member(e)(None, actions, frames), atol=1e-5)
    assert not torch.allclose(out[0], out[1], atol=1e-3)
    for grouped in (True, False):  # one grouped conv per layer, or per-member convs on weight slices: the same
        model.grouped_convs = grouped
        assert torch.allclose(model(None, actions, frames), out, atol=1e-5)
    assert model.preference_probs(None, actions[:2], None, actions[2:4], frames[:2], frames[2:4]).shape == (3, 2)
    assert model.reward(None, actions, frames).shape == (5, 3)
    with pytest.raises(RewardModelError, match=r"frames must be \[\.\.\., 32, 32, 3\]"):
        model.reward(None, actions, frames[..., :16, :16, :])


def test_image_model_trains_and_round_trips(tmp_path: Path) -> None:
    data = preferences(episodes(10, seed=5), 12, seed=5, length=2)
    rng = np.random.default_rng(5)
    data = dataclasses.replace(data, first_frames=rng.integers(0, 256, (12, 2, 32, 32, 3), dtype=np.uint8),
                               second_frames=rng.integers(0, 256, (12, 2, 32, 32, 3), dtype=np.uint8))
    model, metrics = train_reward_model(data, IMAGE)
    again, _ = train_reward_model(data, IMAGE)
    assert metrics["steps"] == 4 and metrics["valid_pairs"] == 1 and math.isfinite(metrics["loss"])
    assert all(torch.equal(p, q) for p, q in zip(model.state_dict().values(), again.state_dict().values(),
                                                  strict=True))
    frames = torch.as_tensor(data.first_frames)
    r = model.reward(None, data.first_actions, frames)
    assert r.shape == (12, 2)
    assert torch.equal(RewardModel.load(model.save(tmp_path / "image.pt")).reward(None, data.first_actions, frames), r)


def test_cpu_chunks_give_the_same_step_as_one_batch() -> None:
    """The CPU step runs its minibatch in chunks of pairs (bounded allocations); the gradients add up to those of
    the whole minibatch at once."""
    data = preferences(episodes(20, seed=6), 60, seed=6)
    states = torch.stack([torch.as_tensor(data.first_states), torch.as_tensor(data.second_states)], 1)
    actions = torch.stack([torch.as_tensor(data.first_actions), torch.as_tensor(data.second_actions)], 1)
    labels = torch.as_tensor(data.labels)
    config = RewardModelConfig(hidden=(32, 32), batch_size=30)
    trainers = []
    for chunks in (1, 4):
        torch.manual_seed(0)
        trainer = RewardTrainer(RewardModel(config, 4, 2), states, actions, labels)
        trainer.chunks = chunks
        trainers.append(trainer)
    assert torch.allclose(trainers[0].step(), trainers[1].step(), atol=1e-5)  # loss, correct, count
    for p, q in zip(trainers[0].model.parameters(), trainers[1].model.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        assert torch.allclose(p.grad, q.grad, atol=1e-6)
    big = RewardTrainer(RewardModel(RewardModelConfig(), 39, 4), torch.zeros(4, 2, 50, 39), torch.zeros(4, 2, 50, 4),
                        torch.zeros(4))
    assert big.chunks == 3  # PEBBLE's size: 128 pairs x 2 x 50 steps x 3 members x 256 floats = 39 MB -> 3 chunks
