"""Relabeling a learner's transitions after its reward changed (a ``RewardLearner`` updated itself online).

Both replay kinds hold normalized observations and scaled rewards; the rewards are recomputed from the raw states
(``normalizer`` undone) and the actions, and scaled like before (the offline run's ``reward_scale``: the critics
keep their units). Writes in place, so a sampler or a captured CUDA graph that reads the tensors sees the new values.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from robot_rl.core import RewardLearner
from robot_rl.nn.normalize import ObsNormalizer

CHUNK = 65_536
"""Rows per reward call."""


def relabel_rows(learner: RewardLearner, data: dict[str, torch.Tensor], size: int, normalizer: ObsNormalizer,
                 scale: float) -> int:
    """``rewards[i] = scale * learner.rewards(raw obs[i], actions[i])`` for the first ``size`` rows of ``data``
    (``obs``, ``actions``, ``rewards``), in place; returns ``size``."""
    obs, actions, rewards = data["obs"], data["actions"], data["rewards"]
    mean = torch.as_tensor(normalizer.mean, dtype=obs.dtype, device=obs.device)
    std = torch.as_tensor(normalizer.std, dtype=obs.dtype, device=obs.device)
    with torch.no_grad():
        for lo in range(0, size, CHUNK):
            hi = min(lo + CHUNK, size)
            r = learner.rewards(obs[lo:hi] * std + mean, actions[lo:hi])
            rewards[lo:hi] = r.to(rewards.device, rewards.dtype) * scale
    return size


class FixedReward:
    """The ``RewardLearner`` of a reward that does not learn online: sees nothing, never changes."""

    relabels_offline = False

    def __init__(self, online_labels: int = 0) -> None:
        if online_labels:
            raise ValueError(f"online_labels={online_labels} needs a reward that learns online: pass the online "
                             "preference loop (robot_rl.rewards.online.OnlinePreferences) as the learner")

    def observe(self, *args: Any) -> None:
        pass

    def update(self, env_steps: int) -> bool:
        return False

    def rewards(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a fixed reward relabels nothing")

    def restart(self) -> None:
        pass

    def metrics(self) -> dict[str, float]:
        return {}


def update_and_relabel(learner: RewardLearner, env_steps: int, online: tuple[dict[str, torch.Tensor], int],
                       offline: tuple[dict[str, torch.Tensor], int], normalizer: ObsNormalizer, scale: float,
                       after_offline: Callable[[], None] | None = None) -> bool:
    """Let ``learner`` update at ``env_steps``; when its reward changed, relabel the ``online`` replay rows
    (``(data, size)``), and the ``offline`` ones where the learner labeled those too, then call ``after_offline()``
    (e.g. Cal-QL's ``refresh_mc_return``: columns derived from the offline rewards). True when it changed."""
    if not learner.update(env_steps):
        return False
    relabel_rows(learner, *online, normalizer, scale)
    if learner.relabels_offline:
        relabel_rows(learner, *offline, normalizer, scale)
        if after_offline is not None:
            after_offline()
    return True
