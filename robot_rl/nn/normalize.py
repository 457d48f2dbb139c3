"""Observation and reward normalization, fitted on the offline dataset and saved with the checkpoint."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ObsNormalizer:
    """``(obs - mean) / std`` per feature; ``std`` is floored so constant features stay finite."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @staticmethod
    def fit(states: np.ndarray, min_std: float = 1e-3) -> ObsNormalizer:
        """From float32 ``[T, D]`` states."""
        std = np.maximum(states.std(0), min_std)
        return ObsNormalizer(tuple(states.mean(0).astype(float)), tuple(std.astype(float)))

    @staticmethod
    def identity(dim: int) -> ObsNormalizer:
        return ObsNormalizer((0.0,) * dim, (1.0,) * dim)

    def __call__(self, obs: torch.Tensor) -> torch.Tensor:
        mean = torch.as_tensor(self.mean, dtype=obs.dtype, device=obs.device)
        std = torch.as_tensor(self.std, dtype=obs.dtype, device=obs.device)
        return (obs - mean) / std


def reward_scale(episode_returns: np.ndarray, numerator: float = 1000.0) -> float:
    """The reference IQL's scale: ``numerator / (max - min episode return)``; 1 where returns do not vary.

    The reference uses 1000 on D4RL's 1000-step episodes; the trainer passes the episode length.

    Applied to every reward source alike (raw MetaWorld rewards reach ~10 per step and returns near 4,000,
    which without scaling drive exp(beta * adv) into the weight clip everywhere).
    """
    finite = episode_returns[np.isfinite(episode_returns)]
    if finite.size < 2:
        return 1.0
    spread = float(finite.max() - finite.min())
    return numerator / spread if spread > 1e-6 else 1.0
