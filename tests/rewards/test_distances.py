"""Reward distances (EPIC/STARC style) on dataset transitions, and ``robot-rl compare-rewards``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.data.labels import write_reward_labels
from robot_rl.rewards.distances import DistanceConfig, reward_distances

GAMMA = 0.99


def _transitions(n_episodes: int = 40, length: int = 50, seed: int = 0) -> dict[str, np.ndarray]:
    """A 4-D random walk, episodes ending in a terminal state."""
    rng = np.random.default_rng(seed)
    s, s2, a, term = [], [], [], []
    for _ in range(n_episodes):
        x = rng.normal(0, 1, 4)
        for t in range(length):
            act = rng.uniform(-1, 1, 4)
            y = x + 0.2 * act
            s.append(x), s2.append(y), a.append(act), term.append(t == length - 1)
            x = y
    return {"s": np.array(s), "s2": np.array(s2), "a": np.array(a), "term": np.array(term)}


def _shaping(phi: np.ndarray, phi2: np.ndarray, term: np.ndarray) -> np.ndarray:
    return GAMMA * phi2 * (1 - term) - phi


def test_shaping_scale_and_constants_are_ignored_and_unrelated_rewards_are_far() -> None:
    d = _transitions()
    s, s2, term = d["s"], d["s2"], d["term"]
    r = -np.linalg.norm(s2[:, :2], axis=1) + 0.5 * np.tanh(s2[:, 2])  # a task reward of the next state
    linear = _shaping(s @ [1.0, -2.0, 0.5, 3.0], s2 @ [1.0, -2.0, 0.5, 3.0], term)
    smooth = _shaping(np.sin(s[:, 0]) + 0.3 * s[:, 1] ** 2, np.sin(s2[:, 0]) + 0.3 * s2[:, 1] ** 2, term)
    rng = np.random.default_rng(1)
    rewards = {"task": r, "shaped": 3.0 * r + 2.0 + 5.0 * linear, "smooth-shaped": 0.5 * r - 1.0 + 2.0 * smooth,
               "negated": -r, "unrelated": rng.normal(size=len(r)), "pure shaping": 4.0 * linear + 1.0}
    out = reward_distances(rewards, s, s2, term, DistanceConfig(gamma=GAMMA))
    m = {(a, b): out.matrix[i, j] for i, a in enumerate(out.names) for j, b in enumerate(out.names)}
    assert m["task", "shaped"] < 1e-3  # linear shaping is in the feature class: removed exactly
    assert m["task", "smooth-shaped"] < 0.1  # nonlinear shaping: removed by the Fourier features, up to a little
    assert m["task", "negated"] > 0.99
    assert 0.6 < m["task", "unrelated"] < 0.8  # ~ sqrt(1/2) for unrelated rewards
    assert out.degenerate == ["pure shaping"] and np.isnan(m["task", "pure shaping"])
    # without the projection (a plain Pearson distance) the shaped reward looks far from the task
    plain = np.corrcoef(rewards["task"], rewards["shaped"])[0, 1]
    assert np.sqrt((1 - plain) / 2) > 0.3
    assert [n for n, _ in out.ranking("task")][:2] == ["shaped", "smooth-shaped"]
    np.testing.assert_allclose(out.matrix, out.matrix.T, equal_nan=True)


def test_bad_inputs_one_line() -> None:
    d = _transitions(2, 5)
    with pytest.raises(ValueError, match="reward 'x': \\[3\\] values for 10 transitions"):
        reward_distances({"x": np.zeros(3)}, d["s"], d["s2"], d["term"])
    with pytest.raises(ValueError, match="non-finite value at transition 4"):
        reward_distances({"x": np.where(np.arange(10) == 4, np.nan, 1.0)}, d["s"], d["s2"], d["term"])
    with pytest.raises(ValueError, match="gamma must be in"):
        DistanceConfig(gamma=2)


def test_compare_rewards_command(reach_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "reach.h5"
    shutil.copy(reach_dataset, data)
    rng = np.random.default_rng(0)
    with Dataset(data) as ds:
        gt = {n: ds.load_episode(n).reward_labels["ground_truth"][0] for n in ds.episode_names}
    for label, f in {"scaled": lambda r: 5 * r + 1, "negated": lambda r: -r,
                     "noise": lambda r: rng.normal(size=r.shape).astype(np.float32)}.items():
        write_reward_labels(str(data), label, {n: f(r) for n, r in gt.items()}, {"labeler": label}, False)
    assert main(["compare-rewards", str(data), "--out", str(tmp_path / "out")]) == 0
    report = json.loads((tmp_path / "out" / "reach.reward_distances.json").read_text())
    assert report["reference"] == "ground_truth"
    assert [name for name, _ in report["ranking"]] == ["scaled", "noise", "negated"]
    assert report["ranking"][0][1] < 0.01 and report["ranking"][2][1] > 0.99
    assert (tmp_path / "out" / "reach.reward_distances.png").stat().st_size > 1000
    assert "nearest to ground_truth: scaled" in capsys.readouterr().out
    assert main(["compare-rewards", str(data), "--labels", "ground_truth,nope", "--no-plot"]) == 2
    assert main(["compare-rewards", str(data), "--labels", "ground_truth", "--no-plot"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("robot-rl compare-rewards: error:") and "no reward label 'nope'" in err[0]
    assert "need two to compare" in err[1]
