"""``IsaacLabEnv``: one Isaac Lab 3.x task (direct or manager-based workflow) behind robot_rl's ``SimEnv``.

What the adapter does about Isaac Lab's contract (``isaaclab/envs/direct_rl_env.py``, ``manager_based_rl_env.py``):

- ``step`` returns the same ``reward`` / ``terminated`` / ``truncated`` tensors every step, overwritten in place
  (and a manager-based env's observation buffers too): every tensor handed out here is a copy.
- Autoreset happens inside ``step``. The config's ``compute_final_obs`` is switched on, so Isaac Lab puts the
  observation before the reset in ``extras["final_obs"]``; that entry is stale on steps where no env reset, so it
  is read only on steps with a reset, and only for the rows that reset (``info["final_obs"]`` holds the current
  observation elsewhere). The scene state before the reset (``info["final_sim_state"]``) is taken by a hook on
  the env's ``_reset_idx`` (the method both workflows call for the rows that reset), before it runs.
- ``info["success"]``: the termination term named in ``SUCCESS_TERMS`` (from the termination manager, or for a
  direct env whose term is ``time_out``: timed out and not terminated). Tasks without one report none.
- ``sim_state`` rows: ``InteractiveScene.get_state(is_relative=True)`` flattened (entity by entity, in the
  layout ``spec.extras["sim_state_layout"]`` lists) plus the step in the episode. ``set_sim_state`` writes them
  back with ``scene.reset_to`` (direct) or ``env.reset_to`` (manager-based) and recomputes the observations.
- Actions in ``[-1, 1]`` are Isaac Lab's raw actions (each task scales them: Cartpole by ``action_scale``), mapped
  onto the action space's bounds where Isaac Lab declares finite ones; ``spec.action`` states the scaling.
- ``reset(seed)`` seeds Isaac Lab's global generators (torch, numpy, warp) with ``seed``: one seed gives one
  batch of first states; Isaac Lab cannot seed env ``i`` alone with ``seed + i``.

One env per process: Isaac Lab's ``SimulationContext`` is a singleton (close an env before making another).
``render`` is not available: Isaac Lab renders with Isaac Sim's RTX or Newton's OpenGL viewer, not set up here,
so ``spec.cameras`` is empty.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import gymnasium
import torch

from robot_rl.core.env import Obs, StepResult, validate_action
from robot_rl.core.specs import ActionMode, ActionSpec, ArraySpec, EnvSpec, StateSlice
from robot_rl.envs.isaaclab import ASSETS_ENV, DEFAULT_OVERRIDES, DEVICE_ENV, OVERRIDES_ENV, SUCCESS_TERMS
from robot_rl.envs.isaaclab.assets import localize

DIRECT_STATE_SLICES: dict[str, tuple[StateSlice, ...]] = {
    "Isaac-Cartpole-Direct": (
        StateSlice("cart_pos", 0, 1, "m", "joint", "cart position on the rail, from its default"),
        StateSlice("pole_angle", 1, 2, "rad", "joint", "pole angle from upright"),
        StateSlice("cart_vel", 2, 3, "m/s", "joint", "cart velocity"),
        StateSlice("pole_vel", 3, 4, "rad/s", "joint", "pole angular velocity"),
    ),
}
"""Names of a direct env's observation ranges (direct envs do not name them; manager-based ones do)."""

DIRECT_ACTION_MODES: dict[str, ActionMode] = {"Isaac-Cartpole-Direct": "joint_torque"}
_MODE_BY_TERM = (("Effort", "joint_torque"), ("JointVelocity", "joint_velocity"), ("JointPosition", "joint_position"),
                 ("InverseKinematics", "ee_delta"), ("OperationalSpace", "ee_delta"))


def _torch_device(device: str | torch.device) -> torch.device:
    dev = torch.device(device)
    return torch.device("cuda", 0) if dev.type == "cuda" and dev.index is None else dev


def _overrides(given: Sequence[str] | None) -> tuple[str, ...]:
    if given is not None:
        return tuple(given)
    raw = os.environ.get(OVERRIDES_ENV)
    return tuple(shlex.split(raw)) if raw is not None else DEFAULT_OVERRIDES


