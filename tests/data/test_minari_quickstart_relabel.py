"""The quickstart pipeline's reward model relabels an imported Minari dataset, end to end: the pipeline's own
collect, label and train-reward stages (configs/quickstart.yaml, tiny counts) train the drawer-open reward model;
Minari's ``DataCollector`` records drawer-open episodes; ``robot-rl import minari:...`` and the pipeline's relabel
command put the model's rewards on them, and ``relabel minari:... --replace-rewards`` writes the same rewards into the
Minari dataset, which ``minari.load_dataset`` returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import yaml
from gymnasium import spaces
from rich.console import Console

from robot_rl.cli.main import main
from robot_rl.cli.pipeline_cmd import Pipeline
from robot_rl.data import Dataset
from robot_rl.envs import make_env
from robot_rl.rewards.model import RewardModel

minari = pytest.importorskip("minari")
QUICKSTART = Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml"
TASK = "metaworld/drawer-open-v3"


class DrawerOpen(gym.Env):
    """robot_rl's drawer-open task (one env) behind gymnasium's interface, for Minari's ``DataCollector``."""

    def __init__(self, steps: int) -> None:
        self.env = make_env(TASK, episode_length=steps)
        dim = self.env.spec.state_dim
        self.observation_space = spaces.Box(-np.inf, np.inf, (dim,), np.float64)
        self.action_space = spaces.Box(-1.0, 1.0, (self.env.spec.action.dim,), np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        obs, _ = self.env.reset(seed=seed)
        return obs["state"][0].numpy().astype(np.float64), {}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict]:
        r = self.env.step(torch.as_tensor(np.asarray(action, np.float32)[None]))
        return (r.obs["state"][0].numpy().astype(np.float64), float(r.reward[0]), bool(r.terminated[0]),
                bool(r.truncated[0]), {})

    def close(self) -> None:
        self.env.close()


@pytest.mark.slow
def test_quickstart_reward_model_relabels_an_imported_minari_dataset(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = yaml.safe_load(QUICKSTART.read_text())
    cfg.update(collect={"episodes": 4, "num_envs": 2}, reward_model={"steps": 20, "hidden": [16, 16]})
    cfg["label"].update(pairs=16, segment_length=20)
    out = tmp_path / "run"
    out.mkdir()
    pipeline = Pipeline(cfg, out, Console(stderr=True))
    for stage in (pipeline._collect, pipeline._label, pipeline._train_reward):  # the quickstart's own stages
        stage(False)
    reward_dir = out / "reward"
    model = RewardModel.load(str(reward_dir / "reward_model.pt"), "cpu")

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    collector = minari.DataCollector(gym.wrappers.TimeLimit(DrawerOpen(25), 25))
    rng = np.random.default_rng(0)
    for ep in range(3):
        collector.reset(seed=ep)
        while not any(collector.step(rng.uniform(-1, 1, 4).astype(np.float32))[2:4]):
            pass
    dataset_id = "metaworld/drawer-open/random-v0"
    collector.create_dataset(dataset_id, algorithm_name="random", author="test", author_email="t@example.com",
                             code_permalink="https://example.com", description="random drawer-open")
    collector.close()
    recorded = list(minari.load_dataset(dataset_id).iterate_episodes())

    def model_rewards(ep: Any) -> np.ndarray:
        with torch.no_grad():
            return model.reward(torch.as_tensor(ep.observations[:-1], dtype=torch.float32),
                                torch.as_tensor(ep.actions, dtype=torch.float32)).numpy()

    imported = tmp_path / "drawer.h5"
    assert main(["import", f"minari:{dataset_id}", "--out", str(imported), "--task", cfg["task"]]) == 0
    assert main(["relabel", str(imported), "--source", f"reward-model:{reward_dir}", "--activate"]) == 0
    with Dataset(imported) as ds:
        assert ds.reward_label_ids() == ["ground_truth", "reward_model"]
        for name, ep in zip(ds.episode_names, recorded, strict=True):
            mine = ds.load_episode(name)
            np.testing.assert_allclose(mine.rewards, model_rewards(ep), rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(mine.reward_labels["ground_truth"][0], ep.rewards, rtol=1e-6)

    assert main(["relabel", f"minari:{dataset_id}", "--source", f"reward-model:{reward_dir}",
                 "--replace-rewards"]) == 0
    for ep, old in zip(minari.load_dataset(dataset_id).iterate_episodes(), recorded, strict=True):
        np.testing.assert_allclose(ep.rewards, model_rewards(old), rtol=1e-4, atol=1e-5)
        assert not np.allclose(ep.rewards, old.rewards)
        np.testing.assert_array_equal(ep.observations, old.observations)
