"""Minari datasets in and out, on datasets written by Minari's own ``DataCollector`` here: a gymnasium MuJoCo task
(InvertedPendulum-v5, D4RL-style ``Box`` observations) and an AntMaze-style ``Dict`` observation with a recorded
``success`` info; an imported dataset is labeled, a reward model trained and relabeled on it, and exported back."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from robot_rl.cli.main import main
from robot_rl.data import Dataset
from robot_rl.data.interop import import_source

minari = pytest.importorskip("minari")


class GoalPoint(gym.Env):
    """A point that moves towards a goal: ``Dict`` observation as AntMaze has, ``info["success"]`` every step."""

    observation_space = spaces.Dict({
        "observation": spaces.Box(-10, 10, (2,), np.float64),
        "achieved_goal": spaces.Box(-10, 10, (2,), np.float64),
        "desired_goal": spaces.Box(-10, 10, (2,), np.float64)})
    action_space = spaces.Box(-0.5, 0.5, (2,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.goal = self.np_random.uniform(-1, 1, 2)
        return self._obs(), {"success": False}

    def _obs(self) -> dict[str, np.ndarray]:
        return {"observation": self.pos.copy(), "achieved_goal": self.pos.copy(), "desired_goal": self.goal.copy()}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.pos = self.pos + np.asarray(action, np.float64)
        dist = float(np.linalg.norm(self.pos - self.goal))
        return self._obs(), -dist, dist < 0.3, False, {"success": dist < 0.3}


@pytest.fixture(scope="module")
def minari_root(tmp_path_factory) -> Iterator[Path]:
    root = tmp_path_factory.mktemp("minari")
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    rng = np.random.default_rng(0)
    try:
        env = minari.DataCollector(gym.make("InvertedPendulum-v5", max_episode_steps=20))
        for ep in range(4):
            env.reset(seed=ep)
            while not any(env.step(env.action_space.sample())[2:4]):
                pass
        env.create_dataset("mujoco/invertedpendulum/random-v0", algorithm_name="random", author="test",
                           author_email="t@example.com", code_permalink="https://example.com",
                           description="random policy")
        env.close()
        goal = minari.DataCollector(gym.wrappers.TimeLimit(GoalPoint(), 15), record_infos=True)
        for ep in range(3):
            goal.reset(seed=ep)
            while not any(goal.step(rng.uniform(-0.5, 0.5, 2).astype(np.float32))[2:4]):
                pass
        goal.create_dataset("point/goal/scripted-v0", algorithm_name="random", author="test",
                            author_email="t@example.com", code_permalink="https://example.com", description="goal")
        yield root
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def test_mujoco_import_is_exact_with_next_states_from_minari(minari_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "pend.h5"
    report = import_source("minari:mujoco/invertedpendulum/random-v0", str(out))
    src = minari.load_dataset("mujoco/invertedpendulum/random-v0")
    assert report.episodes == 4 and report.steps == src.total_steps
    with Dataset(out) as ds:
        spec = ds.spec
        assert spec.name == "minari/mujoco/invertedpendulum/random-v0" and spec.state_dim == 4
        assert spec.action.scale == (3.0,) and spec.action.offset == (0.0,)  # from the declared Box(-3, 3)
        assert json.loads(spec.extras["gymnasium_env_spec"])["id"] == "InvertedPendulum-v5"
        for name, ep in zip(ds.episode_names, src.iterate_episodes(), strict=True):
            mine = ds.load_episode(name)
            np.testing.assert_allclose(mine.states, ep.observations[:-1], rtol=1e-6)
            np.testing.assert_allclose(mine.next_states, ep.observations[1:], rtol=1e-6)
            np.testing.assert_allclose(mine.actions * 3.0, ep.actions, rtol=1e-6)
            np.testing.assert_array_equal(mine.rewards, ep.rewards.astype(np.float32))
            np.testing.assert_array_equal(mine.terminals, ep.terminations)
            assert mine.dones[-1]


def test_dict_observations_become_named_slices_and_success(minari_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "goal.h5"
    import_source("minari:point/goal/scripted-v0", str(out))
    src = minari.load_dataset("point/goal/scripted-v0")
    with Dataset(out) as ds:
        slices = [s.name for s in ds.spec.state_slices]
        assert slices == ["achieved_goal", "desired_goal", "observation"]  # gymnasium sorts Dict keys
        ep, theirs = ds.load_episode("demo_0"), next(iter(src.iterate_episodes()))
        goal = ds.spec.state_slice("desired_goal")
        np.testing.assert_allclose(ep.states[:, goal], theirs.observations["desired_goal"][:-1], rtol=1e-6)
        np.testing.assert_array_equal(ep.successes, theirs.infos["success"][1:])


def test_minari_to_robot_rl_relabel_and_back(minari_root: Path, tmp_path: Path) -> None:
    h5 = tmp_path / "pend.h5"
    assert main(["import", "minari:mujoco/invertedpendulum/random-v0", "--out", str(h5)]) == 0
    assert main(["label", str(h5), "--pairs", "20", "--segment-length", "3"]) == 0
    assert main(["train-reward", str(h5), "--out", str(tmp_path / "rm"), "--steps", "5", "--set", "hidden=[16]"]) == 0
    assert main(["relabel", str(h5), "--source", f"reward-model:{tmp_path / 'rm'}", "--activate"]) == 0
    assert main(["export", str(h5), "--to", "minari:mujoco/invertedpendulum/relabeled-v0"]) == 0
    back = minari.load_dataset("mujoco/invertedpendulum/relabeled-v0")
    assert "reward_model" in back.storage.metadata["description"]
    assert back.spec.env_spec is not None and back.spec.env_spec.id == "InvertedPendulum-v5"
    src = minari.load_dataset("mujoco/invertedpendulum/random-v0")
    with Dataset(h5) as ds:
        for name, ep, orig in zip(ds.episode_names, back.iterate_episodes(), src.iterate_episodes(), strict=True):
            mine = ds.load_episode(name)
            np.testing.assert_allclose(ep.rewards, mine.rewards, rtol=1e-6)
            assert not np.allclose(ep.rewards, orig.rewards)
            np.testing.assert_allclose(ep.observations, orig.observations, rtol=1e-6)
            np.testing.assert_allclose(ep.actions, orig.actions, rtol=1e-6)
            np.testing.assert_array_equal(ep.terminations, orig.terminations)
            np.testing.assert_array_equal(ep.truncations, orig.truncations)
    again = tmp_path / "again.h5"
    import_source("minari:mujoco/invertedpendulum/relabeled-v0", str(again))
    with Dataset(h5) as a, Dataset(again) as b:
        assert a.spec == b.spec


def test_an_unknown_dataset_id_is_one_line_naming_the_local_ones(minari_root: Path, tmp_path: Path, capsys) -> None:
    assert main(["import", "minari:mujoco/hopper/expert-v0", "--out", str(tmp_path / "o.h5")]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and "no such dataset" in lines[0] and "point/goal/scripted-v0" in lines[0], lines
    assert not (tmp_path / "o.h5").exists()


def test_export_refuses_a_bad_or_taken_id_and_leaves_nothing(minari_root: Path, tmp_path: Path, capsys) -> None:
    h5 = tmp_path / "goal.h5"
    import_source("minari:point/goal/scripted-v0", str(h5))
    before = sorted(minari.list_local_datasets())
    for target, needle in (("bad id", "Malformed dataset ID"), ("point/goal/scripted-v0", "already exists")):
        assert main(["export", str(h5), "--to", f"minari:{target}"]) == 2
        lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], lines
    assert sorted(minari.list_local_datasets()) == before
