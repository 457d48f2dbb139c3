"""A toy dataset with simulator-style ground truth: a point moving towards a goal, reward = -distance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.data import GROUND_TRUTH, DatasetWriter, Episode

SPEC = EnvSpec(name="toy/reach-v0", observations={"state": ArraySpec((2,))},
               action=ActionSpec(2, "ee_delta", scale=(1.0, 1.0), offset=(0.0, 0.0)),
               max_episode_steps=30, task_text="move the point to the origin")


def write_reach(path: Path, episodes: int = 12, length: int = 30, seed: int = 0) -> Path:
    """Episodes of a point that moves with step = 0.1 * action; some episodes head for the origin, some wander.
    True reward -||s'||; stored as the active reward and as ``reward_labels/ground_truth``."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, SPEC, source="test") as w:
        for e in range(episodes):
            s = np.empty((length + 1, 2), np.float32)
            s[0] = rng.uniform(-1, 1, 2)
            a = np.empty((length, 2), np.float32)
            skill = e / max(episodes - 1, 1)
            for t in range(length):
                a[t] = np.clip(skill * -s[t] / max(np.linalg.norm(s[t]), 1e-3) + (1 - skill) * rng.uniform(-1, 1, 2),
                               -1, 1)
                s[t + 1] = s[t] + 0.1 * a[t]
            r = -np.linalg.norm(s[1:], axis=1).astype(np.float32)
            dones = np.zeros(length, bool)
            dones[-1] = True
            w.add_episode(Episode(states=s[:-1], actions=a, rewards=r, next_states=s[1:],
                                  terminals=np.zeros(length, bool), dones=dones,
                                  reward_labels={GROUND_TRUTH: (r.copy(), {"labeler": GROUND_TRUTH})}))
    return path


@pytest.fixture(scope="session")
def reach_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reach(tmp_path_factory.mktemp("rewards") / "reach.h5")
