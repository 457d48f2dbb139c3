"""RLPD (Ball et al., 2023): SAC with a LayerNorm critic ensemble, a random-subset target and a high update-to-data
ratio, for fine-tuning on offline plus online data (the mix is the sampler's: ``finetune.mixed_batch``, 50/50).

One update (``RLPD.update``) takes ``utd`` minibatches stacked into one batch of ``utd * batch_size`` rows: a critic
step (and target update) on each of the first ``utd - 1``, then one joint step on the last: critic, actor and
temperature (``rlpd_losses``; disjoint parameters, cross-terms detached, so one backward serves all three). With
``utd = 1`` an update is exactly ``gradient_step(agent, agent.losses(batch))``, which the CUDA-graph runner captures;
with ``utd > 1`` runs take the eager path (``update_path`` says so).

Randomness (the actor's samples, the target subset) draws from torch's default generator, which checkpoints keep.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from robot_rl.nn.networks import Critic, TanhGaussianActor
from robot_rl.rl.agent import gradient_step, polyak_update


@dataclass(frozen=True)
class RLPDConfig:
    """RLPD hyperparameters; defaults are the reference implementation's except ``utd`` (see there)."""

    critics: int = 10
    """Members of the LayerNorm critic ensemble."""
    target_subset: int = 2
    """Members drawn at random (per update) whose min is the TD target."""
    utd: int = 2
    """Critic steps per update (update-to-data ratio when fine-tuning makes one update per env step). RLPD uses 20;
    on this project's 2-core CPUs a 10-critic step takes ~20 ms, so 20 would cap fine-tuning near 2-3 env steps/s
    (``benchmarks/finetune_rlpd.md``); 2 keeps a MetaWorld run of a few thousand steps within minutes. Raise it on a
    GPU (``--set rlpd.utd=20``)."""
    discount: float = 0.99
    target_rate: float = 0.005
    """Polyak rate of the target critics."""
    batch_size: int = 256
    """Rows of one minibatch (an update samples ``utd`` of them)."""
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    temperature_lr: float = 3e-4
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer sizes of the actor and of each critic."""
    init_temperature: float = 1.0
    """Initial entropy temperature alpha (learned)."""
    target_entropy: float | None = None
    """Entropy the temperature steers the policy to (None: -action_dim, SAC's default; RLPD's code uses
    -action_dim / 2)."""
    backup_entropy: bool = True
    """Subtract ``alpha * log pi(a'|s')`` in the TD target (soft Q-learning, as RLPD)."""
    actor_dropout: float = 0.0
    """Kept at 0: the actor's layout then matches IQL's, so ``finetune --algo rlpd`` can start from an IQL actor."""
    steps: int = 100_000
    """Planned number of updates (the learning rates are constant; kept for the runner's schedule table)."""

    def __post_init__(self) -> None:
        if self.critics < 2 or not 1 <= self.target_subset <= self.critics:
            raise ValueError(f"rlpd needs critics >= 2 and 1 <= target_subset <= critics, got critics={self.critics}, "
                             f"target_subset={self.target_subset}")
        if self.utd < 1:
            raise ValueError(f"rlpd.utd must be >= 1, got {self.utd}")

    @staticmethod
    def from_dict(d: dict[str, Any]) -> RLPDConfig:
        return RLPDConfig(**{**d, "hidden": tuple(d.get("hidden", RLPDConfig.hidden))})


def _constant(step: int) -> float:
    return 1.0


def random_subset(members: int, size: int, device: torch.device) -> torch.Tensor:
    """``size`` distinct member indices ``[size]`` drawn uniformly from the default generator (no host sync)."""
    return torch.rand(members, device=device).argsort()[:size]


def td_target(agent: RLPD, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``r + discount * (1 - terminal) * (min over a random subset of target critics of Q(s', a') - alpha log pi)``
    with ``a' ~ pi(s')``: ``[B]``, no gradient."""
    cfg = agent.config
    with torch.no_grad():
        next_actions, next_log_prob = agent.actor.sample(batch["next_obs"])
        subset = random_subset(cfg.critics, cfg.target_subset, next_actions.device)
        next_q = agent.target_critic(batch["next_obs"], next_actions).index_select(0, subset).min(dim=0).values
        if cfg.backup_entropy:
            next_q = next_q - agent.log_alpha.exp() * next_log_prob
        return batch["rewards"] + cfg.discount * (1.0 - batch["terminals"].float()) * next_q


def critic_loss(agent: RLPD, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean squared TD error over members and rows, and the ensemble's ``Q(s, a) [E, B]``."""
    qs = agent.critic(batch["obs"], batch["actions"])  # [E, B]
    return (qs - td_target(agent, batch)).pow(2).mean(), qs


def rlpd_losses(agent: RLPD, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Critic, actor and temperature losses and diagnostics (0-dim) for one minibatch (``obs [B, D]``, ``actions
    [B, A]``, ``rewards [B]`` scaled, ``next_obs [B, D]``, ``terminals [B]``)."""
    obs = batch["obs"]
    alpha = agent.log_alpha.exp()
    loss_q, qs = critic_loss(agent, batch)
    new_actions, log_prob = agent.actor.sample(obs)
    frozen = {name: p.detach() for name, p in agent.critic.named_parameters()}  # the actor's gradient only
    q_pi = functional_call(agent.critic, frozen, (obs, new_actions)).mean(dim=0)  # [B]
    actor_loss = (alpha.detach() * log_prob - q_pi).mean()
    entropy = -log_prob.detach().mean()
    temperature_loss = alpha * (entropy - agent.target_entropy)
    return {"critic_loss": loss_q, "actor_loss": actor_loss, "temperature_loss": temperature_loss,
            "q_mean": qs.detach().mean(), "q_std": qs.detach().std(dim=0).mean(), "entropy": entropy,
            "temperature": alpha.detach()}


class SACAgent(nn.Module):
    """What RLPD and Cal-QL share: a tanh-Gaussian actor, a learned temperature, a critic ensemble with a Polyak
    target, one fused Adam over the three (actor last: ``train`` logs its lr as ``actor_lr``) at constant learning
    rates. ``config`` needs ``hidden``, ``critics``, ``actor_dropout``, ``init_temperature``, ``target_entropy``
    and the three learning rates; a subclass gives ``critic_loss`` (its critics' loss on one minibatch)."""

    def __init__(self, obs_dim: int, act_dim: int, config: Any, layer_norm: bool):
        super().__init__()
        self.config = config
        self.critic = Critic(obs_dim, act_dim, config.hidden, config.critics, layer_norm=layer_norm)
        self.target_critic = Critic(obs_dim, act_dim, config.hidden, config.critics, layer_norm=layer_norm)
        self.target_critic.load_state_dict(self.critic.state_dict())
        self.target_critic.requires_grad_(False)
        self.actor = TanhGaussianActor(obs_dim, act_dim, config.hidden, config.actor_dropout)
        self.log_alpha = nn.Parameter(torch.tensor(float(config.init_temperature)).log())
        self.target_entropy = float(-act_dim if config.target_entropy is None else config.target_entropy)
        self.optimizer = torch.optim.Adam([
            {"params": self.critic.parameters(), "lr": config.critic_lr},
            {"params": [self.log_alpha], "lr": config.temperature_lr},
            {"params": self.actor.parameters(), "lr": config.actor_lr},
        ], fused=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, [_constant] * 3)

    # Given by each subclass; declared here so that a SACAgent is an ``agent.Agent`` (polyak_update, gradient_step).
    def critic_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def critic_step(self, batch: dict[str, torch.Tensor]) -> None:
        """One critic-only step and target update (the actor and temperature get no gradient, so Adam skips them):
        RLPD's extra critic steps and ``finetune``'s warm-up of new critics."""
        self.optimizer.zero_grad(set_to_none=True)
        self.critic_loss(batch).backward()
        self.optimizer.step()
        polyak_update(self)

    def polyak_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.target_critic, self.critic)]

    def load_actor(self, actor_state: dict[str, torch.Tensor]) -> str:
        """Start from another run's actor (IQL, BC and these share the layout): see ``load_actor_into``."""
        return load_actor_into(self.actor, actor_state)


class RLPD(SACAgent):
    """RLPD agent for ``obs [B, D]`` and actions ``[B, A]`` in [-1, 1]."""

    config: RLPDConfig

    def __init__(self, obs_dim: int, act_dim: int, config: RLPDConfig | None = None):
        super().__init__(obs_dim, act_dim, config or RLPDConfig(), layer_norm=True)

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Critic, actor and temperature losses on one minibatch (the joint step of ``update``)."""
        return rlpd_losses(self, batch)

    def critic_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return critic_loss(self, batch)[0]

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``utd - 1`` critic steps, then a joint critic / actor / temperature step, on the ``utd`` minibatches of
        ``batch`` (``utd * batch_size`` rows, as ``sample_rows`` draws). Returns the last step's detached metrics."""
        minibatches = split_minibatches(batch, self.config.utd)
        for minibatch in minibatches[:-1]:
            self.critic_step(minibatch)
        return gradient_step(self, self.losses(minibatches[-1]))


def load_actor_into(actor: TanhGaussianActor, actor_state: dict[str, torch.Tensor]) -> str:
    """Copy another run's actor into ``actor`` when every tensor's name and shape match, its ``log_std`` clamped into
    the trainable range. Returns what was done, in words."""
    own = actor.state_dict()
    shapes = {k: tuple(v.shape) for k, v in actor_state.items()}
    if shapes != {k: tuple(v.shape) for k, v in own.items()}:
        return "actor started fresh (the checkpoint's actor layout differs: hidden sizes or dropout)"
    state = dict(actor_state)
    low, high = actor.LOG_STD_MIN + 0.1, actor.LOG_STD_MAX
    state["log_std"] = state["log_std"].clamp(low, high)  # a clamped log_std gets no gradient: keep it inside
    actor.load_state_dict(state)
    return "actor loaded from the checkpoint (same mean network; its log_std as the pre-tanh one)"


def split_minibatches(batch: dict[str, torch.Tensor], parts: int) -> list[dict[str, torch.Tensor]]:
    """``batch`` of ``parts * B`` rows -> ``parts`` minibatches of ``B`` rows (views)."""
    rows = next(iter(batch.values())).shape[0]
    if rows % parts:
        raise ValueError(f"an RLPD update needs utd * batch_size rows ({parts} minibatches), got {rows}")
    chunks = {k: v.chunk(parts) for k, v in batch.items()}
    return [{k: c[i] for k, c in chunks.items()} for i in range(parts)]


def config_dict(config: RLPDConfig) -> dict[str, Any]:
    d = dataclasses.asdict(config)
    d["hidden"] = list(config.hidden)
    return d
