"""``MujocoBatchEnv``: N single CPU MuJoCo environments behind the batched ``SimEnv`` tensor interface.

A backend subclasses it once (at most one level below the protocol) and fills five per-instance hooks;
this class does everything batched: action validation, the step loop, same-step autoreset, episode
truncation, sim-state rows, live camera images and rendering of stored states.

Per-step cost is kept small on purpose (the goal is >= 0.9x the steps/s of a raw MetaWorld loop at
N=1). Torch calls are what costs most right after a MuJoCo step, so the hot path makes one
(``action.tolist()``): outputs come from ``StepOutputs`` (fresh rows, tensors made in bulk), and
in-range finite actions skip the torch-based ``validate_action`` (same result).

``info["sim_state"]`` rows end with one column that this class owns: the step count within the
episode (``0`` right after a reset). The backend owns every column before it.
"""

from __future__ import annotations

import atexit
import os
import weakref
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")  # before mujoco is imported: it picks its GL backend on import

import mujoco
import numpy as np
import torch

from robot_rl.core.env import Obs, StepResult, validate_action
from robot_rl.core.specs import EnvSpec
from robot_rl.envs.step_outputs import StepOutputs

SIM_STATE_FLAGS = (mujoco.mjtState.mjSTATE_FULLPHYSICS | mujoco.mjtState.mjSTATE_MOCAP_POS
                   | mujoco.mjtState.mjSTATE_MOCAP_QUAT | mujoco.mjtState.mjSTATE_WARMSTART)
"""What ``mj_getState`` saves: time, qpos, qvel, act, plugin state (FULLPHYSICS), mocap pose (MetaWorld's
hand target; not part of FULLPHYSICS in MuJoCo 3.3) and the solver warmstart, without which a restored
state steps to a result that differs in the last bits (and contacts amplify that)."""
SIM_STATE_FLAGS_TEXT = "mjSTATE_FULLPHYSICS | mjSTATE_MOCAP_POS | mjSTATE_MOCAP_QUAT | mjSTATE_WARMSTART"


def forward_keep_warmstart(model: mujoco.MjModel, data: mujoco.MjData) -> None:
    """``mj_forward`` (fresh kinematics for observations and rendering) without changing the future.

    ``mj_forward`` overwrites ``qacc_warmstart``; keeping it makes stepping bit-identical to not calling it.
    """
    warmstart = data.qacc_warmstart.copy()
    mujoco.mj_forward(model, data)
    data.qacc_warmstart[:] = warmstart


_OPEN_ENVS: weakref.WeakSet[MujocoBatchEnv] = weakref.WeakSet()
_EXIT_HOOK_REGISTERED = False


def _close_open_envs() -> None:
    for env in list(_OPEN_ENVS):
        env.close()


def _load_triton_before_gl() -> None:
    """Load triton's LLVM before Mesa's, or a later ``import torch._dynamo`` crashes the process.

    Mesa's llvmpipe (EGL on the CPU) loads the system libLLVM; triton's ``libtriton.so`` bundles another
    LLVM whose static initializers segfault (in ``llvm::DenseMap``) when they run after Mesa's. torch loads
    triton on first use of ``torch._dynamo``, which ``torch.optim`` optimizers do when they are created, so
    render-then-train in one process would crash. Loaded first (0.1 s), both coexist.
    """
    try:
        import triton._C.libtriton  # noqa: F401
    except ImportError:
        pass


def make_renderer(model: mujoco.MjModel, width: int, height: int) -> mujoco.Renderer:
    """A ``mujoco.Renderer`` for ``model`` at ``width`` x ``height``; one-line ``RuntimeError`` if GL fails."""
    global _EXIT_HOOK_REGISTERED
    if not _EXIT_HOOK_REGISTERED:  # first renderer of the process
        _load_triton_before_gl()
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    try:
        renderer = mujoco.Renderer(model, height=height, width=width)
    except Exception as e:  # noqa: BLE001 - any GL failure gets the same advice
        first_line = (str(e).strip().splitlines() or [""])[0]
        raise RuntimeError(
            f"could not create a MuJoCo renderer with MUJOCO_GL={os.environ.get('MUJOCO_GL', '')!r} "
            f"({type(e).__name__}: {first_line}); for CPU rendering without EGL run `apt-get install libosmesa6` "
            "and set MUJOCO_GL=osmesa before Python imports mujoco") from None
    if not _EXIT_HOOK_REGISTERED:
        # mujoco.egl registers eglTerminate at exit when it creates its first context; atexit runs hooks
        # last-in first-out, so registering after it frees our GL contexts while EGL is still up (no noise).
        atexit.register(_close_open_envs)
        _EXIT_HOOK_REGISTERED = True
    return renderer


