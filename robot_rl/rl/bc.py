"""Behaviour cloning baseline on the same Gaussian actor and data as IQL (IQL with every weight = 1)."""

from __future__ import annotations

import functools

import torch
from torch import nn

from robot_rl.nn.networks import GaussianActor
from robot_rl.rl.agent import gradient_step
from robot_rl.rl.iql import IQLConfig, actor_lr_factor


class BC(nn.Module):
    """Maximum-likelihood behaviour cloning: ``obs [B, D] -> action [B, A]``; uses IQLConfig's actor settings."""

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig | None = None):
        super().__init__()
        config = config or IQLConfig()
        self.config = config
        self.actor = GaussianActor(obs_dim, act_dim, config.hidden, config.actor_dropout)
        self.optimizer = torch.optim.Adam(self.actor.parameters(), lr=config.actor_lr, fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, functools.partial(actor_lr_factor, config))

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"actor_loss": -self.actor.log_prob(batch["obs"], batch["actions"]).mean()}

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return gradient_step(self, self.losses(batch))

    def polyak_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return []
