"""MetaWorld v3 backend: any of its 50 Sawyer tasks, batched on the CPU, goal visible in the observation.

Layouts (object and goal placement) are seeded here, not by MetaWorld: MetaWorld 3.1.1's MT1 wrapper draws
the layout from its own random state before ``reset(seed=s)`` applies the seed, so ``reset(seed=s)`` alone
does not reproduce a layout. Env ``i`` owns ``numpy.random.default_rng(seed + i)`` and MetaWorld's own
sampler draws the layout from it (uniform over the task's ``_random_reset_space``, with the task's rejection
rules, e.g. "goal not too close to the object"); autoresets keep drawing from the same generator.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco/metaworld are imported

import metaworld
import mujoco
import numpy as np
import torch
from gymnasium.envs.mujoco import MujocoEnv
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from robot_rl.core.specs import ActionSpec, ArraySpec, EnvSpec, StateSlice
from robot_rl.envs.mujoco_batch import SIM_STATE_FLAGS, SIM_STATE_FLAGS_TEXT, MujocoBatchEnv, forward_keep_warmstart

DEFAULT_EPISODE_LENGTH = 500
CAMERAS = ("corner", "corner2", "corner3", "corner4", "topview", "behindGripper", "gripperPOV")
_UPSIDE_DOWN_CAMERAS = ("corner", "corner2", "corner3", "corner4")
"""MetaWorld's XML gives these an up axis that points down; we roll them 180 degrees about the view axis."""

_INFO_KEYS = ("success", "near_object", "grasp_success", "grasp_reward", "in_place_reward", "obj_to_target",
              "unscaled_reward")
PRIVILEGED = (
    ("success", "1", "MetaWorld's success flag (task-specific threshold, e.g. handle within 3 cm of the goal)"),
    ("near_object", "1", "1 if the gripper is near the object (task-specific threshold)"),
    ("grasp_success", "1", "1 if MetaWorld counts the object as grasped"),
    ("grasp_reward", "1", "reward component for reaching/caging the object, in [0, 1]"),
    ("in_place_reward", "1", "reward component for the object being at the goal, in [0, 1]"),
    ("obj_to_target", "m", "distance from the object to the goal"),
    ("unscaled_reward", "1", "the v3 reward (same as the step reward, 0..10)"),
    ("tcp_pos", "m", "3 values: midpoint between the finger tips, world frame"),
)
_NUM_PRIVILEGED = len(_INFO_KEYS) + 3
_ZERO_ACTION = np.zeros(4, dtype=np.float32)
_ABSENT = object()
_REWARD_MEMO = "_target_to_obj_init"
"""Python-side reward state (bin-picking-v3 sets it lazily in its first reward call); saved in sim_state."""

STATE_SLICES = (
    StateSlice("hand_pos", 0, 3, "m", "world", "end-effector (hand body) position"),
    StateSlice("gripper_distance", 3, 4, "1", "", "finger opening, 0 closed .. 1 fully open (distance / 0.1 m)"),
    StateSlice("obj_pos", 4, 7, "m", "world", "main object position (e.g. drawer handle, puck, door handle)"),
    StateSlice("obj_quat", 7, 11, "1", "world", "main object orientation, quaternion w x y z"),
    StateSlice("obj2_pos", 11, 14, "m", "world", "second object position (zeros if the task has none)"),
    StateSlice("obj2_quat", 14, 18, "1", "world", "second object orientation (zeros if none)"),
    StateSlice("prev_hand_pos", 18, 21, "m", "world", "hand_pos one step earlier (equal to hand_pos at reset)"),
    StateSlice("prev_gripper_distance", 21, 22, "1", "", "gripper_distance one step earlier"),
    StateSlice("prev_obj_pos", 22, 25, "m", "world", "obj_pos one step earlier"),
    StateSlice("prev_obj_quat", 25, 29, "1", "world", "obj_quat one step earlier"),
    StateSlice("prev_obj2_pos", 29, 32, "m", "world", "obj2_pos one step earlier"),
    StateSlice("prev_obj2_quat", 32, 36, "1", "world", "obj2_quat one step earlier"),
    StateSlice("goal_pos", 36, 39, "m", "world", "goal position (visible: _partially_observable = False)"),
)


def task_names() -> list[str]:
    """MetaWorld v3 task names, e.g. ``"drawer-open-v3"``."""
    return list(ALL_V3_ENVIRONMENTS)


