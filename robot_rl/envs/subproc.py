"""``SubprocEnv``: a ``SimEnv`` whose ``num_envs`` envs step in ``workers`` processes at the same time.

    env = make_env("metaworld/drawer-open-v3", num_envs=8, workers=2)   # 2 processes of 4 envs each
    env.step_async(action)      # the workers step while this process does something else (learner updates)
    res = env.step_wait()       # the same StepResult as env.step(action)

Worker ``w`` builds its slice of envs (``envs lo..hi-1``) with ``make_env`` in its own process (started by
``forkserver``, never forked from a process that already runs torch threads) and steps them with its share of
the actions. Actions, observations, rewards, flags and sim states travel through one shared-memory block
(``multiprocessing.shared_memory``); each call sends one short pipe message to every worker and waits for
one short reply. The contract is the in-process backend's: env ``i`` is seeded with ``seed + i`` (so one
seed gives the same transitions as ``make_env(..., workers=0)``), same-step autoreset with
``info["final_obs"]`` / ``info["final_sim_state"]``, ``info["success"]``, ``info["sim_state"]``.

A worker that dies or does not answer within ``timeout`` seconds raises ``EnvWorkerError`` naming the
worker and its envs (the env is unusable afterwards: close it). An exception inside a worker (e.g. a
restored sim state out of range) comes back as ``ValueError`` / ``RuntimeError`` with the worker's message.

Why not gymnasium's ``AsyncVectorEnv(shared_memory=True)``: it runs one gymnasium ``Env`` with a scalar
reward per process and sends ``info`` (our per-step ``sim_state`` and ``final_obs``) pickled through the
pipe; here a worker steps a whole batch and everything per step stays in shared memory.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection, wait
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import torch

from robot_rl.core.env import Obs, StepResult, validate_action
from robot_rl.core.specs import EnvSpec
from robot_rl.envs.step_outputs import StepOutputs

_SCALARS = (("reward", np.float32), ("terminated", np.bool_), ("truncated", np.bool_), ("success", np.bool_),
            ("action_clipped", np.int64))


class EnvWorkerError(RuntimeError):
    """A worker process of a ``SubprocEnv`` died or stopped answering."""


def _fields(spec: EnvSpec, n: int) -> list[tuple[str, tuple[int, ...], Any]]:
    """Every array in the shared block: name, shape ``[n, ...]``, numpy dtype."""
    fields: list[tuple[str, tuple[int, ...], Any]] = [("action", (n, spec.action.dim), np.float32)]
    for k, s in sorted(spec.observations.items()):  # sorted: the parent's spec came through JSON (sorted keys)
        fields += [(f"obs/{k}", (n, *s.shape), np.dtype(s.dtype)), (f"final/{k}", (n, *s.shape), np.dtype(s.dtype))]
    fields += [("sim_state", (n, spec.sim_state_dim), np.float64), ("final_sim_state", (n, spec.sim_state_dim),
                                                                     np.float64)]
    return fields + [(k, (n,), dtype) for k, dtype in _SCALARS]


def _layout(spec: EnvSpec, n: int) -> tuple[int, list[tuple[str, tuple[int, ...], Any, int]]]:
    """Total bytes and ``(name, shape, dtype, offset)`` of every field (64-byte aligned)."""
    offset, out = 0, []
    for name, shape, dtype in _fields(spec, n):
        out.append((name, shape, dtype, offset))
        offset += -(-int(np.prod(shape)) * np.dtype(dtype).itemsize // 64) * 64
    return max(offset, 64), out


def _views(buf: Any, layout: list[tuple[str, tuple[int, ...], Any, int]]) -> dict[str, np.ndarray]:
    return {name: np.ndarray(shape, dtype=dtype, buffer=buf, offset=off) for name, shape, dtype, off in layout}


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


# ------------------------------------------------------------------------------------------------ the worker
def _worker(name: str, lo: int, hi: int, make_kwargs: dict[str, Any], conn: Connection) -> None:
    """Body of worker process: build envs ``lo..hi-1``, then serve commands until "close" or the pipe closes."""
    torch.set_num_threads(1)  # the envs do not use torch's thread pool; spinning threads would steal cores
    env: Any = None
    shm: SharedMemory | None = None
    handlers: dict[str, Callable[[Any], Any]] = {}
    try:
        from robot_rl.envs import make_env

        try:
            env = make_env(name, num_envs=hi - lo, **make_kwargs)
        except Exception as e:
            conn.send(("error", _one_line(e)))
            return
        conn.send(("spec", env.spec.to_json()))
        shm = SharedMemory(name=conn.recv())
        _, layout = _layout(env.spec, int(conn.recv()))
        rows = {k: v[lo:hi] for k, v in _views(shm.buf, layout).items()}
        handlers = _handlers(env, rows)
        while True:
            cmd, arg = conn.recv()
            if cmd == "close":
                conn.send(("ok", None))
                return
            try:
                reply = handlers[cmd](arg)
            except Exception as e:
                conn.send(("error", _one_line(e)))
                continue
            conn.send(("ok", reply))
    except (EOFError, BrokenPipeError, KeyboardInterrupt):  # the parent went away
        pass
    finally:
        if env is not None:
            env.close()
        if shm is not None:
            rows, handlers = {}, {}  # drop the views into the block before closing it
            try:
                shm.close()
            except BufferError:
                pass


def _handlers(env: Any, rows: dict[str, np.ndarray]) -> dict[str, Callable[[Any], Any]]:
    obs_keys = [k for k in rows if k.startswith("obs/")]

    def write_obs(obs: Obs, prefix: str = "obs/") -> None:
        for k in obs_keys:
            np.copyto(rows[prefix + k[4:]], obs[k[4:]].numpy())

    def reset(seed: int | None) -> None:
        obs, info = env.reset(seed=seed)
        write_obs(obs)
        np.copyto(rows["sim_state"], info["sim_state"].numpy())

    def step(_: Any) -> tuple[bool, bool]:
        res = env.step(torch.from_numpy(rows["action"].copy()))
        write_obs(res.obs)
        info = res.info
        np.copyto(rows["reward"], res.reward.numpy())
        np.copyto(rows["terminated"], res.terminated.numpy())
        np.copyto(rows["truncated"], res.truncated.numpy())
        np.copyto(rows["action_clipped"], info["action_clipped"].numpy())
        np.copyto(rows["sim_state"], info["sim_state"].numpy())
        has_success = "success" in info
        if has_success:
            np.copyto(rows["success"], info["success"].numpy())
        done = "final_obs" in info
        if done:
            write_obs(info["final_obs"], "final/")
            np.copyto(rows["final_sim_state"], info["final_sim_state"].numpy())
        return done, has_success

    def get_state(_: Any) -> None:
        np.copyto(rows["sim_state"], env.get_sim_state().numpy())

    def set_state(_: Any) -> None:
        write_obs(env.set_sim_state(torch.from_numpy(rows["sim_state"].copy())))

    def render(arg: tuple[np.ndarray, str, int, int]) -> np.ndarray:
        states, camera, width, height = arg
        return env.render(torch.from_numpy(states), camera, width, height).numpy()

    return {"reset": reset, "step": step, "get": get_state, "set": set_state, "render": render}


# ------------------------------------------------------------------------------------------------ the parent
def _shutdown(procs: list[Any], conns: list[Connection], shm: SharedMemory | None) -> None:
    """Stop the workers (politely, then by force) and free the shared block; safe to call twice."""
    for conn in conns:
        try:
            conn.send(("close", None))
        except (OSError, ValueError):
            pass
    for p in procs:
        p.join(timeout=5.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=5.0)
    for conn in conns:
        conn.close()
    if shm is not None:
        try:
            shm.close()
        except BufferError:  # a caller still holds a view; the block is freed when it goes
            pass
        try:
            shm.unlink()
        except FileNotFoundError:
            pass


STARTUP_SECONDS = 300.0
"""How long a worker may take to import the simulator and build its envs (``timeout`` covers the steps)."""


class SubprocEnv:
    """``num_envs`` envs of the task ``name`` in ``workers`` processes; a ``SimEnv`` (see the module docstring).

    Args:
        name, num_envs, cameras, image_size, episode_length: as for ``make_env``.
        workers: number of processes, 1..num_envs; worker ``w`` owns a contiguous slice of the envs.
        device: where the returned tensors live (simulation is on the CPU, in the workers).
        timeout: seconds to wait for a worker's answer before ``EnvWorkerError`` (rendering gets 1 s per frame more).
        start_method: ``"forkserver"`` (default) or ``"spawn"``; ``"fork"`` is refused (torch threads).
    """

    def __init__(self, name: str, num_envs: int = 1, workers: int = 1, device: str | torch.device = "cpu",
                 cameras: tuple[str, ...] = (), image_size: tuple[int, int] = (128, 128),
                 episode_length: int | None = None, timeout: float = 120.0, start_method: str = "forkserver") -> None:
        if not 1 <= workers <= num_envs:
            raise ValueError(f"workers must be between 1 and num_envs={num_envs}, got {workers}")
        if start_method not in ("forkserver", "spawn"):
            raise ValueError(f"start_method must be 'forkserver' or 'spawn', got '{start_method}'")
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.timeout = timeout
        self._name = name
        bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
        self._slices = [(int(bounds[w]), int(bounds[w + 1])) for w in range(workers)]
        self._procs: list[Any] = []
        self._conns: list[Connection] = []
        self._shm: SharedMemory | None = None
        self._broken: str | None = None
        self._pending = False
        self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns, None)
        ctx: Any = mp.get_context(start_method)
        if start_method == "forkserver":
            ctx.set_forkserver_preload(["robot_rl.envs.subproc"])
        make_kwargs = {"cameras": tuple(cameras), "image_size": tuple(image_size), "episode_length": episode_length}
        os.environ.setdefault("MUJOCO_GL", "egl")  # the workers inherit it before they import mujoco
        try:
            for lo, hi in self._slices:
                parent, child = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(name, lo, hi, make_kwargs, child), daemon=True,
                                name=f"env-worker-{len(self._procs)}")
                p.start()
                child.close()
                self._procs.append(p)
                self._conns.append(parent)
            # starting a worker imports the simulator and builds its envs: seconds, more on a loaded machine
            startup = max(0.0, STARTUP_SECONDS - self.timeout)
            specs = [self._recv(w, kind="spec", extra_time=startup) for w in range(workers)]
            self.spec = EnvSpec.from_json(specs[0])
            size, layout = _layout(self.spec, num_envs)
            self._shm = SharedMemory(create=True, size=size)
            self._finalizer.detach()
            self._finalizer = weakref.finalize(self, _shutdown, self._procs, self._conns, self._shm)
            for conn in self._conns:
                conn.send(self._shm.name)
                conn.send(num_envs)
        except BaseException:
            self.close()
            raise
        self._views = _views(self._shm.buf, layout)
        self._obs_keys = list(self.spec.observations)
        self._action_shape = (num_envs, self.spec.action.dim)
        obs_shapes: list[tuple[tuple[int, ...], Any]] = [((num_envs, *s.shape), np.dtype(s.dtype))
                                                         for s in self.spec.observations.values()]
        self._outputs = StepOutputs([*obs_shapes, ((num_envs, self.spec.sim_state_dim), np.float64),
                                     *[((num_envs,), dtype) for _, dtype in _SCALARS]],
                                    zeroed=[False] * (len(obs_shapes) + 1 + len(_SCALARS)))

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the workers, in order (worker ``w`` owns ``envs_of(w)``)."""
        return [int(p.pid) for p in self._procs]

    def envs_of(self, worker: int) -> range:
        return range(*self._slices[worker])

    # ------------------------------------------------------------------------------- RobotEnv protocol
    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        """Reset every env; env ``i`` is seeded with ``seed + i`` (``None``: continue each env's RNG)."""
        self._call("reset", [None if seed is None else seed + lo for lo, _ in self._slices])
        obs = {k: self._tensor(self._views[f"obs/{k}"].copy()) for k in self._obs_keys}
        return obs, {"sim_state": self._tensor(self._views["sim_state"].copy())}

    def step(self, action: torch.Tensor) -> StepResult:
        """Step every env with float32 ``[N, A]`` actions in ``[-1, 1]``; same-step autoreset where done."""
        self.step_async(action)
        return self.step_wait()

    def step_async(self, action: torch.Tensor) -> None:
        """Hand ``action`` to the workers and return at once; ``step_wait()`` collects the result."""
        if self._pending:
            raise RuntimeError(f"{self.spec.name}: step_async called twice without step_wait")
        if not isinstance(action, torch.Tensor) or tuple(action.shape) != self._action_shape:
            validate_action(action, self.num_envs, self.spec.action.dim)  # raises, saying what is wrong
        values = action.detach().to("cpu", torch.float32).numpy()
        if not np.isfinite(values).all():
            validate_action(action, self.num_envs, self.spec.action.dim)  # raises naming the env
        self._check_usable()
        np.copyto(self._views["action"], values)  # the workers clip and count, as the in-process backend does
        self._send_all("step", [None] * len(self._slices))
        self._pending = True

    def step_wait(self) -> StepResult:
        """The ``StepResult`` of the action given to ``step_async``."""
        if not self._pending:
            raise RuntimeError(f"{self.spec.name}: step_wait called without step_async")
        self._pending = False
        replies = self._gather("step")
        v = self._views
        rows, tensors = self._outputs.take()
        k = len(self._obs_keys)
        for i, key in enumerate(self._obs_keys):
            np.copyto(rows[i], v[f"obs/{key}"])
        for i, key in enumerate(("sim_state", *[s for s, _ in _SCALARS]), start=k):
            np.copyto(rows[i], v[key])
        if not self.device.type == "cpu":
            tensors = tuple(t.to(self.device) for t in tensors)
        obs = dict(zip(self._obs_keys, tensors[:k], strict=True))
        reward, terminated, truncated, success, clipped = tensors[k + 1:]
        info: dict[str, Any] = {"action_clipped": clipped, "sim_state": tensors[k]}
        if all(has_success for _, has_success in replies):
            info["success"] = success
        if any(done for done, _ in replies):  # rows of workers with no finished env hold their current obs
            final = {key: rows[i].copy() for i, key in enumerate(self._obs_keys)}
            final_sim = rows[k].copy()
            for (lo, hi), (done, _) in zip(self._slices, replies, strict=True):
                if done:
                    for key in self._obs_keys:
                        final[key][lo:hi] = v[f"final/{key}"][lo:hi]
                    final_sim[lo:hi] = v["final_sim_state"][lo:hi]
            info["final_obs"] = {key: self._tensor(a) for key, a in final.items()}
            info["final_sim_state"] = self._tensor(final_sim)
        return StepResult(obs, reward, terminated, truncated, info)

    def close(self) -> None:
        """Stop the workers and free the shared memory. Safe to call twice."""
        self._views = {}
        self._finalizer()
        self._broken = self._broken or "closed"

    # --------------------------------------------------------------------------------- SimEnv protocol
    def get_sim_state(self) -> torch.Tensor:
        """float64 ``[N, S]`` state of every env."""
        self._call("get", [None] * len(self._slices))
        return self._tensor(self._views["sim_state"].copy())

    def set_sim_state(self, state: torch.Tensor) -> Obs:
        """Restore float64 ``[N, S]`` rows; returns their observations (see ``MujocoBatchEnv.set_sim_state``)."""
        want = (self.num_envs, self.spec.sim_state_dim)
        if not isinstance(state, torch.Tensor) or tuple(state.shape) != want or state.dtype != torch.float64:
            got = f"{getattr(state, 'dtype', type(state).__name__)} {list(getattr(state, 'shape', []))}"
            raise ValueError(f"{self.spec.name}: sim_state must be float64 {list(want)}, got {got}")
        self._check_usable()
        np.copyto(self._views["sim_state"], state.detach().cpu().numpy())
        self._call("set", [None] * len(self._slices))
        return {k: self._tensor(self._views[f"obs/{k}"].copy()) for k in self._obs_keys}

    def render(self, sim_state: torch.Tensor, camera: str, width: int, height: int) -> torch.Tensor:
        """Render float64 ``[B, S]`` stored states (worker 0 renders them): uint8 ``[B, height, width, 3]``."""
        states = torch.as_tensor(sim_state).detach().cpu().numpy()
        self._check_usable()
        self._send(0, "render", (states, camera, width, height))
        return self._tensor(self._recv(0, extra_time=float(len(states))))

    # -------------------------------------------------------------------------------------- internals
    def _tensor(self, array: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(array)
        return t if self.device.type == "cpu" else t.to(self.device)

    def _check_usable(self) -> None:
        if self._pending:
            raise RuntimeError(f"{self.spec.name}: a step_async is pending; call step_wait first")
        if self._broken is not None:
            raise EnvWorkerError(f"{self._name}: the env is unusable ({self._broken})")

    def _call(self, cmd: str, args: list[Any]) -> list[Any]:
        self._check_usable()
        self._send_all(cmd, args)
        return self._gather(cmd)

    def _send(self, w: int, cmd: str, arg: Any) -> None:
        try:
            self._conns[w].send((cmd, arg))
        except (OSError, ValueError):
            self._recv(w)  # the pipe is gone: report why (the worker died)
            raise

    def _send_all(self, cmd: str, args: list[Any]) -> None:
        for w, arg in enumerate(args):
            self._send(w, cmd, arg)

    def _gather(self, cmd: str) -> list[Any]:
        """Every worker's reply, in order; raises the first worker's error after all have answered."""
        replies, errors = [], []
        for w in range(len(self._slices)):
            try:
                replies.append(self._recv(w))
            except (ValueError, RuntimeError) as e:
                if isinstance(e, EnvWorkerError):
                    raise
                replies.append(None)
                errors.append(e)
        if errors:
            raise errors[0]
        return replies

    def _describe(self, w: int) -> str:
        lo, hi = self._slices[w]
        envs = f"env {lo}" if hi - lo == 1 else f"envs {lo}..{hi - 1}"
        return f"{self._name}: env worker {w} (pid {self._procs[w].pid}, {envs})"

    def _recv(self, w: int, kind: str = "ok", extra_time: float = 0.0) -> Any:
        """Worker ``w``'s next answer; ``EnvWorkerError`` if it died or is silent for ``timeout`` seconds."""
        conn, proc = self._conns[w], self._procs[w]
        ready = wait([conn, proc.sentinel], timeout=self.timeout + extra_time)
        if conn in ready:
            try:
                status, value = conn.recv()
            except (EOFError, OSError):
                status, value = "dead", None
            if status == kind:
                return value
            if status == "error":
                if kind == "spec":
                    raise ValueError(f"{self._describe(w)} could not build its envs: {value}")
                cls = ValueError if value.startswith("ValueError") else RuntimeError
                raise cls(f"{self._describe(w)}: {value}")
        if not ready:
            self._broken = f"worker {w} timed out"
            raise EnvWorkerError(f"{self._describe(w)} did not answer within {self.timeout + extra_time:.0f} s")
        proc.join(timeout=1.0)
        self._broken = f"worker {w} died"
        raise EnvWorkerError(f"{self._describe(w)} died (exit code {proc.exitcode}); close this env and make a new one")
