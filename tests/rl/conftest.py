"""A toy offline dataset where the best action is known: half the data acts well, half at random."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.data import DatasetWriter, Episode

SPEC = EnvSpec(name="toy/bandit-v0", observations={"state": ArraySpec((2,))},
               action=ActionSpec(2, "ee_delta", scale=(1.0, 1.0), offset=(0.0, 0.0)),
               max_episode_steps=4, task_text="move to the origin")


def best_action(states: np.ndarray) -> np.ndarray:
    return np.clip(-0.8 * states, -1, 1).astype(np.float32)


def write_bandit(path: Path, episodes: int = 200, length: int = 4, seed: int = 0, nan_episode: int | None = None
                 ) -> Path:
    """Each step: state uniform in [-1, 1]^2; 30% of steps take the best action (reward ~1), the rest a random
    action (reward = -distance to the best action). Rewards depend only on (s, a), so the best policy is known."""
    rng = np.random.default_rng(seed)
    with DatasetWriter(path, SPEC, source="test") as w:
        for e in range(episodes):
            s = rng.uniform(-1, 1, (length + 1, 2)).astype(np.float32)
            good = rng.random(length) < 0.3
            a = np.where(good[:, None], best_action(s[:-1]), rng.uniform(-1, 1, (length, 2))).astype(np.float32)
            r = (1.0 - np.linalg.norm(a - best_action(s[:-1]), axis=1)).astype(np.float32)
            if e == nan_episode:
                r[1] = np.nan
            dones = np.zeros(length, bool)
            dones[-1] = True
            w.add_episode(Episode(states=s[:-1], actions=a, rewards=r, next_states=s[1:], terminals=dones.copy(),
                                  dones=dones))
    return path


@pytest.fixture(scope="session")
def bandit_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bandit(tmp_path_factory.mktemp("rl") / "bandit.h5")
