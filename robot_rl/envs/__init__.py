"""Simulation backends that satisfy ``robot_rl.core.SimEnv``, and the registry that names them.

    env = make_env("metaworld/drawer-open-v3", num_envs=8)
    obs, info = env.reset(seed=0)          # obs["state"]: float32 [8, 39]

Names: ``metaworld/<task>`` for every MetaWorld v3 task, ``gym/HalfCheetah-v5``, ``gym/Hopper-v5``,
``gym/Walker2d-v5``, ``mjx/reach``, ``mjx/push``, ``mjx/drawer-open``, ``mjx/drawer-close``, and
``isaaclab/<gym id>`` where Isaac Lab 3 is installed (``robot_rl.envs.isaaclab``). The backends (and their heavy
imports: mujoco, metaworld, gymnasium) load on the first ``make_env``/``list_tasks`` call, not on
``import robot_rl.envs``; JAX and MJX load only when an ``mjx/`` task is made.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from collections.abc import Callable
from functools import partial

import torch

from robot_rl.core.env import SimEnv
from robot_rl.envs.task_cards import TaskCard, load_task_card, task_sentence

os.environ.setdefault("MUJOCO_GL", "egl")  # before anything imports mujoco: it picks its GL backend on import

__all__ = ["TaskCard", "list_tasks", "load_task_card", "make_env", "task_expert", "task_sentence"]

_REGISTRY: dict[str, Callable[..., SimEnv]] = {}
"""Env name -> constructor taking (num_envs, device, cameras, image_size, episode_length, task_text)."""


def _registry() -> dict[str, Callable[..., SimEnv]]:
    if not _REGISTRY:
        from robot_rl.envs import gym_mujoco

        if importlib.util.find_spec("metaworld") is not None:  # not in .venv-isaaclab (it pins another MuJoCo)
            from robot_rl.envs import metaworld_env

            for task in metaworld_env.task_names():
                _REGISTRY[f"metaworld/{task}"] = partial(metaworld_env.MetaWorldEnv, task)
        for task in gym_mujoco.TASKS:
            _REGISTRY[f"gym/{task}"] = partial(gym_mujoco.GymMujocoEnv, task)
        from robot_rl.envs.mjx import TASK_NAMES

        for task in TASK_NAMES:
            _REGISTRY[f"mjx/{task}"] = partial(_make_mjx, task)
        from robot_rl.envs import isaaclab

        for task in isaaclab.task_names():  # none where Isaac Lab is not installed (scripts/setup_isaaclab.sh)
            _REGISTRY[f"isaaclab/{task}"] = partial(isaaclab.make, task)
    return _REGISTRY


def _make_mjx(task: str, **kwargs) -> SimEnv:
    from robot_rl.envs.mjx.env import MjxEnv  # imports JAX: only when an mjx task is made

    return MjxEnv(task, **kwargs)


def task_expert(name: str) -> Callable:
    """The scripted expert of task ``name``: float ``"state"`` ``[D]`` -> float32 action ``[A]`` in ``[-1, 1]``.

    MetaWorld tasks: MetaWorld's own policies; ``mjx/`` tasks: ``robot_rl.envs.mjx.experts``. Other tasks raise
    ``ValueError`` (one line, naming the task).
    """
    if name.startswith("metaworld/"):
        from robot_rl.envs.metaworld_env import metaworld_expert

        return metaworld_expert(name.removeprefix("metaworld/"))
    if name.startswith("mjx/"):
        from robot_rl.envs.mjx.experts import mjx_expert

        return mjx_expert(name)
    raise ValueError(f"task '{name}' has no scripted expert; use --preset random")


def list_tasks() -> list[str]:
    """Every registered env name, e.g. ``"metaworld/drawer-open-v3"``, ``"gym/Hopper-v5"``."""
    return list(_registry())


def make_env(name: str, num_envs: int = 1, device: str | torch.device = "cpu", cameras: tuple[str, ...] = (),
             image_size: tuple[int, int] = (128, 128), episode_length: int | None = None, workers: int = 0) -> SimEnv:
    """Build ``num_envs`` copies of the task ``name`` behind one batched ``SimEnv``.

    Args:
        name: a name from ``list_tasks()``.
        num_envs: batch size N; the single envs step one after another on the CPU.
        device: where the returned tensors live (simulation is always on the CPU).
        cameras: cameras rendered into ``obs["image/<camera>"]`` uint8 ``[N, H, W, 3]`` at every step and reset.
            Slow (~15 frames/s per camera and env on one core): for datasets prefer storing
            ``info["sim_state"]`` and calling ``env.render(states, camera, width, height)`` every k steps.
        image_size: ``(height, width)`` of those images in pixels.
        episode_length: steps before ``truncated``; default: the task card's, else 500 (MetaWorld), 1000 (gym).
        workers: 0 (default): step the envs in this process. W >= 1: in W worker processes at the same time
            (``robot_rl.envs.subproc.SubprocEnv``, with ``step_async``/``step_wait``; the same transitions
            for the same seed).

    ``spec.task_text`` comes from the task card (``sim/tasks/<task>.yaml``), empty if there is none.
    """
    registry = _registry()
    if name not in registry:
        if name.startswith("isaaclab/"):
            from robot_rl.envs.isaaclab import require_isaaclab

            require_isaaclab(name)  # the one-line set-up hint where Isaac Lab is missing
        close = difflib.get_close_matches(name, list(registry), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown task '{name}'{hint}; valid names: {', '.join(registry)}")
    if workers > 0:
        from robot_rl.envs.subproc import SubprocEnv

        return SubprocEnv(name, num_envs, workers, device, tuple(cameras), image_size, episode_length)
    card = load_task_card(name)
    kwargs = {}
    if episode_length is not None:
        kwargs["episode_length"] = episode_length
    elif card is not None:
        kwargs["episode_length"] = card.episode_length
    return registry[name](num_envs=num_envs, device=device, cameras=tuple(cameras), image_size=tuple(image_size),
                          task_text=card.task_text if card is not None else "", **kwargs)
