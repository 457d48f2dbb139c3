"""What every learner is: the ``Agent`` protocol, and the gradient step all of them share.

An agent owns its networks, one optimizer (one param group per network, in a fixed order), a learning-rate
scheduler (``LambdaLR``: one factor function per group), and the list of (target, source) pairs it Polyak-averages.
``train``, ``finetune``, the CUDA-graph runner (``graphed.py``) and checkpoints use nothing else, so a new learner
is one file that satisfies this protocol plus one line in ``algorithms.ALGORITHMS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from robot_rl.nn.networks import GaussianActor

LOSS_KEYS = ("value_loss", "critic_loss", "actor_loss", "temperature_loss")
"""Losses an agent's ``losses`` may return; every other key is a diagnostic (logged, not optimized)."""


@runtime_checkable
class Agent(Protocol):
    """A learner: ``losses(batch)`` and one ``update(batch)`` on a batch of transitions (``obs [B, D]``,
    ``actions [B, A]`` in [-1, 1], ``rewards [B]`` already scaled, ``next_obs [B, D]``, ``terminals [B]``; image
    agents also ``image`` / ``next_image`` uint8 ``[B, H, W, 3]``)."""

    @property
    def config(self) -> Any:
        """The algorithm's hyperparameters (a frozen dataclass with ``target_rate`` when it has targets)."""
        ...

    @property
    def actor(self) -> GaussianActor:
        """The policy: ``Policy`` wraps it for acting."""
        ...

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """One optimizer, one param group per network (capturable-ready: ``fused=True``)."""
        ...

    @property
    def scheduler(self) -> torch.optim.lr_scheduler.LambdaLR:
        """One factor function per param group, constant after the run's planned steps."""
        ...

    def losses(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Losses (keys in ``LOSS_KEYS``; disjoint parameter sets, cross-terms detached) and 0-dim diagnostics."""
        ...

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step; detached 0-dim metrics on the training device (reading them syncs)."""
        ...

    def polyak_pairs(self) -> Sequence[tuple[nn.Module, nn.Module]]:
        """``(target, source)`` modules averaged at ``config.target_rate`` after each step (empty: none)."""
        ...

    def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any: ...

    def parameters(self, recurse: bool = True) -> Any: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...

    def train(self, mode: bool = True) -> Any: ...

    def eval(self) -> Any: ...


def apply_gradients(agent: Agent, out: dict[str, torch.Tensor]) -> None:
    """Backward of the sum of the losses in ``out`` and one optimizer step (no schedule, no target update).

    The parameter sets of the losses are disjoint and their cross-terms detached, so one backward serves all.
    """
    agent.optimizer.zero_grad(set_to_none=True)
    losses = [out[k] for k in LOSS_KEYS if k in out]
    sum(losses[1:], losses[0]).backward()
    agent.optimizer.step()


def polyak_update(agent: Agent) -> None:
    """Move every target of ``agent.polyak_pairs()`` towards its source by ``agent.config.target_rate``."""
    pairs = agent.polyak_pairs()
    if pairs:
        with torch.no_grad():
            torch._foreach_lerp_([p for target, _ in pairs for p in target.parameters()],
                                 [p for _, source in pairs for p in source.parameters()],
                                 agent.config.target_rate)


def gradient_step(agent: Agent, out: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The eager update every agent shares: gradients and optimizer step, learning-rate schedule, target update.

    Returns ``out`` detached (0-dim tensors on the training device).
    """
    apply_gradients(agent, out)
    agent.scheduler.step()
    polyak_update(agent)
    return {k: v.detach() for k, v in out.items()}


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """``optimizer.state_dict()`` in the portable form checkpoints keep: learning rates as floats and
    ``capturable`` off (the CUDA-graph runner makes them device tensors; a resume on another device or path
    must not inherit that)."""
    state = optimizer.state_dict()
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if "capturable" in group:
            group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


def sample_rows(config: Any) -> int:
    """Rows one ``update`` of an agent with ``config`` consumes: ``batch_size``, times ``utd`` for agents that take
    several minibatches per update (RLPD)."""
    return int(config.batch_size) * int(getattr(config, "utd", 1))


def single_step(config: Any) -> bool:
    """Whether one ``update`` is one joint gradient step on ``losses`` (what the CUDA-graph runner records)."""
    return int(getattr(config, "utd", 1)) == 1
