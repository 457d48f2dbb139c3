"""The ``RobotEnv`` protocol every backend satisfies (MuJoCo/MetaWorld, Isaac Lab, ROS 2).

Conventions (N = ``num_envs``):

- ``reset(seed)`` returns ``(obs, info)``; ``obs`` is a flat dict of named terms, each ``[N, ...]``:
  ``"state"`` float32 ``[N, D]``, ``"image/<camera>"`` uint8 ``[N, H, W, 3]``, ``"privileged"`` float32.
- ``step(action)`` takes float32 ``[N, A]`` in ``[-1, 1]``. Non-finite actions raise ``ValueError``
  naming the env index; out-of-range actions are clipped and counted in ``info["action_clipped"]``
  (int64 ``[N]``, number of clipped elements this step).
- ``StepResult.reward`` float32 ``[N]`` is the task's ground-truth reward in simulation, NaN on a robot.
  ``terminated`` / ``truncated`` bool ``[N]``.
- Autoreset is same-step: where ``terminated | truncated``, the returned ``obs`` row is already the first
  observation of the next episode, and the last observation of the finished one is in
  ``info["final_obs"]`` (a dict like ``obs``; rows of envs that did not finish hold their current obs).
- ``info["success"]`` bool ``[N]`` where the backend can tell (before any reset of that row).
- Sim backends put ``info["sim_state"]`` float64 ``[N, S]`` (the state of the returned obs) in every
  ``reset`` and ``step`` info, and ``info["final_sim_state"]`` next to ``final_obs``.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol, runtime_checkable

import torch

from robot_rl.core.specs import EnvSpec

Obs = dict[str, torch.Tensor]


class StepResult(NamedTuple):
    obs: Obs
    reward: torch.Tensor
    """float32 ``[N]``; NaN where no ground truth exists (real robot)."""
    terminated: torch.Tensor
    """bool ``[N]``: the episode reached a terminal state (no bootstrapping past it)."""
    truncated: torch.Tensor
    """bool ``[N]``: the episode was cut by the time limit (bootstrapping continues)."""
    info: dict[str, Any]


@runtime_checkable
class RobotEnv(Protocol):
    """A batch of ``num_envs`` environments behind one tensor interface."""

    num_envs: int
    device: torch.device
    spec: EnvSpec

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        """Reset every env; env ``i`` is seeded with ``seed + i`` when ``seed`` is given."""
        ...

    def step(self, action: torch.Tensor) -> StepResult:
        """Advance every env by one control step with ``action`` float32 ``[N, A]``."""
        ...

    def close(self) -> None:
        ...


@runtime_checkable
class SimEnv(RobotEnv, Protocol):
    """A simulator backend: physics state can be saved, restored and rendered later."""

    def get_sim_state(self) -> torch.Tensor:
        """float64 ``[N, S]`` state of every env."""
        ...

    def set_sim_state(self, state: torch.Tensor) -> Obs:
        """Restore float64 ``[N, S]`` states; returns the observations of the restored states."""
        ...

    def render(self, sim_state: torch.Tensor, camera: str, width: int, height: int) -> torch.Tensor:
        """Render float64 ``[B, S]`` stored states (any B) from ``camera``: uint8 ``[B, height, width, 3]``.

        Does not disturb the live environments.
        """
        ...


def validate_action(action: torch.Tensor, num_envs: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Check a batched action and clip it to ``[-1, 1]``.

    Returns ``(clipped float32 [N, A], clipped element count int64 [N])``. Raises ``ValueError`` naming
    the first env index with a non-finite action (checked before clipping: clipping NaN gives NaN).
    """
    if not isinstance(action, torch.Tensor):
        action = torch.as_tensor(action)
    if tuple(action.shape) != (num_envs, dim):
        raise ValueError(f"action: expected shape [{num_envs}, {dim}], got {list(action.shape)}")
    action = action.to(torch.float32)
    finite = torch.isfinite(action).all(dim=1)
    if not bool(finite.all()):
        bad = int((~finite).nonzero()[0, 0])
        raise ValueError(f"action for env {bad} is not finite: {action[bad].tolist()}")
    clipped_count = ((action > 1.0) | (action < -1.0)).sum(dim=1).to(torch.int64)
    return action.clamp(-1.0, 1.0), clipped_count
