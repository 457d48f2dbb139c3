"""Implicit Q-Learning (Kostrikov et al., 2021) on state observations.

One update reads top to bottom in ``iql_losses`` and ``IQL.update``: expectile value loss, TD loss for the
twin critics (one batched module), advantage-weighted actor loss. The three parameter sets are disjoint and
every cross-term is detached, so one backward pass and one optimizer step serve all three losses. As in CORL
and d3rlpy, the Q target and the actor's advantages use the value net *before* this step's update (the
JAX reference updates V first). ``image_iql.py`` feeds the same losses with image features.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from robot_rl.core.config_check import bounded, check_fields
from robot_rl.nn.networks import Critic, GaussianActor, ValueNet
from robot_rl.rl.agent import gradient_step


@dataclass(frozen=True)
class IQLConfig:
    """IQL hyperparameters; defaults are the reference implementation's (locomotion settings)."""

    expectile: float = bounded(0.7, gt=0, lt=1)
    """Expectile tau of the value loss (0.7 locomotion / kitchen, 0.9 antmaze)."""
    temperature: float = bounded(3.0, ge=0)
    """Inverse temperature beta of the advantage weights exp(beta * adv)."""
    weight_clip: float = bounded(100.0, gt=0)
    """Upper clip of the advantage weights."""
    discount: float = bounded(0.99, ge=0, le=1)
    target_rate: float = bounded(0.005, gt=0, le=1)
    """Polyak rate of the target critic."""
    batch_size: int = bounded(256, ge=1)
    actor_lr: float = bounded(3e-4, gt=0)
    critic_lr: float = bounded(3e-4, gt=0)
    value_lr: float = bounded(3e-4, gt=0)
    hidden: tuple[int, ...] = bounded((256, 256), ge=1)
    """Hidden layer sizes of every network."""
    critics: int = bounded(2, ge=1)
    """Members of the critic ensemble (the min is the target)."""
    actor_dropout: float = bounded(0.0, ge=0, lt=1)
    """Dropout in the actor (0.1 for kitchen / adroit in the reference)."""
    cosine_actor_schedule: bool = True
    """Decay the actor learning rate to 0 over ``steps`` with a cosine."""
    steps: int = bounded(100_000, ge=1)
    """Planned number of updates (for the cosine schedule)."""

    def __post_init__(self) -> None:
        check_fields(self)


def actor_lr_factor(config: IQLConfig, step: int) -> float:
    """Multiplier of the actor learning rate at ``step``: cosine decay to 0 over ``config.steps`` (or 1)."""
    if not config.cosine_actor_schedule:
        return 1.0
    steps = max(config.steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(step, steps) / steps))


def _constant(step: int) -> float:
    return 1.0


def iql_scheduler(optimizer: torch.optim.Optimizer, config: IQLConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """Learning-rate schedule of an optimizer with (critic, value, actor) param groups: the actor's is
    ``actor_lr_factor``, the others constant."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, [_constant, _constant, functools.partial(actor_lr_factor, config)])


def expectile_loss(diff: torch.Tensor, expectile: float) -> torch.Tensor:
    """Asymmetric L2: ``mean(|tau - 1(diff < 0)| * diff^2)`` over ``diff [B]``."""
    weight = torch.where(diff < 0, 1.0 - expectile, expectile)
    return (weight * diff.pow(2)).mean()


class IQLNets(Protocol):
    """What ``iql_losses`` needs: the config and the four networks (``IQL`` and ``ImageIQL`` both have them)."""

    config: IQLConfig
    critic: Critic
    target_critic: Critic
    value: ValueNet
    actor: GaussianActor


def iql_losses(nets: IQLNets, batch: dict[str, torch.Tensor], target_obs: torch.Tensor | None = None,
               actor_obs: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """IQL's three losses and diagnostics (0-dim tensors) for one batch of ``obs [B, D]``, ``actions [B, A]``,
    ``rewards [B]`` (already scaled), ``next_obs [B, D]``, ``terminals [B]``.

    The value and the critics see ``obs``; the target critic sees ``target_obs`` and the actor ``actor_obs``
    (both default to ``obs``; with an image encoder they are the target encoder's and detached features).
    """
    cfg = nets.config
    obs, actions = batch["obs"], batch["actions"]
    with torch.no_grad():
        target_q = nets.target_critic(obs if target_obs is None else target_obs, actions).min(dim=0).values  # [B]
        next_v = nets.value(batch["next_obs"])  # [B]
        q_target = batch["rewards"] + cfg.discount * (1.0 - batch["terminals"].float()) * next_v
    v = nets.value(obs)
    adv = target_q - v
    value_loss = expectile_loss(adv, cfg.expectile)
    qs = nets.critic(obs, actions)  # [E, B]
    critic_loss = (qs - q_target).pow(2).mean(dim=1).sum()
    weights = torch.exp(cfg.temperature * adv.detach()).clamp(max=cfg.weight_clip)
    actor_loss = -(weights * nets.actor.log_prob(obs if actor_obs is None else actor_obs, actions)).mean()
    return {
        "value_loss": value_loss, "critic_loss": critic_loss, "actor_loss": actor_loss,
        "q_mean": qs.detach().mean(), "v_mean": v.detach().mean(), "adv_mean": adv.detach().mean(),
        "weight_mean": weights.mean(),
    }


class IQL(nn.Module):
    """IQL agent for ``obs [B, D]`` and actions ``[B, A]`` in [-1, 1]."""

    def __init__(self, obs_dim: int, act_dim: int, config: IQLConfig | None = None):
        super().__init__()
        config = config or IQLConfig()
        self.config = config
        self.critic = Critic(obs_dim, act_dim, config.hidden, config.critics)
        self.target_critic = Critic(obs_dim, act_dim, config.hidden, config.critics)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.value = ValueNet(obs_dim, config.hidden)
        self.actor = GaussianActor(obs_dim, act_dim, config.hidden, config.actor_dropout)
        self.optimizer = torch.optim.Adam([
            {"params": self.critic.parameters(), "lr": config.critic_lr},
            {"params": self.value.parameters(), "lr": config.value_lr},
            {"params": self.actor.parameters(), "lr": config.actor_lr},
        ], fused=True)  # one kernel per step instead of a loop of small ops (CPU and CUDA)
        self.scheduler = iql_scheduler(self.optimizer, config)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The three losses and diagnostics for one batch (``obs``, ``actions``, ``rewards``, ``next_obs``,
        ``terminals``; rewards already scaled)."""
        return iql_losses(self, batch)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on all three losses, then the target update. Returns detached metrics
        (0-dim tensors on the training device; reading them syncs, so accumulate and log every k steps)."""
        return gradient_step(self, self.losses(batch))

    def polyak_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.target_critic, self.critic)]

