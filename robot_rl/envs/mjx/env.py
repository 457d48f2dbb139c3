"""``MjxEnv``: N copies of one MJX task stepped as one jitted, vmapped JAX function, read by torch through DLPack.

Everything per step happens in one compiled call: the gripper's servo targets from the action, four physics
substeps (``mjx.step``), observation, reward, success, and the same-step autoreset (a fresh layout selected
with ``jnp.where`` for the rows whose episode ended). The state carried from call to call is the float32 sim
row itself (``mjx.Data`` is rebuilt from it inside the call from one template), so reset, step and restore
always pass the step the same types (a batch built with ``put_data`` has other types than ``step``'s output
and makes the next call re-trace, ~6 s). The episode counters are mirrored on the host, so which rows ended
is known without reading the device.

Outputs are ``torch.from_dlpack`` views of fresh JAX buffers (no copy on the same device; XLA never reuses
them: nothing is donated). ``info["sim_state"]`` is float64 (a copy: JAX computes in float32 here).
Stored states render with CPU MuJoCo on the same MJCF (``mujoco.Renderer``), so GIFs and image datasets
work exactly as with the CPU backends.

Compiled functions are cached per task family in this process, and on disk (JAX's persistent compilation cache in
``$ROBOT_RL_JAX_CACHE``, default ``~/.cache/robot_rl/jax``; ``ROBOT_RL_JAX_CACHE=`` turns it off), so a second
env of the same task and batch size does not compile again.
"""

from __future__ import annotations

import atexit
import os
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # else JAX takes 75% of the GPU from torch
os.environ.setdefault("MUJOCO_GL", "egl")

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import torch
from mujoco import mjx

from robot_rl.core.env import Obs, StepResult, validate_action
from robot_rl.core.specs import ActionSpec, ArraySpec, EnvSpec
from robot_rl.envs.mjx import STATE_DIM, STATE_SLICES
from robot_rl.envs.mjx.experts import ACTION_SCALE
from robot_rl.envs.mjx.tasks import ASSETS, PRIVILEGED, TASKS, MjxTask
from robot_rl.envs.mujoco_batch import make_renderer

DEFAULT_EPISODE_LENGTH = 100
SUBSTEPS = 4
"""Physics steps (``opt.timestep`` 5 ms in every scene) per control step: 50 Hz control."""


def _enable_compilation_cache() -> None:
    path = os.environ.get("ROBOT_RL_JAX_CACHE", str(Path.home() / ".cache" / "robot_rl" / "jax"))
    if path and not jax.config.values.get("jax_compilation_cache_dir"):
        jax.config.update("jax_compilation_cache_dir", path)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


@dataclass
class _Compiled:
    """One task's model and jitted batch functions (shared by every env of the task in this process)."""

    model: mujoco.MjModel
    reset: Any
    """(keys uint32 [N, 2], params) -> (sim, next keys, state, privileged)"""
    step: Any
    """(sim, keys, length, params, action [N, 3]) -> (sim, keys, state, privileged, reward, success, done,
    final state, final privileged, final sim)"""
    load: Any
    """(sim float32 [N, S], params) -> (state, privileged)"""


_COMPILED: dict[str, _Compiled] = {}