def metaworld_expert(task: str) -> Callable[[np.ndarray], np.ndarray]:
    """MetaWorld's scripted expert for ``task``: float ``[39]`` state -> float32 ``[4]`` action in ``[-1, 1]``.

    Needs the goal in the state (this backend's ``"state"`` has it). One env at a time; loop over a batch.
    """
    from metaworld.policies import ENV_POLICY_MAP

    if task not in ENV_POLICY_MAP:
        raise ValueError(f"no MetaWorld expert for '{task}' (known: {', '.join(sorted(ENV_POLICY_MAP))})")
    policy_class: Any = ENV_POLICY_MAP[task]  # typed as the abstract base
    policy = policy_class()

    def act(state: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():  # "Constant(s) may be too high": we clip, as MetaWorld does
            warnings.simplefilter("ignore")
            action = policy.get_action(np.asarray(state, dtype=np.float64))
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    return act


@dataclass(eq=False)
class _Instance:
    """One MetaWorld env plus what this backend tracks for it."""

    env: Any
    rng: np.random.Generator
    model: mujoco.MjModel
    data: mujoco.MjData
    tcp_sites: tuple[int, int]
    """Site ids of the two finger tips (MetaWorld's ``tcp_center`` is their midpoint)."""
    obs: np.ndarray = field(default_factory=lambda: np.zeros(39))
    """float64 ``[39]``: the last observation returned for this env."""
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """float64 ``[R + 1]``: the layout (``_last_rand_vec``) of this episode and the reward memo, as saved."""

    def close(self) -> None:
        self.env.close()


def _new_metaworld_env(task: str, episode_length: int) -> Any:
    env = ALL_V3_ENVIRONMENTS[task]()
    env._partially_observable = False
    del env.sawyer_observation_space  # cached with the goal bounds zeroed; recomputed on next use
    env._set_task_called = True  # we set the layout ourselves instead of through set_task
    env.seeded_rand_vec = True  # when not frozen, draw layouts from env.np_random (our generator)
    env._freeze_rand_vec = True
    env.max_path_length = episode_length
    model = env.model
    for cam in _UPSIDE_DOWN_CAMERAS:
        cam_id = model.camera(cam).id
        quat = np.empty(4)
        mujoco.mju_mulQuat(quat, model.cam_quat[cam_id].copy(), np.array([0.0, 0.0, 0.0, 1.0]))
        model.cam_quat[cam_id] = quat
    return env


class MetaWorldEnv(MujocoBatchEnv):
    """``num_envs`` MetaWorld v3 envs of one task; see the module docstring and ``spec.extras``.

    ``sim_state`` rows: ``[physics P | prev_frame 18 | layout R | reward_memo 1 | episode_step 1]``, see
    ``spec.extras["sim_state_layout"]``. Restoring a row with a different layout re-runs MetaWorld's reset
    for that layout first (~7 ms), so rendering many states of one episode is cheap, alternating layouts is not.
    """

    def __init__(self, task: str, num_envs: int = 1, device: str | torch.device = "cpu",
                 cameras: tuple[str, ...] = (), image_size: tuple[int, int] = (128, 128),
                 episode_length: int = DEFAULT_EPISODE_LENGTH, task_text: str = "") -> None:
        if task not in ALL_V3_ENVIRONMENTS:
            raise ValueError(f"unknown MetaWorld v3 task '{task}' (known: {', '.join(ALL_V3_ENVIRONMENTS)})")
        if num_envs < 1 or episode_length < 1:
            raise ValueError(f"num_envs and episode_length must be >= 1, got {num_envs}, {episode_length}")
        for cam in cameras:
            if cam not in CAMERAS:
                raise ValueError(f"unknown MetaWorld camera '{cam}' (cameras: {', '.join(CAMERAS)})")
        self.task = task
        self._episode_len = episode_length
        instances = [self._new_instance() for _ in range(num_envs)]
        env0 = instances[0].env
        self._phys_dim = mujoco.mj_stateSize(env0.model, SIM_STATE_FLAGS)
        self._layout_dim = int(env0._random_reset_space.low.size)
        self._has_memo = hasattr(env0, _REWARD_MEMO)
        self.spec = self._make_spec(task, env0, cameras, image_size, episode_length, task_text)
        self._setup(instances, device, episode_length, tuple(cameras), image_size)

    # -------------------------------------------------------------------------------------- the hooks
    def _new_instance(self) -> _Instance:
        env = _new_metaworld_env(self.task, self._episode_len)
        rng = np.random.default_rng()
        env.np_random = rng
        sites = (env.model.site("rightEndEffector").id, env.model.site("leftEndEffector").id)
        return _Instance(env=env, rng=rng, model=env.model, data=env.data, tcp_sites=sites)

    def _reset_one(self, inst: _Instance, seed: int | None, state_row: np.ndarray, priv_row: np.ndarray) -> None:
        env = inst.env
        if seed is not None:
            inst.rng = env.np_random = np.random.default_rng(seed)
        # MetaWorld's reset() runs reset_model twice (before and after mj_resetData). Unfrozen, each run draws a
        # layout and the second one keeps python-side values computed from the first (e.g. window-open's
        # handle start). So: draw in the first run (MetaWorld's sampler on env.np_random, with the task's
        # rejection rules), freeze, and let the second run rebuild that layout, as a frozen task reset does.
        env._freeze_rand_vec = False
        env.curr_path_length = 0
        env.reset_model()
        env._freeze_rand_vec = True
        MujocoEnv.reset(env)  # mj_resetData + reset_model: the rest of SawyerXYZEnv.reset
        # MetaWorld's reset obs reads positions before mj_forward: objects can show last episode's place.
        forward_keep_warmstart(inst.model, inst.data)
        curr = env._get_curr_obs_combined_no_goal()
        env._prev_obs = curr
        self._observe(inst, np.hstack((curr, curr, env._get_pos_goal())), state_row, priv_row)

    def _step_one(self, inst: _Instance, action: np.ndarray, state_row: np.ndarray,
                  priv_row: np.ndarray) -> tuple[float, bool, bool]:
        obs, reward, _, _, info = inst.env.step(action)
        inst.obs = obs
        state_row[:] = obs
        priv_row[:7] = [info["success"], info["near_object"], info["grasp_success"], info["grasp_reward"],
                        info["in_place_reward"], info["obj_to_target"], info["unscaled_reward"]]
        sites = inst.data.site_xpos
        priv_row[7:] = (sites[inst.tcp_sites[0]] + sites[inst.tcp_sites[1]]) * 0.5
        if self._has_memo:
            self._update_tail(inst)
        return reward, False, info["success"] > 0.0

    def _save_one(self, inst: _Instance, sim_row: np.ndarray) -> None:
        p = self._phys_dim
        mujoco.mj_getState(inst.model, inst.data, sim_row[:p], SIM_STATE_FLAGS)
        sim_row[p:p + 18] = inst.obs[18:36]
        sim_row[p + 18:-1] = inst.tail

    def _load_one(self, inst: _Instance, sim_row: np.ndarray, episode_step: int, state_row: np.ndarray,
                  priv_row: np.ndarray) -> None:
        env, p, r = inst.env, self._phys_dim, self._layout_dim
        layout = sim_row[p + 18:p + 18 + r]
        if inst.tail.size == 0 or not np.array_equal(inst.tail[:r], layout):
            env._last_rand_vec = layout.copy()  # frozen: MetaWorld's reset rebuilds exactly this layout
            env.reset()
        mujoco.mj_setState(inst.model, inst.data, np.ascontiguousarray(sim_row[:p]), SIM_STATE_FLAGS)
        forward_keep_warmstart(inst.model, inst.data)
        env.curr_path_length = episode_step
        if self._has_memo:
            memo = sim_row[p + 18 + r]
            setattr(env, _REWARD_MEMO, None if memo < 0 else float(memo))
        curr = env._get_curr_obs_combined_no_goal()
        env._prev_obs = curr
        obs = np.hstack((curr, sim_row[p:p + 18], env._get_pos_goal()))
        if episode_step > 0:  # MetaWorld clips step observations (not reset ones) to its observation space
            space = env.sawyer_observation_space
            obs = np.clip(obs, space.low, space.high)
        self._observe(inst, obs, state_row, priv_row)

    def _update_tail(self, inst: _Instance) -> None:
        memo = getattr(inst.env, _REWARD_MEMO, None)
        inst.tail = np.append(np.asarray(inst.env._last_rand_vec, dtype=np.float64),
                              -1.0 if memo is None else memo)  # memo is a distance: -1 marks "unset"

    def _observe(self, inst: _Instance, obs: np.ndarray, state_row: np.ndarray, priv_row: np.ndarray) -> None:
        """Write ``obs`` and its privileged terms (MetaWorld's reward info for a zero action)."""
        env = inst.env
        inst.obs = obs
        state_row[:] = obs
        self._update_tail(inst)
        memo = env.__dict__.get(_REWARD_MEMO, _ABSENT)
        _, info = env.evaluate_state(obs, _ZERO_ACTION)
        if memo is not _ABSENT:  # evaluating must not change the reward of later steps
            setattr(env, _REWARD_MEMO, memo)
        priv_row[:7] = [info[k] for k in _INFO_KEYS]
        priv_row[7:] = env.tcp_center

    # ------------------------------------------------------------------------------------------- spec
    def _make_spec(self, task: str, env: Any, cameras: tuple[str, ...], image_size: tuple[int, int],
                   episode_length: int, task_text: str) -> EnvSpec:
        h, w = image_size
        observations = {
            "state": ArraySpec((39,), "float32", description="MetaWorld's 39-dim observation, goal visible"),
            "privileged": ArraySpec((_NUM_PRIVILEGED,), "float32",
                                    description="sim ground truth: " + ", ".join(n for n, _, _ in PRIVILEGED)),
        }
        for cam in cameras:
            observations[f"image/{cam}"] = ArraySpec((h, w, 3), "uint8", 0, 255, f"RGB from camera '{cam}'")
        p, r = self._phys_dim, self._layout_dim
        sim_layout = [
            ["physics", 0, p, f"mj_getState({SIM_STATE_FLAGS_TEXT}): time, qpos, qvel, act, mocap pos/quat, "
                              "qacc_warmstart"],
            ["prev_frame", p, p + 18, "state[18:36] of this row's observation (the frame before)"],
            ["layout", p + 18, p + 18 + r, "MetaWorld _last_rand_vec: object/goal placement this episode"],
            ["reward_memo", p + 18 + r, p + 19 + r, f"{_REWARD_MEMO} (bin-picking-v3 reward state), -1 if unset"],
            ["episode_step", p + 19 + r, p + 20 + r, "steps since the episode's reset"],
        ]
        scale = float(env.action_scale)
        return EnvSpec(
            name=f"metaworld/{task}",
            observations=observations,
            action=ActionSpec(
                dim=4, mode="ee_delta", scale=(scale, scale, scale, 1.0), offset=(0.0, 0.0, 0.0, 0.0),
                names=("dx", "dy", "dz", "gripper"), units=("m", "m", "m", "1"),
            ),
            state_slices=STATE_SLICES,
            max_episode_steps=episode_length,
            control_hz=round(1.0 / env.dt, 6),
            task_text=task_text,
            sim_state_dim=p + r + 20,
            cameras=CAMERAS,
            extras={
                "backend": "metaworld", "metaworld_version": getattr(metaworld, "__version__", "3.1.1"),
                "mujoco_version": mujoco.__version__,
                "goal_visible": "yes: _partially_observable = False, state[36:39] is the true goal",
                "action": "xyz: hand mocap target moves by action * 0.01 m per step (clipped to the task's mocap "
                          "box); gripper: finger position-servo target, ctrl = [a, -a], +1 closes, -1 opens",
                "reward": "MetaWorld v3 (reward_function_version v2) dense reward, 0..10",
                "success": "info['success'] = MetaWorld's success flag; terminated is always False (no terminal "
                           "states), truncated at max_episode_steps (metaworld max_path_length is set to it)",
                "privileged": [list(t) for t in PRIVILEGED],
                "privileged_at_reset": "reset and set_sim_state rows evaluate MetaWorld's reward info with a "
                                       "zero action (grasp terms depend on the gripper action)",
                "layout_seeding": "env i: numpy default_rng(seed + i) -> MetaWorld's layout sampler; autoreset "
                                  "continues that generator; seed=None continues it too (fresh entropy at creation)",
                "reset_observation": "taken after mj_forward: MetaWorld's own reset obs can hold the previous "
                                     "layout's object position",
                "sim_state_layout": sim_layout,
                "sim_state_restore": "set_sim_state/render rebuild the row's layout with MetaWorld's frozen-layout "
                                     "reset, then restore physics and python state: stepping on is bit-identical "
                                     "until the next autoreset (the layout generator is not part of the state)",
                "renders": "MuJoCo scene with the Sawyer arm, table, task objects and the goal marker (a small "
                           "sphere; its color depends on the task). corner..corner4: 3/4 views of the table with "
                           "the arm visible (rolled 180 deg here so they are upright; MetaWorld's own are upside "
                           "down); topview: straight down, arm visible; behindGripper: follows the hand, looking "
                           "down at the workspace; gripperPOV: from the fingers, arm mostly out of view",
                "expert": f"robot_rl.envs.metaworld_env.metaworld_expert('{task}')",
            },
        )
