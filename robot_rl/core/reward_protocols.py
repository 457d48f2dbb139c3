"""What the learners know of rewards: two protocols, so that ``robot_rl.rl`` never imports ``robot_rl.rewards``.

The concrete sources (a learned reward model, reward code, a success classifier, the simulator's reward) live in
``robot_rl.rewards.sources``; the CLI resolves a name such as ``reward-model:RUN_DIR`` there and hands the object
to the fine-tuning loop.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch


class RewardSource(Protocol):
    """Labels new transitions online: rewards ``[N]`` in the units of the offline dataset's active reward (the
    trainer applies the offline reward scale afterwards).

    A source that reads camera frames (an image reward model, CLIP) also has ``camera_input = (camera, size)``:
    whoever builds the environment renders ``obs["image/<camera>"]`` at ``size`` x ``size`` for it
    (``camera_input(source)`` reads it; None for sources of states only)."""

    name: str

    def __call__(self, obs: dict[str, torch.Tensor], action: torch.Tensor, next_obs: dict[str, torch.Tensor],
                 env_reward: torch.Tensor) -> torch.Tensor:
        """``[N]`` rewards for ``action [N, A]`` taken at ``obs`` leading to ``next_obs``; ``env_reward [N]`` is the
        backend's own reward (NaN on a real robot)."""
        ...


class SuccessSignal(Protocol):
    """What decides "success" online (the sparse reward of fine-tuning, the end of a reset-free attempt):
    ``__call__(obs) -> P(success) [N]`` of post-step observations and the ``threshold`` above which it counts.
    ``robot_rl.rewards.success``: ``ClassifierSuccess``, ``ConstantSuccess``; ``robot_rl.rl.reset_free``:
    ``GroundTruthSuccess``."""

    name: str
    threshold: float

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor: ...


class RewardLearner(Protocol):
    """A reward that keeps learning during fine-tuning: it sees every transition, now and then updates itself (the
    online preference loop, ``robot_rl.rewards.online``: new labels on fresh rollouts, the reward ensemble retrained),
    and then the learner relabels its replay buffers with ``rewards``.

    The fine-tuning loops call ``observe`` after every env step, ``update`` after it, and ``restart`` when they reset
    the envs themselves (after an evaluation): episodes in progress then end unfinished and are dropped."""

    relabels_offline: bool
    """The offline data's rewards came from this reward too: relabel them after an update as well."""

    def observe(self, obs: dict[str, torch.Tensor], info: dict[str, Any], action: torch.Tensor,
                next_obs: dict[str, torch.Tensor], env_reward: torch.Tensor, terminated: torch.Tensor,
                truncated: torch.Tensor, step_info: dict[str, Any]) -> None:
        """One env step of all ``N`` envs: ``obs`` and its ``info`` (from the reset or the step before, with
        ``sim_state``), the action, ``next_obs`` (pre-reset observation for rows that ended), the backend's reward,
        the episode ends and the step's own ``info`` (``success``)."""
        ...

    def update(self, env_steps: int) -> bool:
        """Learn if due at ``env_steps`` (env steps so far); True when the reward changed (relabel now)."""
        ...

    def rewards(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``[M]`` current rewards of raw ``states [M, D]`` and ``actions [M, A]`` (dataset units, unscaled)."""
        ...

    def restart(self) -> None: ...

    def metrics(self) -> dict[str, float]:
        """Counters to log (labels asked, reused, rounds...)."""
        ...


class CheckedSuccessSignal(SuccessSignal, Protocol):
    """A success signal whose claims a teacher checks (``robot_rl.rewards.success.verify.VerifiedSuccess``); the
    reset-free loop asks ``check`` at each claim and relabels its data when ``update`` says the signal changed."""

    def check(self, obs: dict[str, torch.Tensor], info: dict[str, Any], step: int) -> str:
        """The verdict on a claim at post-step ``obs``: ``"confirmed"`` or ``"unverified"`` (the claim stands),
        ``"rejected"`` or ``"held"`` (it does not)."""
        ...

    def update(self) -> bool:
        """True once after the signal changed (a classifier retrained on the answers)."""
        ...

    def metrics(self) -> dict[str, float]: ...


def camera_input(source: object) -> tuple[str, int] | None:
    """``(camera, square size)`` of the frames ``source`` reads online, or None when it reads states only."""
    value = getattr(source, "camera_input", None)
    return None if value is None else (str(value[0]), int(value[1]))