def _compiled(task: MjxTask) -> _Compiled:
    """Jitted batch functions whose carried state is the sim row (float32 ``[N, S]``), nothing else.

    A step rebuilds ``mjx.Data`` from the row (time, qpos, qvel, mocap_pos, qacc_warmstart; everything else
    is recomputed by ``mjx.step``), so a restored row steps exactly like a live one, and each call moves a few
    small arrays instead of the whole ``mjx.Data`` pytree.
    """
    if task.family in _COMPILED:
        return _COMPILED[task.family]
    _enable_compilation_cache()
    model = mujoco.MjModel.from_xml_path(str(ASSETS / task.xml))
    mx = mjx.put_model(model)
    template = mjx.make_data(mx)
    nq, nv, nmocap = model.nq, model.nv, model.nmocap
    f32 = jnp.float32

    def row_of(time: jax.Array, qpos: jax.Array, qvel: jax.Array, mocap: jax.Array, warm: jax.Array,
               elapsed: jax.Array) -> jax.Array:
        return jnp.concatenate([time[None], qpos, qvel, mocap.ravel(), warm, elapsed[None]]).astype(f32)

    def data_of(row: jax.Array) -> Any:
        i = 1
        qpos, i = row[i:i + nq], i + nq
        qvel, i = row[i:i + nv], i + nv
        mocap, i = row[i:i + 3 * nmocap].reshape(nmocap, 3), i + 3 * nmocap
        return template.replace(time=row[0], qpos=qpos, qvel=qvel, mocap_pos=mocap, qacc_warmstart=row[i:i + nv],
                                ctrl=qpos[:3])

    def start(key: jax.Array, params: jax.Array) -> jax.Array:
        lay = task.layout(key, params)
        zero = jnp.zeros((), f32)
        return row_of(zero, lay.qpos, lay.qvel, lay.mocap_pos, jnp.zeros(nv, f32), zero)

    def observe(row: jax.Array, params: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        d = data_of(row)
        state = task.observe(d.qpos, d.qvel, d.mocap_pos)
        reward, success, priv = task.evaluate(state, params)
        return state, reward, success, priv

    def reset_one(key: jax.Array, params: jax.Array) -> tuple[jax.Array, ...]:
        key, sub = jax.random.split(key)
        row = start(sub, params)
        state, _, _, priv = observe(row, params)
        return row, key, state, priv

    def step_one(row: jax.Array, key: jax.Array, length: jax.Array, params: jax.Array,
                 action: jax.Array) -> tuple[jax.Array, ...]:
        d = data_of(row)
        d = d.replace(ctrl=d.qpos[:3] + action * ACTION_SCALE)
        d = jax.lax.fori_loop(0, SUBSTEPS, lambda _, x: mjx.step(mx, x), d)
        elapsed = row[-1] + 1
        final_sim = row_of(d.time, d.qpos, d.qvel, d.mocap_pos, d.qacc_warmstart, elapsed)
        final_state, reward, success, final_priv = observe(final_sim, params)
        done = elapsed >= length
        next_key, sub = jax.random.split(key)
        row = jnp.where(done, start(sub, params), final_sim)
        key = jnp.where(done, next_key, key)
        state, _, _, priv = observe(row, params)
        return row, key, state, priv, reward, success, done, final_state, final_priv, final_sim

    def load_one(row: jax.Array, params: jax.Array) -> tuple[jax.Array, ...]:
        state, _, _, priv = observe(row, params)
        return state, priv

    compiled = _Compiled(
        model=model,
        reset=jax.jit(jax.vmap(reset_one, in_axes=(0, None))),
        step=jax.jit(jax.vmap(step_one, in_axes=(0, 0, None, None, 0))),
        load=jax.jit(jax.vmap(load_one, in_axes=(0, None))),
    )
    _COMPILED[task.family] = compiled
    return compiled


_OPEN: weakref.WeakSet[MjxEnv] = weakref.WeakSet()
_EXIT_HOOK = False


def _close_all() -> None:
    for env in list(_OPEN):
        env.close()


class MjxEnv:
    """``num_envs`` copies of one MJX task (``robot_rl.envs.mjx.TASK_NAMES``) behind the batched ``SimEnv``.

    ``sim_state`` rows: ``[time 1 | qpos | qvel | mocap_pos 3*nmocap | qacc_warmstart nv | episode_step 1]``
    (``spec.extras["sim_state_layout"]``); restoring a row and stepping on repeats the original steps exactly.
    """

    def __init__(self, task: str, num_envs: int = 1, device: str | torch.device = "cpu",
                 cameras: tuple[str, ...] = (), image_size: tuple[int, int] = (128, 128),
                 episode_length: int = DEFAULT_EPISODE_LENGTH, task_text: str = "") -> None:
        if task not in TASKS:
            raise ValueError(f"unknown MJX task '{task}' (known: {', '.join(TASKS)})")
        if num_envs < 1 or episode_length < 1:
            raise ValueError(f"num_envs and episode_length must be >= 1, got {num_envs}, {episode_length}")
        self.task = TASKS[task]
        self._fns = _compiled(self.task)
        model = self._fns.model
        model_cameras = tuple(model.camera(c).name for c in range(model.ncam))
        for cam in cameras:
            if cam not in model_cameras:
                raise ValueError(f"unknown camera '{cam}' for mjx/{task} (cameras: {', '.join(model_cameras)})")
        self.num_envs = num_envs
        self.device = torch.device(device)
        want_gpu = self.device.type == "cuda" and any(d.platform == "gpu" for d in jax.devices())
        self._jax_device = jax.devices("gpu" if want_gpu else "cpu")[0]
        self._episode_length = episode_length
        self._length = jax.device_put(jnp.float32(episode_length), self._jax_device)
        self._params = jax.device_put(jnp.asarray(self.task.params + (0.0,), dtype=jnp.float32), self._jax_device)
        self._cameras = tuple(cameras)
        self._image_hw = image_size
        self.spec = self._make_spec(model, model_cameras, image_size, episode_length, task_text)
        self._sim_dim = self.spec.sim_state_dim
        seeds = np.random.default_rng().integers(0, 2**31 - 1, size=num_envs)
        self._keys = self._put(self._seed_keys(seeds))
        self._rows: Any = None
        """float32 ``[N, S]`` JAX array: the live state (the carried state of the jitted step)."""
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._sim: torch.Tensor | None = None
        self._needs_reset = True
        self._scratch: mujoco.MjData | None = None
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        _OPEN.add(self)

    # ------------------------------------------------------------------------------- RobotEnv protocol
    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        """Reset every env; env ``i`` draws its layouts from a key made from ``seed + i`` (``None``: continue)."""
        if seed is not None:
            self._keys = self._put(self._seed_keys(seed + np.arange(self.num_envs, dtype=np.int64)))
        self._rows, self._keys, state, priv = self._fns.reset(self._keys, self._params)
        sim = self._rows
        self._elapsed[:] = 0
        self._needs_reset = False
        self._sim = self._tensor(sim).double()
        return self._obs(state, priv, self._sim), {"sim_state": self._sim}

    def step(self, action: torch.Tensor) -> StepResult:
        """Step every env with float32 ``[N, 3]`` actions in ``[-1, 1]``; same-step autoreset where done."""
        if self._needs_reset:
            raise RuntimeError(f"{self.spec.name}: call reset() first (or after set_sim_state() restored a state "
                               "that already reached the episode length)")
        act, clipped = validate_action(action, self.num_envs, 3)
        (self._rows, self._keys, state, priv, reward, success, done, final_state, final_priv,
         final_sim) = self._fns.step(self._rows, self._keys, self._length, self._params, self._to_jax(act))
        sim = self._rows
        self._elapsed += 1
        ended = self._elapsed >= self._episode_length
        self._elapsed[ended] = 0
        self._sim = self._tensor(sim).double()
        info: dict[str, Any] = {"sim_state": self._sim, "success": self._tensor(success),
                                "action_clipped": clipped.to(self.device)}
        if ended.any():
            final_sim_t = self._tensor(final_sim).double()
            info["final_obs"] = self._obs(final_state, final_priv, final_sim_t)
            info["final_sim_state"] = final_sim_t
        terminated = torch.zeros(self.num_envs, dtype=torch.bool, device=self.device)
        return StepResult(self._obs(state, priv, self._sim), self._tensor(reward), terminated, self._tensor(done),
                          info)

    def close(self) -> None:
        """Free GL contexts. Safe to call twice."""
        for r in self._renderers.values():
            r.close()
        self._renderers = {}
        _OPEN.discard(self)

    # --------------------------------------------------------------------------------- SimEnv protocol
    def get_sim_state(self) -> torch.Tensor:
        """float64 ``[N, S]`` state of every env (the last returned ``info["sim_state"]``; fresh copy)."""
        if self._sim is None:
            raise RuntimeError(f"{self.spec.name}: call reset() first")
        return self._sim.clone()

    def set_sim_state(self, state: torch.Tensor) -> Obs:
        """Restore float64 ``[N, S]`` rows; returns their obs. Rows at the episode length need ``reset`` next."""
        rows = self._check_rows(state, self.num_envs)
        self._rows = self._put(rows.astype(np.float32))
        st, priv = self._fns.load(self._rows, self._params)
        steps = rows[:, -1].astype(np.int64)
        self._elapsed[:] = steps
        self._needs_reset = bool((steps >= self._episode_length).any())
        self._sim = torch.from_numpy(rows.astype(np.float32).astype(np.float64)).to(self.device)
        return self._obs(st, priv, self._sim)

    def render(self, sim_state: torch.Tensor, camera: str, width: int, height: int) -> torch.Tensor:
        """Render float64 ``[B, S]`` stored states with CPU MuJoCo: uint8 ``[B, height, width, 3]``."""
        global _EXIT_HOOK
        if camera not in self.spec.cameras:
            raise ValueError(f"{self.spec.name}: unknown camera '{camera}' (cameras: {', '.join(self.spec.cameras)})")
        if width < 1 or height < 1:
            raise ValueError(f"render: width and height must be positive, got {width}x{height}")
        rows = self._check_rows(sim_state, None)
        model = self._fns.model
        if self._scratch is None:
            self._scratch = mujoco.MjData(model)
        data = self._scratch
        renderer = self._renderers.get((width, height))
        if renderer is None:
            renderer = self._renderers[(width, height)] = make_renderer(model, width, height)
            if not _EXIT_HOOK:  # after make_renderer's EGL set-up: atexit runs this first, while EGL is up
                atexit.register(_close_all)
                _EXIT_HOOK = True
        out = np.empty((len(rows), height, width, 3), dtype=np.uint8)
        nq, nv, nm = model.nq, model.nv, model.nmocap
        for b, row in enumerate(rows):
            data.time = row[0]
            data.qpos[:] = row[1:1 + nq]
            data.qvel[:] = row[1 + nq:1 + nq + nv]
            data.mocap_pos[:] = row[1 + nq + nv:1 + nq + nv + 3 * nm].reshape(nm, 3)
            mujoco.mj_forward(model, data)
            renderer.update_scene(data, camera=camera)
            renderer.render(out=out[b])
        return torch.from_numpy(out).to(self.device)

    # -------------------------------------------------------------------------------------- internals
    @staticmethod
    def _seed_keys(seeds: np.ndarray) -> np.ndarray:
        """uint32 ``[N, 2]`` threefry keys ``[seed >> 32, seed & 0xffffffff]`` (as ``jax.random.PRNGKey(seed)``)."""
        seeds = np.asarray(seeds, dtype=np.int64)
        if (seeds < 0).any():
            raise ValueError(f"seed must be >= 0, got {int(seeds.min())}")
        return np.stack([seeds >> 32, seeds & 0xFFFFFFFF], axis=1).astype(np.uint32)

    def _put(self, array: np.ndarray) -> jax.Array:
        return jax.device_put(array, self._jax_device)

    def _to_jax(self, action: torch.Tensor) -> jax.Array:
        if self._jax_device.platform == "gpu" and action.is_cuda:
            return jax.dlpack.from_dlpack(action.contiguous())
        return self._put(action.detach().cpu().numpy())

    def _tensor(self, array: jax.Array) -> torch.Tensor:
        t = torch.from_dlpack(array)
        return t if t.device == self.device else t.to(self.device)

    def _obs(self, state: jax.Array, priv: jax.Array, sim: torch.Tensor) -> Obs:
        obs = {"state": self._tensor(state), "privileged": self._tensor(priv)}
        h, w = self._image_hw
        for cam in self._cameras:
            obs[f"image/{cam}"] = self.render(sim, cam, w, h)
        return obs

    def _check_rows(self, state: torch.Tensor, num_rows: int | None) -> np.ndarray:
        want = f"[{'B' if num_rows is None else num_rows}, {self._sim_dim}]"
        if not isinstance(state, torch.Tensor) or state.ndim != 2 or state.shape[1] != self._sim_dim \
                or (num_rows is not None and state.shape[0] != num_rows) or state.dtype != torch.float64:
            got = f"{getattr(state, 'dtype', type(state).__name__)} {list(getattr(state, 'shape', []))}"
            raise ValueError(f"{self.spec.name}: sim_state must be float64 {want}, got {got}")
        rows = state.detach().cpu().numpy()
        steps = rows[:, -1]
        bad = np.flatnonzero(~np.isfinite(rows).all(axis=1) | (steps < 0) | (steps > self._episode_length)
                             | (steps != np.round(steps)))
        if bad.size:
            raise ValueError(f"{self.spec.name}: sim_state row {int(bad[0])} is not finite or its episode step "
                             f"{rows[bad[0], -1]} is outside 0..{self._episode_length}")
        return rows

    def _make_spec(self, model: mujoco.MjModel, model_cameras: tuple[str, ...], image_size: tuple[int, int],
                   episode_length: int, task_text: str) -> EnvSpec:
        h, w = image_size
        observations = {
            "state": ArraySpec((STATE_DIM,), "float32", description="fingertip, object and goal: see state_slices"),
            "privileged": ArraySpec((len(PRIVILEGED),), "float32",
                                    description="sim ground truth: " + ", ".join(n for n, _, _ in PRIVILEGED)),
        }
        for cam in self._cameras:
            observations[f"image/{cam}"] = ArraySpec((h, w, 3), "uint8", 0, 255, f"RGB from camera '{cam}'")
        nq, nv, nm = model.nq, model.nv, model.nmocap
        layout, i = [["time", 0, 1, "simulation time (s)"]], 1
        for name, size, text in (("qpos", nq, "joint positions: hand_x, hand_y, hand_z, then the task's object"),
                                 ("qvel", nv, "joint velocities"),
                                 ("mocap_pos", 3 * nm, "mocap body position of the goal marker"),
                                 ("qacc_warmstart", nv, "solver warmstart (restored rows step exactly)"),
                                 ("episode_step", 1, "steps since the episode's reset")):
            layout.append([name, i, i + size, text])
            i += size
        return EnvSpec(
            name=f"mjx/{self.task.name}",
            observations=observations,
            action=ActionSpec(dim=3, mode="ee_delta", scale=(ACTION_SCALE,) * 3, offset=(0.0, 0.0, 0.0),
                              names=("dx", "dy", "dz"), units=("m", "m", "m")),
            state_slices=STATE_SLICES,
            max_episode_steps=episode_length,
            control_hz=round(1.0 / (model.opt.timestep * SUBSTEPS), 6),
            task_text=task_text,
            sim_state_dim=i,
            cameras=model_cameras,
            extras={
                "backend": "mjx", "mujoco_version": mujoco.__version__, "jax_version": jax.__version__,
                "jax_device": str(self._jax_device),
                "scene": f"robot_rl/envs/mjx/assets/{self.task.xml}: primitive collision geometry only",
                "action": "the gripper's position-servo targets are fingertip position + action * "
                          f"{ACTION_SCALE} m (clipped to the workspace by the actuators' ctrlrange)",
                "reward": self.task.reward_text,
                "success": f"info['success']: {self.task.success_text}; terminated is always False, truncated at "
                           "max_episode_steps",
                "layout": self.task.layout_text,
                "layout_seeding": "env i: a JAX PRNG key from seed + i; autoresets continue it (not in sim_state)",
                "privileged": [list(t) for t in PRIVILEGED],
                "sim_state_layout": layout,
                "sim_state_precision": "JAX computes in float32; rows are float32 values stored as float64",
                "renders": "CPU MuJoCo on the same MJCF: table, red gripper, green goal sphere (and the blue block "
                           "or green cabinet). corner: 3/4 view; topview: straight down; front: from the robot side",
                "expert": f"robot_rl.envs.mjx.experts.mjx_expert('{self.task.name}')",
            },
        )
