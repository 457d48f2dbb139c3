"""Isaac Lab 3.x tasks as ``isaaclab/<gym id>`` envs, e.g. ``isaaclab/Isaac-Cartpole-Direct``.

Isaac Lab (``isaaclab==3.0.0``, torch 2.11, Python 3.12) cannot share the project's environment (torch 2.14.1):
``bash scripts/setup_isaaclab.sh`` makes ``.venv-isaaclab`` with Isaac Lab and robot_rl. This module imports
no Isaac Lab code; ``robot_rl.envs.isaaclab.env`` (the adapter) does, on the first ``make``.

Options, read from the environment when an env is made (so every ``robot-rl`` command takes them):

- ``ROBOT_RL_ISAACLAB_ASSETS=DIR``: load USD files that Isaac Lab fetches from NVIDIA's servers from ``DIR``
  instead (``robot_rl.envs.isaaclab.assets``). ``setup_isaaclab.sh`` fills ``.venv-isaaclab/assets`` with the
  cartpole that the ``newton`` wheel ships.
- ``ROBOT_RL_ISAACLAB_DEVICE``: where Isaac Lab simulates, e.g. ``cuda:0`` (default: ``make_env``'s ``device``,
  which the ``robot-rl`` commands leave at ``cpu``); observations and rewards are copied to ``make_env``'s device.
- ``ROBOT_RL_ISAACLAB_OVERRIDES``: Isaac Lab config overrides, space-separated, as ``resolve_task_config``
  takes them (default ``presets=newton_mjwarp``: Newton with MuJoCo-Warp, which runs on the CPU).
"""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from robot_rl.core.env import SimEnv

SETUP_COMMAND = "bash scripts/setup_isaaclab.sh"
ASSETS_ENV = "ROBOT_RL_ISAACLAB_ASSETS"
OVERRIDES_ENV = "ROBOT_RL_ISAACLAB_OVERRIDES"
DEVICE_ENV = "ROBOT_RL_ISAACLAB_DEVICE"
DEFAULT_OVERRIDES = ("presets=newton_mjwarp",)

SUCCESS_TERMS: dict[str, str] = {
    "Isaac-Cartpole-Direct": "time_out",
    "Isaac-Cartpole": "time_out",
}
"""Task id -> the termination term that means success. Cartpole's own ``Metrics/success_rate`` counts an episode
that reached its time limit without leaving the rail as a success; tasks not listed report no ``info["success"]``."""


def installed() -> bool:
    """Whether Isaac Lab's task package can be imported in this Python."""
    return importlib.util.find_spec("isaaclab_tasks") is not None


def require_isaaclab(name: str) -> None:
    """Raise ``ValueError`` (one line: the missing package and the set-up command) unless Isaac Lab is installed."""
    if not installed():
        raise ValueError(f"task '{name}' needs Isaac Lab 3.0 (package 'isaaclab' is not installed in this Python); "
                         f"run `{SETUP_COMMAND}` and use .venv-isaaclab/bin/python or .venv-isaaclab/bin/robot-rl")


_TASKS: list[str] = []


def task_names() -> list[str]:
    """Every gym id Isaac Lab registers (``Isaac-*``), ``[]`` where Isaac Lab is not installed."""
    if not _TASKS and installed():
        import gymnasium
        import isaaclab_tasks  # noqa: F401  (registers the tasks with gymnasium)

        _TASKS.extend(sorted(k for k in gymnasium.registry if k.startswith(("Isaac-", "IsaacContrib-"))))
    return list(_TASKS)


def make(task: str, **kwargs: Any) -> SimEnv:
    """Build the adapter for Isaac Lab task ``task`` (a gym id); ``kwargs`` as for ``robot_rl.envs.make_env``."""
    require_isaaclab(f"isaaclab/{task}")
    from robot_rl.envs.isaaclab.env import IsaacLabEnv

    return IsaacLabEnv(task, **kwargs)