class MujocoBatchEnv:
    """Batched ``SimEnv`` over a Python list of single-env instances, stepped one after another on the CPU.

    Subclasses set ``spec`` and create the instances, then call ``_setup``. Every instance has ``.model``
    (``mujoco.MjModel``) and ``.data`` (``mujoco.MjData``). Hooks, each for one instance, writing into the
    given rows (float32 ``state_row [D]``, ``priv_row [P]``; float64 ``sim_row [S]`` whose last column
    belongs to this class, the backend writes ``sim_row[:S-1]``):

    - ``_reset_one(inst, seed, state_row, priv_row)``: start a new episode (``seed=None``: continue its RNG).
    - ``_step_one(inst, action, state_row, priv_row) -> (reward, terminated, success)``, ``action`` float32 ``[A]``.
    - ``_save_one(inst, sim_row)`` and ``_load_one(inst, sim_row, episode_step, state_row, priv_row)``.
    - ``_new_instance()``: a fresh instance, used only to render stored states.
    """

    spec: EnvSpec
    has_success: bool = True
    """Whether ``info["success"]`` is reported."""

    def _setup(self, instances: list[Any], device: str | torch.device, episode_length: int,
               image_cameras: tuple[str, ...], image_size: tuple[int, int]) -> None:
        self._instances = instances
        self.num_envs = len(instances)
        self.device = torch.device(device)
        self._on_cpu = self.device.type == "cpu"
        self._episode_length = episode_length
        self._elapsed = [0] * self.num_envs
        """Steps since each env's reset (a list: Python ints are cheaper than numpy per step)."""
        self._needs_reset = True
        self._image_cameras = image_cameras
        self._image_hw = image_size
        self._live_renderers: list[mujoco.Renderer] = []
        self._scratch: Any = None
        self._renderers: dict[tuple[int, int], mujoco.Renderer] = {}
        self._state_dim = self.spec.state_dim
        self._priv_dim = self.spec.observations["privileged"].shape[0]
        self._sim_dim = self.spec.sim_state_dim
        self._action_shape = (self.num_envs, self.spec.action.dim)
        n = self.num_envs
        self._outputs = StepOutputs(  # state, privileged, sim_state, reward, terminated, truncated, success, clipped
            [((n, self._state_dim), np.float32), ((n, self._priv_dim), np.float32), ((n, self._sim_dim), np.float64),
             ((n,), np.float32), ((n,), np.bool_), ((n,), np.bool_), ((n,), np.bool_), ((n,), np.int64)],
            zeroed=[False, False, False, False, True, True, True, True])
        _OPEN_ENVS.add(self)

    # ----------------------------------------------------------------------------------------- hooks
    def _reset_one(self, inst: Any, seed: int | None, state_row: np.ndarray, priv_row: np.ndarray) -> None:
        raise NotImplementedError

    def _step_one(self, inst: Any, action: np.ndarray, state_row: np.ndarray,
                  priv_row: np.ndarray) -> tuple[float, bool, bool]:
        raise NotImplementedError

    def _save_one(self, inst: Any, sim_row: np.ndarray) -> None:
        raise NotImplementedError

    def _load_one(self, inst: Any, sim_row: np.ndarray, episode_step: int, state_row: np.ndarray,
                  priv_row: np.ndarray) -> None:
        raise NotImplementedError

    def _new_instance(self) -> Any:
        raise NotImplementedError

    # ------------------------------------------------------------------------------- RobotEnv protocol
    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        """Reset every env; env ``i`` is seeded with ``seed + i`` (``None``: continue each env's RNG)."""
        state, priv, sim = self._empty_rows()
        for i, inst in enumerate(self._instances):
            self._reset_one(inst, None if seed is None else seed + i, state[i], priv[i])
            self._save_one(inst, sim[i])
        self._elapsed = [0] * self.num_envs
        self._needs_reset = False
        sim[:, -1] = 0
        obs = self._obs(state, priv)
        return self._tensors(obs), {"sim_state": self._tensor(sim)}

    def step(self, action: torch.Tensor) -> StepResult:
        """Step every env with float32 ``[N, A]`` actions in ``[-1, 1]``; same-step autoreset where done.

        Written for a small per-step cost (see the module docstring): per env only the hook calls and
        scalar writes; the returned tensors were made in bulk by ``StepOutputs``.
        """
        if self._needs_reset:
            raise RuntimeError(f"{self.spec.name}: call reset() first (or after set_sim_state() restored a state "
                               "that already reached the episode length)")
        act, clipped_counts = self._check_action(action)
        length, elapsed = self._episode_length, self._elapsed
        step_one, save_one = self._step_one, self._save_one
        rows, tensors = self._outputs.take()
        state, priv, sim, reward, terminated, truncated, success, clipped = rows
        if clipped_counts is not None:
            clipped[:] = clipped_counts
        done_rows = []
        for i, inst in enumerate(self._instances):
            sim_row = sim[i]
            reward[i], term, succ = step_one(inst, act[i], state[i], priv[i])
            save_one(inst, sim_row)
            sim_row[-1] = k = elapsed[i] + 1
            elapsed[i] = k
            if succ:
                success[i] = True
            if term or k >= length:
                terminated[i], truncated[i] = term, k >= length
                done_rows.append(i)
        info: dict[str, Any] = {}
        images = self._images() if self._image_cameras else {}
        if done_rows:  # same-step autoreset: the finished rows' last obs go to final_*, then they reset
            info["final_obs"] = self._tensors({"state": state.copy(), "privileged": priv.copy(), **images})
            info["final_sim_state"] = self._tensor(sim.copy())
            for i in done_rows:
                inst = self._instances[i]
                self._reset_one(inst, None, state[i], priv[i])
                save_one(inst, sim[i])
                sim[i, -1] = elapsed[i] = 0
            if images:
                images = {k: v.copy() for k, v in images.items()}
                self._render_live(images, done_rows)
        if not self._on_cpu:
            tensors = tuple(self._tensor(r) for r in rows)
        info["action_clipped"], info["sim_state"] = tensors[7], tensors[2]
        if self.has_success:
            info["success"] = tensors[6]
        obs = {"state": tensors[0], "privileged": tensors[1]}
        if images:
            obs.update(self._tensors(images))
        return StepResult(obs, tensors[3], tensors[4], tensors[5], info)

    def close(self) -> None:
        """Free GL contexts and the single envs. Safe to call twice."""
        for r in [*self._live_renderers, *self._renderers.values()]:
            r.close()
        self._live_renderers, self._renderers = [], {}
        for inst in [*self._instances, *([self._scratch] if self._scratch is not None else [])]:
            close = getattr(inst, "close", None)
            if close is not None:
                close()
        self._scratch = None
        _OPEN_ENVS.discard(self)

    # --------------------------------------------------------------------------------- SimEnv protocol
    def get_sim_state(self) -> torch.Tensor:
        """float64 ``[N, S]`` state of every env (layout: ``spec.extras["sim_state_layout"]``)."""
        sim = np.empty((self.num_envs, self._sim_dim), dtype=np.float64)
        for i, inst in enumerate(self._instances):
            self._save_one(inst, sim[i])
        sim[:, -1] = self._elapsed
        return self._tensor(sim)

    def set_sim_state(self, state: torch.Tensor) -> Obs:
        """Restore float64 ``[N, S]`` rows (from ``info["sim_state"]`` or ``get_sim_state``); returns their obs.

        A row whose episode step equals the episode length can be restored (to read its observation) but
        not stepped: call ``reset`` next. Random generators are not part of the state: stepping on from a
        restored row is identical until the next autoreset, which draws a fresh layout / reset noise.
        """
        rows = self._check_sim_state(state, self.num_envs)
        steps = rows[:, -1].astype(np.int64)
        if (steps < 0).any() or (steps > self._episode_length).any():
            bad = int(np.flatnonzero((steps < 0) | (steps > self._episode_length))[0])
            raise ValueError(f"sim_state row {bad}: episode step {steps[bad]} is outside 0..{self._episode_length}")
        state_buf, priv, _ = self._empty_rows()
        for i, inst in enumerate(self._instances):
            self._load_one(inst, rows[i], int(steps[i]), state_buf[i], priv[i])
        self._elapsed = [int(k) for k in steps]
        self._needs_reset = bool((steps >= self._episode_length).any())
        return self._tensors(self._obs(state_buf, priv))

    def render(self, sim_state: torch.Tensor, camera: str, width: int, height: int) -> torch.Tensor:
        """Render float64 ``[B, S]`` stored states from ``camera``: uint8 ``[B, height, width, 3]``.

        Uses a separate instance (own ``MjModel``/``MjData``), so the live envs are never touched; one
        ``mujoco.Renderer`` is cached per ``(width, height)``. About 15 frames/s at 128x128 on one CPU core.
        """
        if camera not in self.spec.cameras:
            raise ValueError(f"{self.spec.name}: unknown camera '{camera}' (cameras: {', '.join(self.spec.cameras)})")
        if width < 1 or height < 1:
            raise ValueError(f"render: width and height must be positive, got {width}x{height}")
        rows = self._check_sim_state(sim_state, None)
        if self._scratch is None:
            self._scratch = self._new_instance()
        inst = self._scratch
        renderer = self._renderers.get((width, height))
        if renderer is None:
            renderer = self._renderers[(width, height)] = make_renderer(inst.model, width, height)
        out = np.empty((len(rows), height, width, 3), dtype=np.uint8)
        state_row, priv_row = np.empty(self._state_dim, np.float32), np.empty(self._priv_dim, np.float32)
        for b, row in enumerate(rows):
            self._load_one(inst, row, int(row[-1]), state_row, priv_row)
            renderer.update_scene(inst.data, camera=camera)
            renderer.render(out=out[b])
        return self._tensor(out)

    # -------------------------------------------------------------------------------------- internals
    def _check_action(self, action: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
        """float32 ``[N, A]`` numpy action and int64 ``[N]`` clip counts (``None``: nothing clipped).

        The common case (a tensor of finite values in range) is checked on ``action.tolist()``: one torch
        call, where ``action.dtype``, ``action.numpy()`` and friends cost ~10 us each right after a MuJoCo
        step (see ``step_outputs``). Everything else goes through ``validate_action``.
        """
        if type(action) is torch.Tensor:
            values = action.tolist()
            n, dim = self._action_shape
            try:
                if len(values) == n and all(type(row) is list and len(row) == dim for row in values):
                    flat = [x for row in values for x in row]
                    total = sum(flat)  # NaN anywhere makes it NaN, and NaN != NaN
                    if min(flat) >= -1.0 and max(flat) <= 1.0 and total == total:
                        return np.array(values, dtype=np.float32), None
            except TypeError:  # e.g. complex values: let validate_action say what is wrong
                pass
        clamped, clipped = validate_action(action, self.num_envs, self.spec.action.dim)
        return clamped.cpu().numpy(), clipped.cpu().numpy()

    def _check_sim_state(self, state: torch.Tensor, num_rows: int | None) -> np.ndarray:
        if not isinstance(state, torch.Tensor):
            state = torch.as_tensor(state)
        want = f"[{'B' if num_rows is None else num_rows}, {self._sim_dim}]"
        if state.ndim != 2 or state.shape[1] != self._sim_dim or (num_rows is not None and state.shape[0] != num_rows):
            raise ValueError(f"{self.spec.name}: sim_state must be float64 {want}, got {list(state.shape)}")
        if state.dtype != torch.float64:
            raise ValueError(f"{self.spec.name}: sim_state must be float64 {want}, got {state.dtype}")
        return state.detach().cpu().numpy()

    def _empty_rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = self.num_envs
        return (np.empty((n, self._state_dim), dtype=np.float32), np.empty((n, self._priv_dim), dtype=np.float32),
                np.empty((n, self._sim_dim), dtype=np.float64))

    def _obs(self, state: np.ndarray, priv: np.ndarray) -> dict[str, np.ndarray]:
        return {"state": state, "privileged": priv, **(self._images() if self._image_cameras else {})}

    def _images(self) -> dict[str, np.ndarray]:
        """Render every live env into new ``image/<camera>`` arrays (slow, see ``make_env``)."""
        h, w = self._image_hw
        images = {f"image/{cam}": np.empty((self.num_envs, h, w, 3), dtype=np.uint8) for cam in self._image_cameras}
        self._render_live(images, range(self.num_envs))
        return images

    def _render_live(self, obs: dict[str, np.ndarray], rows: Any) -> None:
        """Render the live envs ``rows`` into ``obs["image/<camera>"]`` (slow: ~15 frames/s per camera)."""
        if not self._image_cameras:
            return
        if not self._live_renderers:
            h, w = self._image_hw
            self._live_renderers = [make_renderer(inst.model, w, h) for inst in self._instances]
        for i in rows:
            inst, renderer = self._instances[i], self._live_renderers[i]
            forward_keep_warmstart(inst.model, inst.data)  # mj_step leaves kinematics one substep behind
            for cam in self._image_cameras:
                renderer.update_scene(inst.data, camera=cam)
                renderer.render(out=obs[f"image/{cam}"][i])

    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(array) if self._on_cpu else torch.from_numpy(array).to(self.device)

    def _tensors(self, arrays: dict[str, np.ndarray]) -> Obs:
        if self._on_cpu:
            return {k: torch.from_numpy(v) for k, v in arrays.items()}
        return {k: torch.from_numpy(v).to(self.device) for k, v in arrays.items()}
