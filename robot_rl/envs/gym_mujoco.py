"""gymnasium MuJoCo backend: HalfCheetah-v5, Hopper-v5, Walker2d-v5, batched on the CPU.

Each env is ``gymnasium.make(id).unwrapped`` (no TimeLimit: this class truncates at ``episode_length``).
``"state"`` is the env's standard observation as float32. Actions in ``[-1, 1]`` map to the actuator
controls through the action space bounds; the ``ActionSpec`` states the resulting joint torques.
These tasks have no success criterion: ``info`` has no ``"success"``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco/gymnasium are imported

import gymnasium
import mujoco
import numpy as np
import torch

from robot_rl.core.specs import ActionSpec, ArraySpec, EnvSpec, StateSlice
from robot_rl.envs.mujoco_batch import SIM_STATE_FLAGS, SIM_STATE_FLAGS_TEXT, MujocoBatchEnv, forward_keep_warmstart

DEFAULT_EPISODE_LENGTH = 1000


@dataclass(frozen=True)
class GymTask:
    """What this backend knows about one gymnasium MuJoCo task."""

    gym_id: str
    """gymnasium id, e.g. ``"HalfCheetah-v5"``."""
    privileged: tuple[str, ...]
    """Keys of the env's step info copied into the ``"privileged"`` observation, in order."""
    termination: str
    """When ``terminated`` is True."""


_WALKER_INFO = ("x_position", "x_velocity", "z_distance_from_origin", "reward_forward", "reward_ctrl",
                "reward_survive")
TASKS: dict[str, GymTask] = {
    "HalfCheetah-v5": GymTask("HalfCheetah-v5", ("x_position", "x_velocity", "reward_forward", "reward_ctrl"),
                              "never (no terminal states)"),
    "Hopper-v5": GymTask("Hopper-v5", _WALKER_INFO,
                         "the hopper is unhealthy: fallen (z or torso angle out of range) or state out of range"),
    "Walker2d-v5": GymTask("Walker2d-v5", _WALKER_INFO,
                           "the walker is unhealthy: torso height or angle out of range"),
}
_PRIVILEGED_TEXT = {
    "x_position": ("m", "root x position (world); the state omits it"),
    "x_velocity": ("m/s", "forward velocity over the last step; 0 at reset and set_sim_state"),
    "z_distance_from_origin": ("m", "root z minus its initial value"),
    "reward_forward": ("1", "forward reward term of the last step; 0 at reset and set_sim_state"),
    "reward_ctrl": ("1", "control cost term (negative) of the last step; 0 at reset and set_sim_state"),
    "reward_survive": ("1", "healthy reward term of the last step; 0 at reset and set_sim_state"),
}


def _state_slices(model: mujoco.MjModel, obs_dim: int) -> tuple[StateSlice, ...]:
    """Slices of the standard planar-walker observation ``[qpos[1:], qvel]`` (root joints: rootx, rootz, rooty)."""
    nq, nv = model.nq, model.nv
    assert obs_dim == nq - 1 + nv, "expected the observation [qpos[1:], qvel]"
    joints = ", ".join(model.joint(j).name for j in range(3, model.njnt))
    return (
        StateSlice("root_z", 0, 1, "m", "world", "torso height"),
        StateSlice("root_angle", 1, 2, "rad", "world", "torso pitch"),
        StateSlice("joint_pos", 2, nq - 1, "rad", "joint", f"hinge angles: {joints}"),
        StateSlice("root_vel", nq - 1, nq + 1, "m/s", "world", "torso velocity x (forward), z (up)"),
        StateSlice("root_angvel", nq + 1, nq + 2, "rad/s", "world", "torso pitch rate"),
        StateSlice("joint_vel", nq + 2, nq - 1 + nv, "rad/s", "joint", f"hinge velocities: {joints}"),
    )


