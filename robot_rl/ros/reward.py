"""Reward logic of the reward node: score the current observation with a learned reward model.

Two outputs: the ensemble-mean learned reward of ``(state, action)``, and a success probability, the fraction of
ensemble members whose reward exceeds ``success_threshold`` (the members vote on "is this a success state").
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from robot_rl.rewards.model import RewardModel


@dataclass(frozen=True)
class RewardScore:
    reward: float
    """Ensemble-mean learned reward."""
    success_probability: float
    """Fraction of members with reward > threshold, in [0, 1]."""


class RewardScorer:
    """Scores one observation at a time with a ``RewardModel`` (state models; image models need ``frame``)."""

    def __init__(self, model: RewardModel, success_threshold: float = 0.5):
        self.model = model.eval()
        self.success_threshold = success_threshold

    @staticmethod
    def load(path: str | os.PathLike[str], success_threshold: float = 0.5, device: str = "cpu") -> RewardScorer:
        """From a file written by ``RewardModel.save``."""
        return RewardScorer(RewardModel.load(path, device), success_threshold)

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
        if a is None and self.model.config.use_actions:
            raise ValueError("reward: this model reads actions; pass the last action")
        f = None if frame is None else np.asarray(frame, dtype=np.uint8)[None]
        members = self.model.member_rewards_chunked(s, a, f)  # [E, 1]
        values = members.reshape(members.shape[0], -1)[:, 0]
        return RewardScore(float(values.mean()), float((values > self.success_threshold).float().mean()))
