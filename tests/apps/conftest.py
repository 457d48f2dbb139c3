"""Shared by the learning-on-the-robot tests: a short offline IQL run on scripted MetaWorld reach episodes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robot_rl.cli.main import main
from robot_rl.data import DatasetWriter, Episode
from robot_rl.envs import make_env, task_expert
from tests.apps.procs import TASK

STEPS = 60
"""Offline episode length: the scripted expert reaches the goal in 36-68 steps, so some episodes succeed."""


@pytest.fixture(scope="session")
def offline_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short IQL run on a few noisy scripted reach episodes, rewarded by success (the robot's signal)."""
    root = tmp_path_factory.mktemp("offline")
    env, expert, rng = make_env(TASK, episode_length=STEPS), task_expert(TASK), np.random.default_rng(0)
    with DatasetWriter(root / "d.h5", env.spec, source="test: noisy scripted reach") as w:
        for e in range(6):
            obs, _ = env.reset(seed=100 + e)
            rows: dict[str, list[Any]] = {"s": [], "a": [], "n": [], "r": []}
            for _ in range(STEPS):
                s = obs["state"][0].numpy()
                a = np.clip(expert(s) + rng.normal(0, 0.1 if e % 2 else 0.5, 4), -1, 1).astype(np.float32)
                res = env.step(torch.from_numpy(a)[None])
                nxt = res.info["final_obs"] if bool(res.truncated[0]) else res.obs
                rows["s"].append(s), rows["a"].append(a), rows["n"].append(nxt["state"][0].numpy())
                rows["r"].append(float(res.info["success"][0]))
                obs = res.obs
            dones = np.zeros(STEPS, bool)
            dones[-1] = True
            w.add_episode(Episode(states=np.stack(rows["s"]), actions=np.stack(rows["a"]),
                                  rewards=np.array(rows["r"], np.float32), next_states=np.stack(rows["n"]),
                                  terminals=np.zeros(STEPS, bool), dones=dones, successes=np.array(rows["r"]) > 0))
    env.close()
    assert main(["train", "--dataset", str(root / "d.h5"), "--steps", "30", "--out", str(root / "iql"),
                 "--device", "cpu", "--set", "iql.hidden=[32,32]", "--set", "iql.batch_size=64",
                 "--set", "log_every=30", "--eval-episodes", "0"]) == 0
    return root / "iql"
