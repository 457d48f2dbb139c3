"""Reward sources for online fine-tuning: what labels the new transitions.

A source maps a batch of transitions to rewards ``[N]`` in the same units as the offline dataset's active
reward (the trainer applies the offline reward scale afterwards). Hidden simulator ground truth is used only
when asked for, or when the dataset's active reward *is* the simulator's ground truth (so that offline and
online rewards agree). The learned reward model and generated reward code plug in here as further sources.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from robot_rl.data import GROUND_TRUTH, Dataset


class RewardSource(Protocol):
    name: str

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        """``[N]`` rewards for ``action [N, A]`` taken at ``obs`` leading to ``next_obs``."""
        ...


class GroundTruthReward:
    """The simulator's own reward (NaN on a real robot, which this source then refuses)."""

    name = "ground_truth"

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        if not bool(torch.isfinite(env_reward).all()):
            raise ValueError("reward source 'ground_truth': the backend gave no finite reward (a real robot?); "
                             "use a learned reward source")
        return env_reward


def dataset_reward_source(dataset: str) -> RewardSource:
    """The source that produced the dataset's active ``rewards``; raises if it cannot be reproduced online."""
    with Dataset(dataset) as ds:
        names = ds.episode_names
        if GROUND_TRUTH in ds.reward_label_ids():
            same = all(np.array_equal(ep.rewards, ep.reward_labels[GROUND_TRUTH][0], equal_nan=True)
                       for ep in (ds.load_episode(n) for n in names) if GROUND_TRUTH in ep.reward_labels)
            if same:
                return GroundTruthReward()
    raise ValueError(f"{dataset}: the active rewards are not the simulator's ground truth, and their source "
                     "cannot label new transitions yet; pass --reward ground_truth to use the simulator's reward")


def resolve_reward_source(name: str, dataset: str) -> RewardSource:
    if name == "dataset":
        return dataset_reward_source(dataset)
    if name == "ground_truth":
        return GroundTruthReward()
    raise ValueError(f"unknown reward source '{name}'; choose 'dataset' or 'ground_truth'")
