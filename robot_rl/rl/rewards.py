"""Reward sources for online fine-tuning: what labels the new transitions.

A source maps a batch of transitions to rewards ``[N]`` in the same units as the offline dataset's active
reward (the trainer applies the offline reward scale afterwards). Hidden simulator ground truth is used only
when asked for, or when the dataset's active reward *is* the simulator's ground truth (so that offline and
online rewards agree). The learned reward model and generated reward code plug in here as further sources.
"""

from __future__ import annotations

import os
from typing import Protocol

import numpy as np
import torch

from robot_rl.core import EnvSpec
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


class LearnedReward:
    """A trained Bradley-Terry reward model's r(s_t, a_t) (ensemble mean), as ``robot-rl relabel`` wrote it."""

    name = "reward_model"

    def __init__(self, path: str, device: str | torch.device = "cpu") -> None:
        from robot_rl.rewards.model import RewardModel  # lazily: rl does not need the rewards package otherwise

        self.path = os.path.join(path, "reward_model.pt") if os.path.isdir(path) else path
        self.model = RewardModel.load(self.path, device)
        if self.model.config.obs != "state":
            raise ValueError(f"{self.path}: an image reward model cannot label online transitions yet; "
                             "train one with --obs state")

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        device = self.model.device
        return self.model.reward(obs["state"].to(device), action.to(device)).to(action.device)


class CodeRewardSource:
    """Reward code (``code:FILE.py``) on (state after the step, action), run in its own process."""

    name = "code"

    def __init__(self, path: str, spec: EnvSpec) -> None:
        from robot_rl.rewards.code_reward import CodeReward

        self.code = CodeReward(path, spec)

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        reward, _ = self.code(next_obs["state"].cpu().numpy(), action.cpu().numpy())
        return torch.as_tensor(reward, device=action.device)


class SuccessSignal(Protocol):
    """What decides "success" online (the sparse reward of fine-tuning, the end of a reset-free attempt):
    ``__call__(obs) -> P(success) [N]`` of post-step observations and the ``threshold`` above which it counts.
    ``robot_rl.rewards.success``: ``ClassifierSuccess``, ``ConstantSuccess``; ``robot_rl.rl.reset_free``:
    ``GroundTruthSuccess``."""

    name: str
    threshold: float

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor: ...


class SuccessReward:
    """Sparse reward from a success classifier (``success:RUN_DIR``): 1.0 where P(success | next_obs) >= the
    classifier's threshold, else 0.0, as ``robot-rl relabel --source success:RUN_DIR`` wrote it offline.

    ``signal`` is anything with ``name``, ``threshold`` and ``__call__(obs) -> p [N]`` (``ClassifierSuccess``,
    ``ConstantSuccess``, ...). An image classifier needs ``next_obs["image/<camera>"]``: make the env with
    ``make_env(..., cameras=(camera,))``; a missing camera is a one-line error naming it."""

    name = "success"

    def __init__(self, signal: SuccessSignal) -> None:
        self.signal = signal
        self.threshold = float(signal.threshold)

    @classmethod
    def from_run(cls, path: str, device: str | torch.device = "cpu") -> SuccessReward:
        from robot_rl.rewards.success import ClassifierSuccess  # lazily, like LearnedReward

        return cls(ClassifierSuccess(path, device))

    def probability(self, next_obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.signal(next_obs)

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        p = self.probability(next_obs)
        return (p >= self.threshold).to(torch.float32).to(action.device)


def dataset_reward_source(dataset: str) -> RewardSource:
    """The source that produced the dataset's active ``rewards``; raises if it cannot be reproduced online."""
    from robot_rl.rewards.relabel import active_label

    active = active_label(dataset)
    with Dataset(dataset) as ds:
        names = ds.episode_names
        if active is not None and active != GROUND_TRUTH and names:
            provenance = ds.load_episode(names[0]).reward_labels[active][1]
            source = str(provenance.get("source", ""))
            if source.startswith("reward-model:"):
                return LearnedReward(str(provenance.get("model", source.removeprefix("reward-model:"))))
            if source.startswith("code:"):
                return CodeRewardSource(source.removeprefix("code:"), ds.spec)
            if source.startswith("success:"):
                return SuccessReward.from_run(str(provenance.get("model", source.removeprefix("success:"))))
            raise ValueError(f"{dataset}: the active rewards come from '{active}' ({source or 'unknown source'}), "
                             "which cannot label new transitions; pass --reward ground_truth or "
                             "--reward reward-model:RUN_DIR")
        if GROUND_TRUTH in ds.reward_label_ids():
            same = all(np.array_equal(ep.rewards, ep.reward_labels[GROUND_TRUTH][0], equal_nan=True)
                       for ep in (ds.load_episode(n) for n in names) if GROUND_TRUTH in ep.reward_labels)
            if same:
                return GroundTruthReward()
    raise ValueError(f"{dataset}: the active rewards are not the simulator's ground truth, and their source "
                     "cannot label new transitions yet; pass --reward ground_truth to use the simulator's reward")


def resolve_reward_source(name: str, dataset: str) -> RewardSource:
    """``dataset`` (whatever produced the active rewards), ``ground_truth``, ``reward-model:RUN_DIR``,
    ``code:FILE.py`` or ``success:RUN_DIR`` (a success classifier's sparse 0/1 reward)."""
    if name == "dataset":
        return dataset_reward_source(dataset)
    if name == "ground_truth":
        return GroundTruthReward()
    if name.startswith("reward-model:"):
        return LearnedReward(name.removeprefix("reward-model:"))
    if name.startswith("code:"):
        with Dataset(dataset) as ds:
            return CodeRewardSource(name.removeprefix("code:"), ds.spec)
    if name.startswith("success:"):
        return SuccessReward.from_run(name.removeprefix("success:"))
    raise ValueError(f"unknown reward source '{name}'; choose dataset, ground_truth, reward-model:RUN_DIR, "
                     "code:FILE.py or success:RUN_DIR")
