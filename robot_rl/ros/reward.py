"""Reward logic of the reward node: score the current observation with a learned reward model.

Two outputs: the ensemble-mean learned reward of ``(state, action)``, and a success probability, the fraction of
ensemble members whose reward exceeds ``success_threshold`` (the members vote on "is this a success state").

The scorer takes the model's per-member reward function, already built: loading a ``RewardModel`` file is
``robot_rl.apps.robot_nodes.load_reward_scorer`` (``robot_rl.ros`` uses ``core`` and ``data`` only).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

MemberRewardsFn = Callable[[np.ndarray, np.ndarray | None, np.ndarray | None], torch.Tensor]
"""``(states [1, D], actions [1, A] or None, frames [1, H, W, 3] or None) -> rewards [E, 1]``, one row per
ensemble member (``RewardModel.member_rewards_chunked`` of ``robot_rl.rewards.model``)."""


@dataclass(frozen=True)
class RewardScore:
    reward: float
    """Ensemble-mean learned reward."""
    success_probability: float
    """Fraction of members with reward > threshold, in [0, 1]."""


class RewardScorer:
    """Scores one observation at a time with an ensemble reward model's ``members`` function (state models; image
    models need ``frame``); ``reads_actions``: the model reads the action, so ``score`` needs one."""

    def __init__(self, members: MemberRewardsFn, reads_actions: bool, success_threshold: float = 0.5):
        self.members = members
        self.reads_actions = reads_actions
        self.success_threshold = success_threshold

    @torch.no_grad()
    def score(self, state: np.ndarray, action: np.ndarray | None = None, frame: np.ndarray | None = None
              ) -> RewardScore:
        """Reward and success probability of one step; ``ValueError`` (one line) on non-finite input."""
        s = np.asarray(state, dtype=np.float32).reshape(1, -1)
        if not np.all(np.isfinite(s)):
            raise ValueError("reward: state is not finite")
        a = None if action is None else np.asarray(action, dtype=np.float32).reshape(1, -1)
        if a is not None and not np.all(np.isfinite(a)):
            raise ValueError("reward: action is not finite")
        if a is None and self.reads_actions:
            raise ValueError("reward: this model reads actions; pass the last action")
        f = None if frame is None else np.asarray(frame, dtype=np.uint8)[None]
        members = self.members(s, a, f)  # [E, 1]
        values = members.reshape(members.shape[0], -1)[:, 0]
        return RewardScore(float(values.mean()), float((values > self.success_threshold).float().mean()))