def _flat_state(state: dict[str, Any], prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """``scene.get_state()``'s nested dict -> ``[(dotted name, [N, k] tensor)]`` in a fixed (sorted) order."""
    out: list[tuple[str, torch.Tensor]] = []
    for key in sorted(state):
        value = state[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flat_state(value, name + "."))
        elif isinstance(value, torch.Tensor):
            out.append((name, value.reshape(value.shape[0], -1)))
    return out


class IsaacLabEnv:
    """``num_envs`` copies of the Isaac Lab task ``task`` (a gym id, e.g. ``"Isaac-Cartpole-Direct"``).

    Args:
        task: Isaac Lab gym id.
        num_envs, device, cameras, image_size, task_text, episode_length: as for ``robot_rl.envs.make_env``
            (``episode_length``: steps before ``truncated``, default the task's ``episode_length_s``; no cameras).
        assets: local USD folder (default ``$ROBOT_RL_ISAACLAB_ASSETS``; unset: Isaac Lab downloads).
        overrides: Isaac Lab config overrides (default ``$ROBOT_RL_ISAACLAB_OVERRIDES``, else
            ``presets=newton_mjwarp``).
    """

    def __init__(self, task: str, num_envs: int = 1, device: str | torch.device = "cpu",
                 cameras: tuple[str, ...] = (), image_size: tuple[int, int] = (128, 128), task_text: str = "",
                 episode_length: int | None = None, assets: str | Path | None = None,
                 overrides: Sequence[str] | None = None) -> None:
        name = f"isaaclab/{task}"
        if cameras:
            raise ValueError(f"{name}: cameras {list(cameras)} are not available (rendering needs Isaac Sim's RTX "
                             "or Newton's viewer, neither is set up); store sim states instead")
        if num_envs < 1 or (episode_length is not None and episode_length < 1):
            raise ValueError(f"{name}: num_envs and episode_length must be >= 1, got {num_envs}, {episode_length}")
        import isaaclab_tasks  # noqa: F401  (registers the gym ids)
        from isaaclab.sim import SimulationContext
        from isaaclab_tasks.utils import resolve_task_config

        if task not in gymnasium.registry:
            raise ValueError(f"{name}: Isaac Lab {_isaaclab_version()} registers no task '{task}'")
        if SimulationContext.instance() is not None:
            raise ValueError(f"{name}: an Isaac Lab env is open in this process already (Isaac Lab runs one per "
                             "process); close it first")
        self.task = task
        self.num_envs = num_envs
        self.device = _torch_device(device)
        self._sim = _torch_device(os.environ.get(DEVICE_ENV) or self.device)
        overrides = _overrides(overrides)
        cfg, _ = resolve_task_config(task, None, overrides=overrides)
        cfg.scene.num_envs = num_envs
        cfg.sim.device = str(self._sim)
        physics: Any = getattr(cfg.sim, "physics", None)
        if self._sim.type == "cpu" and hasattr(physics, "use_cuda_graph"):
            physics.use_cuda_graph = False  # CUDA graphs need CUDA
        cfg.seed = 0
        cfg.compute_final_obs = True
        step_dt = cfg.sim.dt * cfg.decimation
        if episode_length is not None:  # max_episode_length = ceil(episode_length_s / step_dt) = episode_length
            cfg.episode_length_s = (episode_length - 0.5) * step_dt
        assets_dir = assets if assets is not None else os.environ.get(ASSETS_ENV) or None
        self._assets = localize(cfg, Path(assets_dir), task) if assets_dir else {}
        self._env: Any = cast(Any, gymnasium.make(task, cfg=cfg).unwrapped)  # DirectRLEnv or ManagerBasedRLEnv
        self._managed = hasattr(self._env, "termination_manager")
        self._success_term = SUCCESS_TERMS.get(task)
        if self._success_term is not None and self._managed \
                and self._success_term not in self._env.termination_manager.active_terms:
            raise ValueError(f"{name}: success term '{self._success_term}' is not one of its termination terms "
                             f"{self._env.termination_manager.active_terms}")
        # Scene state and episode step of the rows that reset inside step(), taken before the reset (see _hook).
        self._pre_reset: tuple[torch.Tensor, torch.Tensor] | None = None
        self._capture = False
        original_reset_idx = self._env._reset_idx

        def reset_idx_hook(env_ids: Any, *args: Any, **kwargs: Any) -> Any:
            if self._capture and self._pre_reset is None:  # the first reset in a step (a manual one may follow)
                self._pre_reset = (self._scene_state(), self._env.episode_length_buf.clone())
            return original_reset_idx(env_ids, *args, **kwargs)

        self._env._reset_idx = reset_idx_hook
        obs, _ = self._env.reset(seed=0)
        self._layout = [(k, t.shape[1]) for k, t in _flat_state(self._env.scene.get_state(is_relative=True))]
        self._scale, self._offset = self._action_bounds()
        self.spec = self._make_spec(obs, overrides, task_text)

    # ------------------------------------------------------------------------------------------------ protocol
    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        self._capture = False
        obs, _ = self._env.reset(seed=seed)
        return self._obs(obs), {"sim_state": self.get_sim_state()}

    def step(self, action: torch.Tensor) -> StepResult:
        action, clipped = validate_action(action.to(self._sim), self.num_envs, self.spec.action.dim)
        raw = action if self._scale is None or self._offset is None else action * self._scale + self._offset
        self._pre_reset = None
        self._capture = True
        try:
            obs_buf, reward, terminated, truncated, extras = self._env.step(raw)
        finally:
            self._capture = False
        obs = self._obs(obs_buf)
        terminated = self._out(terminated, torch.bool)  # copies: Isaac Lab overwrites these buffers next step
        truncated = self._out(truncated, torch.bool)
        info: dict[str, Any] = {"action_clipped": clipped.to(self.device), "sim_state": self.get_sim_state()}
        if self._success_term is not None:
            info["success"] = self._success(terminated, truncated)
        done = terminated | truncated
        if bool(done.any()):
            info["final_obs"], info["final_sim_state"] = self._finals(obs, info["sim_state"], extras, done)
        return StepResult(obs, self._out(reward, torch.float32), terminated, truncated, info)

    def get_sim_state(self) -> torch.Tensor:
        state = torch.cat([self._scene_state(), self._env.episode_length_buf.to(torch.float64)[:, None]], dim=1)
        return self._out(state, torch.float64)

    def set_sim_state(self, state: torch.Tensor) -> Obs:
        state = torch.as_tensor(state).to(device=self._sim, dtype=torch.float64)
        want = (self.num_envs, self.spec.sim_state_dim)
        if tuple(state.shape) != want:
            raise ValueError(f"{self.spec.name}: sim state must be [{want[0]}, {want[1]}], got {list(state.shape)}")
        scene_state: dict[str, Any] = {}
        col = 0
        for key, width in self._layout:
            node = scene_state
            *parents, leaf = key.split(".")
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = state[:, col:col + width].to(torch.float32)
            col += width
        # scene.reset_to also sets every joint's position/velocity target to the restored position/velocity: with
        # a damped joint (Cartpole's cart: damping toward a velocity target of 0) that changes the dynamics. The
        # targets stay as they were (the next action sets the driven ones).
        commands = [(a.actuators.target_command, a.actuators.target_command.position.torch.clone(),
                     a.actuators.target_command.velocity.torch.clone())
                    for a in self._env.scene.articulations.values()]
        if self._managed:
            self._env.reset_to(scene_state, None, is_relative=True)
        else:
            self._env.scene.reset_to(scene_state, None, is_relative=True)
        for command, position, velocity in commands:
            command.set_position_index(value=position, full_data=True)
            command.set_velocity_index(value=velocity, full_data=True)
        self._env.scene.write_data_to_sim()
        self._env.sim.forward()
        self._env.scene.update(dt=0.0)
        self._env.episode_length_buf[:] = state[:, -1].round().to(self._env.episode_length_buf.dtype)
        obs = self._env.observation_manager.compute() if self._managed else self._env._compute_observations()
        return self._obs(obs)

    def render(self, sim_state: torch.Tensor, camera: str, width: int, height: int) -> torch.Tensor:
        raise ValueError(f"{self.spec.name}: no cameras (rendering needs Isaac Sim's RTX or Newton's viewer)")

    def close(self) -> None:
        env = getattr(self, "_env", None)
        if env is not None:
            env.close()
            self._env = None

    # ------------------------------------------------------------------------------------------------ helpers
    def _scene_state(self) -> torch.Tensor:
        parts = [t.to(torch.float64) for _, t in _flat_state(self._env.scene.get_state(is_relative=True))]
        return torch.cat(parts, dim=1)

    def _out(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """A copy of Isaac Lab's tensor ``t`` on ``self.device`` (its buffers change in place on later steps)."""
        return t.to(device=self.device, dtype=dtype, copy=True)

    def _obs(self, groups: dict[str, Any]) -> Obs:
        """Isaac Lab's observation groups -> ``{"state": policy, "privileged": critic}``, copied."""
        out = {"state": self._out(_group_tensor(groups["policy"]), torch.float32)}
        if "critic" in groups:
            out["privileged"] = self._out(_group_tensor(groups["critic"]), torch.float32)
        return out

    def _success(self, terminated: torch.Tensor, truncated: torch.Tensor) -> torch.Tensor:
        if self._managed:
            return self._out(self._env.termination_manager.get_term(self._success_term), torch.bool)
        if self._success_term == "time_out":
            return truncated & ~terminated
        raise ValueError(f"{self.spec.name}: a direct env names only the 'time_out' term, not '{self._success_term}'")

    def _finals(self, obs: Obs, sim_state: torch.Tensor, extras: dict[str, Any],
                done: torch.Tensor) -> tuple[Obs, torch.Tensor]:
        """``final_obs`` / ``final_sim_state``: this step's rows, with the pre-reset ones where ``done``."""
        if "final_obs" not in extras or self._pre_reset is None:
            raise RuntimeError(f"{self.spec.name}: envs {done.nonzero().flatten().tolist()} reset but Isaac Lab gave "
                               "no final observation (compute_final_obs) or did not reset through _reset_idx")
        final_obs = self._obs(extras["final_obs"])
        rows = done[:, None]
        final = {k: torch.where(rows, final_obs[k], obs[k]) for k in obs}
        scene, steps = self._pre_reset
        pre = self._out(torch.cat([scene, steps.to(torch.float64)[:, None]], dim=1), torch.float64)
        return final, torch.where(rows, pre, sim_state)

    def _action_bounds(self) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Where Isaac Lab's action space has finite bounds, ``[-1, 1]`` maps onto them; else the raw action."""
        space = self._env.single_action_space
        low = getattr(space, "low", None)
        high = getattr(space, "high", None)
        if low is None or high is None or not (torch.isfinite(torch.as_tensor(low)).all()
                                               and torch.isfinite(torch.as_tensor(high)).all()):
            return None, None
        lo = torch.as_tensor(low, dtype=torch.float32, device=self._sim)
        hi = torch.as_tensor(high, dtype=torch.float32, device=self._sim)
        return (hi - lo) / 2, (hi + lo) / 2

    def _make_spec(self, obs: dict[str, Any], overrides: tuple[str, ...], task_text: str) -> EnvSpec:
        env = self._env
        state_dim = _group_tensor(obs["policy"]).shape[1]
        observations = {"state": ArraySpec((state_dim,), "float32", description=f"{self.task} 'policy' group")}
        if "critic" in obs:
            observations["privileged"] = ArraySpec((_group_tensor(obs["critic"]).shape[1],), "float32",
                                                   description=f"{self.task} 'critic' group (asymmetric critic)")
        dim = int(math.prod(env.single_action_space.shape))
        mode, scale, offset, names, how = self._action_facts(dim)
        sim_dim = sum(w for _, w in self._layout) + 1
        layout, col = [], 0
        for key, width in self._layout:
            layout.append([key, col, col + width])
            col += width
        layout.append(["episode_step", col, col + 1])
        import isaaclab_tasks.utils as _  # noqa: F401  (version below)

        return EnvSpec(
            name=f"isaaclab/{self.task}", observations=observations,
            action=ActionSpec(dim=dim, mode=mode, scale=scale, offset=offset, names=names),
            state_slices=self._state_slices(state_dim), max_episode_steps=int(env.max_episode_length),
            control_hz=round(1.0 / env.step_dt, 6), task_text=task_text, sim_state_dim=sim_dim, cameras=(),
            extras={
                "backend": "isaaclab", "isaaclab_version": _isaaclab_version(),
                "workflow": "manager-based" if self._managed else "direct", "sim_device": str(self._sim),
                "overrides": list(overrides), "assets": self._assets,
                "action": how,
                "reward": f"{self.task}'s own reward (Isaac Lab)",
                "success": (f"termination term '{self._success_term}'" if self._success_term
                            else "unknown: no termination term means success, info has no 'success'"),
                "truncated": f"Isaac Lab's time-out at {int(env.max_episode_length)} steps",
                "sim_state_layout": layout,
                "sim_state_restore": "scene state (relative to each env's origin) and episode step; solver "
                                     "warm-starts and Isaac Lab's random generators are not part of it",
                "seeding": "reset(seed) seeds Isaac Lab's global generators; env i is not seeded alone",
            },
        )

    def _action_facts(self, dim: int) -> tuple[ActionMode, tuple[float, ...], tuple[float, ...], tuple[str, ...],
                                                str]:
        cfg = self._env.cfg
        mode: ActionMode = DIRECT_ACTION_MODES.get(self.task, "joint_position")
        scale, offset = [1.0] * dim, [0.0] * dim
        names: tuple[str, ...] = ()
        how = "action is Isaac Lab's raw action"
        if self._scale is not None and self._offset is not None:
            scale, offset = self._scale.tolist(), self._offset.tolist()
            how = "action * scale + offset = Isaac Lab's action (its action space bounds)"
        if not self._managed and isinstance(getattr(cfg, "action_scale", None), int | float):
            scale = [s * float(cfg.action_scale) for s in scale]
            offset = [o * float(cfg.action_scale) for o in offset]
            how += f"; the task multiplies it by action_scale={cfg.action_scale}"
        elif self._managed:
            manager = self._env.action_manager
            col = 0
            for term_name, term_dim in zip(manager.active_terms, manager.action_term_dim, strict=True):
                term_cfg = manager.get_term(term_name).cfg
                kind = next((m for key, m in _MODE_BY_TERM if key in type(term_cfg).__name__), None)
                if kind is not None and col == 0:
                    mode = kind  # type: ignore[assignment]
                s, o = getattr(term_cfg, "scale", 1.0), getattr(term_cfg, "offset", 0.0)
                if isinstance(s, int | float) and isinstance(o, int | float):
                    for j in range(col, col + term_dim):
                        offset[j] = offset[j] * s + o
                        scale[j] = scale[j] * s
                col += term_dim
            how += "; the action terms scale it: " + ", ".join(manager.active_terms)
        return mode, tuple(scale), tuple(offset), names, how

    def _state_slices(self, state_dim: int) -> tuple[StateSlice, ...]:
        if not self._managed:
            slices = DIRECT_STATE_SLICES.get(self.task, ())
            return slices if all(s.stop <= state_dim for s in slices) else ()
        manager = self._env.observation_manager
        if not manager.group_obs_concatenate.get("policy", False):
            return ()
        out, col = [], 0
        for term, dims in zip(manager.active_terms["policy"], manager.group_obs_term_dim["policy"], strict=True):
            width = int(math.prod(dims))
            out.append(StateSlice(term, col, col + width, description=f"observation term '{term}'"))
            col += width
        return tuple(out) if col == state_dim else ()


def _group_tensor(group: Any) -> torch.Tensor:
    """An observation group: a ``[N, D]`` tensor, or a dict of terms (concatenated, flattened, in order)."""
    if isinstance(group, torch.Tensor):
        return group.reshape(group.shape[0], -1)
    return torch.cat([t.reshape(t.shape[0], -1) for t in group.values()], dim=1)


def _isaaclab_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("isaaclab")