class GymMujocoEnv(MujocoBatchEnv):
    """``num_envs`` copies of one gymnasium MuJoCo task.

    ``sim_state`` rows: ``[physics P | episode_step 1]``, physics = ``mj_getState`` with
    ``SIM_STATE_FLAGS`` (FULLPHYSICS plus the solver warmstart, so restored states step bit-identically).
    """

    has_success = False

    def __init__(self, task: str, num_envs: int = 1, device: str | torch.device = "cpu",
                 cameras: tuple[str, ...] = (), image_size: tuple[int, int] = (128, 128),
                 episode_length: int = DEFAULT_EPISODE_LENGTH, task_text: str = "") -> None:
        if task not in TASKS:
            raise ValueError(f"unknown gymnasium MuJoCo task '{task}' (known: {', '.join(TASKS)})")
        if num_envs < 1 or episode_length < 1:
            raise ValueError(f"num_envs and episode_length must be >= 1, got {num_envs}, {episode_length}")
        self.task = TASKS[task]
        instances = [self._new_instance() for _ in range(num_envs)]
        env0 = instances[0]
        model_cameras = tuple(env0.model.camera(c).name for c in range(env0.model.ncam))
        for cam in cameras:
            if cam not in model_cameras:
                raise ValueError(f"unknown camera '{cam}' for {task} (cameras: {', '.join(model_cameras)})")
        low, high = env0.action_space.low.astype(np.float64), env0.action_space.high.astype(np.float64)
        self._ctrl_scale, self._ctrl_offset = (high - low) / 2, (high + low) / 2
        self._identity_ctrl = bool(np.all(self._ctrl_scale == 1.0) and np.all(self._ctrl_offset == 0.0))
        self._phys_dim = mujoco.mj_stateSize(env0.model, SIM_STATE_FLAGS)
        self.spec = self._make_spec(env0, model_cameras, tuple(cameras), image_size, episode_length, task_text)
        self._setup(instances, device, episode_length, tuple(cameras), image_size)

    # -------------------------------------------------------------------------------------- the hooks
    def _new_instance(self) -> Any:
        return gymnasium.make(self.task.gym_id).unwrapped

    def _reset_one(self, inst: Any, seed: int | None, state_row: np.ndarray, priv_row: np.ndarray) -> None:
        obs, _ = inst.reset(seed=seed)
        state_row[:] = obs
        self._static_privileged(inst, priv_row)

    def _step_one(self, inst: Any, action: np.ndarray, state_row: np.ndarray,
                  priv_row: np.ndarray) -> tuple[float, bool, bool]:
        ctrl = action if self._identity_ctrl else action * self._ctrl_scale + self._ctrl_offset
        obs, reward, terminated, _, info = inst.step(ctrl)
        state_row[:] = obs
        priv_row[:] = [info[k] for k in self.task.privileged]
        return reward, terminated, False

    def _save_one(self, inst: Any, sim_row: np.ndarray) -> None:
        mujoco.mj_getState(inst.model, inst.data, sim_row[:-1], SIM_STATE_FLAGS)

    def _load_one(self, inst: Any, sim_row: np.ndarray, episode_step: int, state_row: np.ndarray,
                  priv_row: np.ndarray) -> None:
        mujoco.mj_setState(inst.model, inst.data, np.ascontiguousarray(sim_row[:-1]), SIM_STATE_FLAGS)
        forward_keep_warmstart(inst.model, inst.data)
        state_row[:] = inst._get_obs()
        self._static_privileged(inst, priv_row)

    def _static_privileged(self, inst: Any, priv_row: np.ndarray) -> None:
        """Privileged terms that need no step: positions from the state, step-based terms 0."""
        priv_row[:] = 0.0
        for k, name in enumerate(self.task.privileged):
            if name == "x_position":
                priv_row[k] = inst.data.qpos[0]
            elif name == "z_distance_from_origin":
                priv_row[k] = inst.data.qpos[1] - inst.init_qpos[1]

    # ------------------------------------------------------------------------------------------- spec
    def _make_spec(self, env: Any, model_cameras: tuple[str, ...], cameras: tuple[str, ...],
                   image_size: tuple[int, int], episode_length: int, task_text: str) -> EnvSpec:
        model = env.model
        obs_dim = int(env.observation_space.shape[0])
        h, w = image_size
        observations = {
            "state": ArraySpec((obs_dim,), "float32", description=f"{self.task.gym_id} standard observation"),
            "privileged": ArraySpec((len(self.task.privileged),), "float32",
                                    description="sim ground truth: " + ", ".join(self.task.privileged)),
        }
        for cam in cameras:
            observations[f"image/{cam}"] = ArraySpec((h, w, 3), "uint8", 0, 255, f"RGB from camera '{cam}'")
        gear = model.actuator_gear[:, 0].astype(np.float64)
        names = tuple(model.actuator(a).name for a in range(model.nu))
        p = self._phys_dim
        return EnvSpec(
            name=f"gym/{self.task.gym_id}",
            observations=observations,
            action=ActionSpec(
                dim=model.nu, mode="joint_torque",
                scale=tuple(float(x) for x in self._ctrl_scale * gear),
                offset=tuple(float(x) for x in self._ctrl_offset * gear),
                names=names, units=("N*m",) * model.nu,
            ),
            state_slices=_state_slices(model, obs_dim),
            max_episode_steps=episode_length,
            control_hz=round(1.0 / env.dt, 6),
            task_text=task_text,
            sim_state_dim=p + 1,
            cameras=model_cameras,
            extras={
                "backend": "gymnasium", "gymnasium_version": gymnasium.__version__,
                "mujoco_version": mujoco.__version__,
                "action": "action * scale + offset = joint torque in N*m; the env gets actuator ctrl = torque / gear",
                "reward": f"{self.task.gym_id}'s own reward (gymnasium v5 defaults)",
                "success": "unknown: these tasks have no success criterion, info has no 'success'",
                "terminated": self.task.termination,
                "truncated": "at max_episode_steps (handled here, not by gymnasium's TimeLimit)",
                "privileged": [[k, *_PRIVILEGED_TEXT[k]] for k in self.task.privileged],
                "sim_state_layout": [
                    ["physics", 0, p, f"mj_getState({SIM_STATE_FLAGS_TEXT}): time, qpos, qvel, act, "
                                      "qacc_warmstart"],
                    ["episode_step", p, p + 1, "steps since the episode's reset"],
                ],
                "sim_state_restore": "stepping on from a restored row is bit-identical until the next autoreset "
                                     "(the reset-noise generator is not part of the state)",
                "renders": "track: the model's side camera that follows the torso (floor and body visible)",
            },
        )
