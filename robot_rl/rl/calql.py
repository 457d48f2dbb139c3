"""Cal-QL (Nakamoto et al., 2023): CQL whose conservative term is calibrated by Monte-Carlo returns, for offline
pretraining that fine-tunes online without the initial dip.

The agent is SAC (tanh-Gaussian actor, learned temperature, twin critics with Polyak targets) plus CQL(H)'s
regularizer on each critic: ``alpha * mean(logsumexp(Q(s, a_ood)) - Q(s, a_data))`` where the ``a_ood`` are
``actions`` uniform random actions at ``s``, current-policy actions at ``s`` and next-policy actions sampled at
``s'`` (all evaluated at ``s``), each term importance-corrected by its log-density (CQL(H) with importance
sampling, temperature 1). With ``calibrated`` (Cal-QL), the Q-values of the policy-sampled actions are clipped
below by the Monte-Carlo return-to-go of the state before the logsumexp: ``max(Q(s, a_pi), mc_return(s))``, so the
critic is pushed down no further than the behaviour policy's value.

Batches therefore carry ``mc_return [B]``: ``train`` computes it once when loading the offline data
(``mc_returns``: the discounted sum of the scaled active rewards to the end of each episode; a time-limit truncated
episode gives its truncated sum, as Cal-QL's code does). Online transitions in ``finetune`` have no known return:
their ``mc_return`` is ``-inf`` (``NO_MC_RETURN``), so ``max(Q, -inf) = Q`` and the calibration is off on those
rows; it stays on the offline rows of each mixed batch. Fine-tuning thus continues with the same losses (CQL term
included, as the reference does). When an online reward learner relabels the offline rewards, ``finetune``
recomputes the offline ``mc_return`` from the new rewards (``refresh_mc_return``).

Deviations from the reference (JaxCQL / Cal-QL): no Lagrange-tuned alpha, no max-target backup and no
infinite-horizon return option; actor and critic learning rates both 3e-4 (the reference scripts use 1e-4 for the
policy); state observations only.

One update is one joint step (critic, actor, temperature: disjoint parameters, cross-terms detached), so
``gradient_step(agent, agent.losses(batch))`` is an update and the CUDA-graph runner captures it. Randomness draws
from torch's default generator, which checkpoints keep.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from robot_rl.rl.agent import gradient_step
from robot_rl.rl.rlpd import SACAgent

NO_MC_RETURN = float("-inf")
"""``mc_return`` of rows without a Monte-Carlo return (online transitions): disables the calibration there."""


@dataclass(frozen=True)
class CalQLConfig:
    """Cal-QL hyperparameters; defaults follow the Cal-QL / CQL reference (see the module docstring for deviations)."""

    cql_alpha: float = 5.0
    """Weight of the conservative (min-Q) term, CQL's ``cql_min_q_weight``: 5.0 is Cal-QL's AntMaze and Kitchen
    value (1.0 for Adroit)."""
    actions: int = 10
    """Actions sampled per state for each of the three logsumexp sets (random, policy at s, policy at s')."""
    calibrated: bool = True
    """Clip the policy actions' Q-values in the logsumexp below by ``mc_return`` (Cal-QL); false: plain CQL."""
    critics: int = 2
    """Q-networks; the TD target and the actor take their min."""
    discount: float = 0.99
    """Discount of the TD target and of the Monte-Carlo returns."""
    target_rate: float = 0.005
    """Polyak rate of the target critics."""
    batch_size: int = 256
    """Rows of one update's minibatch."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of each critic."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha (learned)."""
    target_entropy: float | None = None
    """Entropy the temperature steers the policy to (None: -action_dim, as the reference)."""
    backup_entropy: bool = False
    """Subtract ``alpha * log pi(a'|s')`` in the TD target (CQL's reference: off)."""
    actor_dropout: float = 0.0
    """Kept at 0: the actor's layout then matches IQL's, so ``finetune --algo calql`` can start from an IQL actor."""
    steps: int = 1_000_000
    """Planned number of updates (the learning rates are constant; kept for the runner's schedule table)."""

    def __post_init__(self) -> None:
        if self.critics < 1 or self.actions < 1 or self.cql_alpha < 0:
            raise ValueError(f"calql needs critics >= 1, actions >= 1 and cql_alpha >= 0, got critics={self.critics}, "
                             f"actions={self.actions}, cql_alpha={self.cql_alpha}")


def mc_returns(rewards: np.ndarray, episode_index: np.ndarray, terminals: np.ndarray, discount: float
               ) -> np.ndarray:
    """Discounted return-to-go ``[N]`` float32 of every row: ``G_t = r_t + discount * G_{t+1}`` within an episode
    (rows in step order, episodes contiguous), restarting after a terminal row; the last row of a truncated episode
    has ``G = r`` (the truncated sum)."""
    rewards = np.asarray(rewards, np.float64)
    out = np.zeros(len(rewards), np.float64)
    following = 0.0
    for i in range(len(rewards) - 1, -1, -1):
        last = i == len(rewards) - 1 or episode_index[i + 1] != episode_index[i] or bool(terminals[i])
        following = rewards[i] + (0.0 if last else discount * following)
        out[i] = following
    return out.astype(np.float32)


def refresh_mc_return(data: dict[str, torch.Tensor], episode_index: np.ndarray, discount: float) -> None:
    """Recompute ``data["mc_return"]`` in place (a view of a sampler's packed columns stays one) from
    ``data["rewards"]`` and ``data["terminals"]``, after the rewards were relabeled; ``episode_index [N]`` as
    ``mc_returns`` takes it."""
    rewards = data["rewards"].detach().cpu().numpy()
    terminals = data["terminals"].detach().cpu().numpy()
    fresh = mc_returns(rewards, episode_index, terminals, discount)
    data["mc_return"].copy_(torch.from_numpy(fresh).to(data["mc_return"].device))


def calibrated_logsumexp_terms(q_random: torch.Tensor, q_current: torch.Tensor, logp_current: torch.Tensor,
                               q_next: torch.Tensor, logp_next: torch.Tensor, mc_return: torch.Tensor, act_dim: int,
                               calibrated: bool) -> torch.Tensor:
    """The importance-corrected Q-values whose logsumexp is CQL(H)'s soft maximum: ``[E, B, 3n]`` from Q-values
    ``[E, B, n]`` of random, current-policy and next-policy actions and log-densities ``[B, n]``. With
    ``calibrated``, the policy actions' Q-values are first clipped below by ``mc_return [B]``."""
    if calibrated:
        bound = mc_return.view(1, -1, 1)
        q_current, q_next = torch.maximum(q_current, bound), torch.maximum(q_next, bound)
    random_density = act_dim * math.log(0.5)  # uniform on [-1, 1]^A
    return torch.cat([q_random - random_density, q_next - logp_next.unsqueeze(0),
                      q_current - logp_current.unsqueeze(0)], dim=2)


def _q_repeated(critic: nn.Module, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """``Q(obs_b, actions_bj)``: ``obs [B, D]``, ``actions [B, n, A]`` -> ``[E, B, n]``."""
    b, n = actions.shape[:2]
    q: torch.Tensor = critic(obs.repeat_interleave(n, dim=0), actions.flatten(0, 1))
    return q.view(-1, b, n)


def td_target(agent: CalQL, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``r + discount * (1 - terminal) * min_e Q_target(s', a')`` with ``a' ~ pi(s')`` (minus ``alpha log pi`` with
    ``backup_entropy``): ``[B]``, no gradient."""
    cfg = agent.config
    with torch.no_grad():
        next_actions, next_log_prob = agent.actor.sample(batch["next_obs"])
        next_q = agent.target_critic(batch["next_obs"], next_actions).min(dim=0).values
        if cfg.backup_entropy:
            next_q = next_q - agent.log_alpha.exp() * next_log_prob
        return batch["rewards"] + cfg.discount * (1.0 - batch["terminals"].float()) * next_q


def critic_losses(agent: CalQL, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """TD error plus ``cql_alpha`` times the (calibrated) CQL gap, summed over critics; and 0-dim diagnostics."""
    cfg = agent.config
    obs, n = batch["obs"], cfg.actions
    b, act_dim = batch["actions"].shape
    qs = agent.critic(obs, batch["actions"])  # [E, B]
    td = (qs - td_target(agent, batch)).pow(2).mean(dim=1).sum()
    with torch.no_grad():  # the sampled actions: the critic's loss only (the actor's parameters get no gradient)
        random_actions = torch.rand(b, n, act_dim, device=obs.device, dtype=obs.dtype) * 2 - 1
        current, logp_current = agent.actor.sample(obs.repeat_interleave(n, dim=0))
        following, logp_next = agent.actor.sample(batch["next_obs"].repeat_interleave(n, dim=0))
    q_random = _q_repeated(agent.critic, obs, random_actions)
    q_current = _q_repeated(agent.critic, obs, current.view(b, n, act_dim))
    q_next = _q_repeated(agent.critic, obs, following.view(b, n, act_dim))
    mc_return = batch["mc_return"] if cfg.calibrated else torch.full_like(batch["rewards"], NO_MC_RETURN)
    terms = calibrated_logsumexp_terms(q_random, q_current, logp_current.view(b, n), q_next, logp_next.view(b, n),
                                       mc_return, act_dim, cfg.calibrated)
    gap = torch.logsumexp(terms, dim=2) - qs  # [E, B]
    penalty = gap.mean(dim=1).sum()
    clipped = (q_current.detach() < mc_return.view(1, -1, 1)).float().mean()
    return {"critic_loss": td + cfg.cql_alpha * penalty, "td_loss": td.detach(), "cql_gap": gap.detach().mean(),
            "q_mean": qs.detach().mean(), "q_random": q_random.detach().mean(), "calibrated_frac": clipped}


def calql_losses(agent: CalQL, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Critic (TD + CQL), actor and temperature losses and diagnostics (0-dim) for one minibatch (``obs [B, D]``,
    ``actions [B, A]``, ``rewards [B]`` scaled, ``next_obs [B, D]``, ``terminals [B]``, ``mc_return [B]``)."""
    obs = batch["obs"]
    alpha = agent.log_alpha.exp()
    out = critic_losses(agent, batch)
    new_actions, log_prob = agent.actor.sample(obs)
    frozen = {name: p.detach() for name, p in agent.critic.named_parameters()}  # the actor's gradient only
    q_pi = functional_call(agent.critic, frozen, (obs, new_actions)).min(dim=0).values  # [B]
    actor_loss = (alpha.detach() * log_prob - q_pi).mean()
    entropy = -log_prob.detach().mean()
    temperature_loss = alpha * (entropy - agent.target_entropy)
    return {**out, "actor_loss": actor_loss, "temperature_loss": temperature_loss, "entropy": entropy,
            "temperature": alpha.detach()}


class CalQL(SACAgent):
    """Cal-QL agent for ``obs [B, D]`` and actions ``[B, A]`` in [-1, 1]; batches carry ``mc_return [B]``."""

    config: CalQLConfig

    def __init__(self, obs_dim: int, act_dim: int, config: CalQLConfig | None = None):
        super().__init__(obs_dim, act_dim, config or CalQLConfig(), layer_norm=False)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Critic, actor and temperature losses on one minibatch (one update is one joint step on them)."""
        return calql_losses(self, batch)

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return gradient_step(self, self.losses(batch))

    def critic_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """TD + CQL: the loss of ``critic_step`` (``finetune``'s warm-up of new critics)."""
        return critic_losses(self, batch)["critic_loss"]


def config_dict(config: CalQLConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["hidden"] = list(config.hidden)
    return d
