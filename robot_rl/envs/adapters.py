"""Thin adapters from a batched ``RobotEnv`` to gymnasium and Stable-Baselines3.

Observations: the ``"state"`` term alone (a float32 ``Box``) when the env has no image terms; with images,
a ``Dict`` of ``"state"`` and every ``"image/<camera>"`` term (uint8 ``Box``). ``"privileged"`` never goes
into the observation (a policy that must run on a robot cannot see it): it is in ``info["privileged"]``,
with ``info["success"]`` (where known) and ``info["sim_state"]`` (where the env is a ``SimEnv``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before gymnasium's MuJoCo modules could import mujoco

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from robot_rl.core.env import Obs, RobotEnv
from robot_rl.core.specs import ArraySpec, EnvSpec

_INFO_TERMS = ("privileged",)


def observation_space(spec: EnvSpec) -> spaces.Space:
    """``Box`` for the state alone, ``Dict`` of state and images when the spec has image terms."""
    keys = _policy_keys(spec)
    if keys == ["state"]:
        return _box(spec.observations["state"])
    return spaces.Dict({k: _box(spec.observations[k]) for k in keys})


def _policy_keys(spec: EnvSpec) -> list[str]:
    return [k for k in spec.observations if k not in _INFO_TERMS]


def _box(term: ArraySpec) -> spaces.Box:
    dtype = np.dtype(term.dtype)
    low = -np.inf if term.low is None else term.low
    high = np.inf if term.high is None else term.high
    return spaces.Box(low=low, high=high, shape=term.shape, dtype=dtype)


def _numpy_obs(spec: EnvSpec, obs: Obs, row: slice | int) -> Any:
    """Policy observation rows (``row=slice(None)`` for all envs) as numpy, in the observation_space layout."""
    keys = _policy_keys(spec)
    if keys == ["state"]:
        return obs["state"][row].cpu().numpy()
    return {k: obs[k][row].cpu().numpy() for k in keys}


def _row_info(info: dict[str, Any], obs: Obs, i: int) -> dict[str, Any]:
    """The gymnasium/SB3 info of env ``i``: privileged terms, success, sim_state, action_clipped."""
    out: dict[str, Any] = {k: obs[k][i].cpu().numpy() for k in _INFO_TERMS if k in obs}
    if "success" in info:
        out["success"] = bool(info["success"][i])
    if "sim_state" in info:
        out["sim_state"] = info["sim_state"][i].cpu().numpy()
    if "action_clipped" in info:
        out["action_clipped"] = int(info["action_clipped"][i])
    return out


class GymnasiumEnv(gymnasium.Env):
    """A ``num_envs == 1`` ``RobotEnv`` as a ``gymnasium.Env`` (see the module docstring for obs and info).

    The wrapped env resets itself on the step that ends an episode; that step returns the final
    observation, and the next ``reset()`` (without a seed) returns the already-reset first observation.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, env: RobotEnv) -> None:
        if env.num_envs != 1:
            raise ValueError(f"to_gymnasium needs num_envs == 1, got {env.num_envs}; use to_sb3_vec_env for batches")
        self.env = env
        self.observation_space = observation_space(env.spec)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(env.spec.action.dim,), dtype=np.float32)
        self._pending: tuple[Obs, dict[str, Any]] | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        if seed is None and self._pending is not None:
            obs, info = self._pending
        else:
            obs, info = self.env.reset(seed=seed)
        self._pending = None
        return _numpy_obs(self.env.spec, obs, 0), _row_info(info, obs, 0)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        act = torch.as_tensor(np.asarray(action, dtype=np.float32).reshape(1, -1), device=self.env.device)
        res = self.env.step(act)
        terminated, truncated = bool(res.terminated[0]), bool(res.truncated[0])
        obs, info = res.obs, res.info
        if terminated or truncated:
            self._pending = (res.obs, {k: v for k, v in res.info.items() if k == "sim_state"})
            obs = res.info["final_obs"]
            info = {**res.info, "sim_state": res.info["final_sim_state"]} if "final_sim_state" in res.info else info
        return (_numpy_obs(self.env.spec, obs, 0), float(res.reward[0]), terminated, truncated,
                _row_info(info, obs, 0))

    def close(self) -> None:
        self.env.close()


def to_gymnasium(env: RobotEnv) -> gymnasium.Env:
    """Wrap a ``num_envs == 1`` env as a ``gymnasium.Env`` (passes ``gymnasium.utils.env_checker.check_env``)."""
    return GymnasiumEnv(env)


class SB3VecEnv(VecEnv):
    """A batched ``RobotEnv`` as a Stable-Baselines3 ``VecEnv``.

    Infos carry ``terminal_observation`` (from ``final_obs``) and ``TimeLimit.truncated`` where an episode
    ended, as SB3 expects from its own vectorized envs; ``seed(s)`` seeds env ``i`` with ``s + i`` at the next reset.
    """

    def __init__(self, env: RobotEnv) -> None:
        self.env = env
        self.render_mode = None
        super().__init__(env.num_envs, observation_space(env.spec),
                         spaces.Box(-1.0, 1.0, shape=(env.spec.action.dim,), dtype=np.float32))
        self._actions: torch.Tensor | None = None

    def reset(self) -> VecEnvObs:
        seed = self._seeds[0]
        obs, info = self.env.reset(seed=seed)
        self._reset_seeds()
        self.reset_infos = [_row_info(info, obs, i) for i in range(self.num_envs)]
        return _numpy_obs(self.env.spec, obs, slice(None))

    def step_async(self, actions: np.ndarray) -> None:
        a = np.asarray(actions, dtype=np.float32).reshape(self.num_envs, -1)
        self._actions = torch.from_numpy(a).to(self.env.device)

    def step_wait(self) -> VecEnvStepReturn:
        assert self._actions is not None, "step_async must come first"
        res = self.env.step(self._actions)
        dones = (res.terminated | res.truncated).cpu().numpy()
        infos = [_row_info(res.info, res.obs, i) for i in range(self.num_envs)]
        for i in np.flatnonzero(dones):
            final = res.info["final_obs"]
            infos[i]["terminal_observation"] = _numpy_obs(self.env.spec, final, int(i))
            infos[i]["TimeLimit.truncated"] = bool(res.truncated[i]) and not bool(res.terminated[i])
            infos[i].update({k: final[k][i].cpu().numpy() for k in _INFO_TERMS if k in final})
        return (_numpy_obs(self.env.spec, res.obs, slice(None)), res.reward.cpu().numpy(), dones, infos)

    def close(self) -> None:
        self.env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        return [getattr(self, attr_name) if attr_name == "render_mode" else getattr(self.env, attr_name)
                for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        raise AttributeError(f"set_attr('{attr_name}'): the batched env shares one set of attributes")

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        raise AttributeError(f"env_method('{method_name}'): call it on the RobotEnv (SB3VecEnv.env) directly")

    def env_is_wrapped(self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]

    def get_images(self) -> Sequence[np.ndarray | None]:
        return [None for _ in range(self.num_envs)]


def to_sb3_vec_env(env: RobotEnv) -> VecEnv:
    """Wrap a batched env as a Stable-Baselines3 ``VecEnv`` (actions in ``[-1, 1]``, obs as in ``to_gymnasium``)."""
    return SB3VecEnv(env)
