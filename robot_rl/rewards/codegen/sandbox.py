"""Run LLM-written reward code on batches, only in a long-lived worker process behind several layers.

Layers (``sandbox_layers()`` probes which ones this machine gives; ``format_layers`` prints them):

- static gate (``gate.py``) on the source, in the host, before anything runs;
- clean environment: the worker's environment is built from scratch (no API keys, no ``PYTHON*``), ``python -I``;
- network namespace: the worker ``unshare``s a fresh one (no interface up) before it reads any code;
- private filesystem: a mount namespace and ``pivot_root`` into a read-only root holding only the interpreter, its
  import path and /usr (read-only bind mounts), /dev/null, zero, urandom, and an empty ``noexec`` tmpfs on ``/tmp``
  (16 MiB): host files (/etc, /proc, /home, ...) are not there, what the code writes vanishes with the worker, and
  nothing it writes can be loaded as native code;
- resource limits: ``RLIMIT_AS``, ``RLIMIT_CPU`` (per batch), ``RLIMIT_FSIZE``, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC``;
- unprivileged user: a root host's worker drops to nobody (``RLIMIT_NPROC`` never binds uid 0; no write access to
  the repository);
- seccomp filter: no sockets, no new processes (threads only), no exec, ptrace, namespaces, setsid; ``kill`` only
  of itself;
- restricted globals (with the gate): ``{"torch", "math", "np": <gate.NUMPY>, "__builtins__": <gate.BUILTINS>}``,
  fresh every call (the module's constants and helpers are made again in them);
  without the gate, torch's, math's and builtins' namespaces are restored after every call (monkey-patching does
  not stick; gated code cannot assign attributes at all);
- deadline: a batch that does not answer in ``deadline_s`` gets its whole process group SIGKILLed; the next call
  starts a new worker;
- output cap: the reward code's stdout/stderr is /dev/null; a reply frame over ``max_reply_bytes`` is rejected (and
  the worker killed) before it is read;
- result checks in the host: reward a floating CPU tensor of shape ``[N]``, finite, ``|r| <= reward_bound``;
  components ``dict[str, Tensor[N]]``, finite; every failure is one line (``SandboxError``).

The worker reads the code from the pipe, so it needs no access to the code's file; the host never unpickles what the
worker sends (JSON header + raw float32).

Length: the host side of one security boundary (the worker's launch, framing, deadlines and result checks) kept in
one file so that it can be reviewed as a whole, beside its other half, ``worker.py``.
"""

from __future__ import annotations

import json
import mmap
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.rewards.codegen import gate as gate_module
from robot_rl.rewards.codegen.errors import RewardCodeError

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")
LAYER_SWITCHES = ("netns", "fs", "rlimits", "user", "seccomp")
"""Worker layers that tests may switch off (``Sandbox(..., disable={"seccomp"})``) to show what the others contain."""

_LEN = struct.Struct("<Q")
_BATCH = struct.Struct("<4sIII")
_REPLY_HEAD = struct.Struct("<I")
_PIPE_BYTES = 1 << 20
SHARED_BATCH_BYTES = 8 << 20
"""Batches up to this size (states + actions, float32: 8 MiB = ~48k MetaWorld transitions) go through shared memory
that only the host reads from the pipe's point of view: results always come back over the pipe."""
_F_SETPIPE_SZ = 1031


class SandboxError(RewardCodeError):
    """The sandboxed reward code failed: raised, timed out, died, or returned the wrong thing (one line)."""


@dataclass(frozen=True)
class SandboxLimits:
    deadline_s: float = 10.0
    """Wall-clock seconds one batch may take; then the worker's process group is SIGKILLed."""
    startup_s: float = 120.0
    """Wall-clock seconds the worker may take to start (import torch) and load the code."""
    memory_mb: int = 4096
    """``RLIMIT_AS`` of the worker (torch alone maps ~1 GiB)."""
    cpu_s: float | None = None
    """CPU seconds one batch may use (``RLIMIT_CPU`` soft limit, SIGXCPU); ``None``: ``2 * deadline_s + 1``."""
    cpu_total_s: int = 3600
    """``RLIMIT_CPU`` hard limit; the host starts a new worker when the old one has used half."""
    file_mb: int = 1
    """``RLIMIT_FSIZE``: the largest file the worker may write (only /tmp is writable for nobody)."""
    open_files: int = 64
    """``RLIMIT_NOFILE``, set after torch is imported."""
    processes: int = 64
    """``RLIMIT_NPROC`` (threads count): all processes of the worker's user, so of nobody on a root host."""
    max_reply_bytes: int = 16 << 20
    """The largest reply frame read from the worker."""
    max_components: int = 64
    reward_bound: float = 1e6
    """``|reward|`` above this is an error (components are only checked for being finite)."""
    check_values: bool = True
    """Reject non-finite rewards/components and rewards over ``reward_bound``; ``CodeReward`` turns this off (its
    callers report a non-finite reward with the episode and step)."""
    threads: int = 1
    """torch intra-op threads in the worker."""
    rows_per_call: int = 8192
    """Larger batches go to the worker in calls of at most this many rows, each with its own deadline (code written
    for one sample at a time runs row by row, ~50 us a row: 8192 rows stay well inside ``deadline_s``)."""

    @property
    def batch_cpu_s(self) -> float:
        return self.cpu_s if self.cpu_s is not None else 2 * self.deadline_s + 1


@dataclass(frozen=True)
class Layer:
    name: str
    active: bool
    detail: str


class Sandbox:
    """Evaluate ``compute_reward(obs, action)`` from ``source`` on batches, in a worker started on first use (or by
    ``start()``) and reused until it is killed, dies or is closed. ``gate=False`` (tests only) skips the static gate
    and runs the module as written, with full builtins: then only the process layers contain it."""

    def __init__(self, source: str, spec: EnvSpec, limits: SandboxLimits | None = None, *, gate: bool = True,
                 filename: str = "<reward>", disable: Iterable[str] = ()) -> None:
        self.limits = limits if limits is not None else SandboxLimits()
        self.spec = spec
        self.gate = gate
        self.filename = filename
        self.disable = frozenset(disable)
        unknown = self.disable - set(LAYER_SWITCHES)
        if unknown:
            raise ValueError(f"Sandbox(disable=...): unknown layer(s) {sorted(unknown)}, expected {LAYER_SWITCHES}")
        self.slices = [(s.name, s.start, s.stop) for s in spec.state_slices]
        self.state_dim = spec.state_dim
        self._proc: subprocess.Popen[bytes] | None = None
        self._fds: tuple[int, int] | None = None
        self._shm: mmap.mmap | None = None
        self._layers: list[Layer] = []
        self.per_sample = False
        """Whether the last batch ran row by row (per-sample code, ``worker.Worker.evaluate``)."""
        self.source = self._checked(source)
        self._loaded = False

    # ---- public ---------------------------------------------------------------------------------------------------

    def __call__(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``states`` (after the step) ``[N, D]``, ``actions`` ``[N, A]`` -> (float32 ``[N]``, {name: float32 [N]})."""
        s = np.ascontiguousarray(states, np.float32)
        a = np.ascontiguousarray(actions, np.float32)
        self._check_inputs(s, a)
        step = max(1, self.limits.rows_per_call)
        if len(s) > step:
            return _joined([self(s[i:i + step], a[i:i + step]) for i in range(0, len(s), step)])
        if self._proc is None or not self._loaded or self._proc.poll() is not None:
            self.start()
        n = len(s)
        deadline = time.monotonic() + self.limits.deadline_s
        try:
            if self._shm is not None and s.nbytes + a.nbytes <= len(self._shm):
                shared = np.frombuffer(self._shm, np.float32, s.size + a.size)
                shared[:s.size] = s.reshape(-1)
                shared[s.size:] = a.reshape(-1)
                del shared  # no view may outlive the call: close() unmaps
                self._write([memoryview(_BATCH.pack(b"SHMB", n, s.shape[1], a.shape[1]))], deadline)
            else:
                self._write([memoryview(_BATCH.pack(b"BATC", n, s.shape[1], a.shape[1])), _bytes(s), _bytes(a)],
                            deadline)
            header, data = self._receive(deadline)
        except TimeoutError:
            self.close()
            raise SandboxError(f"compute_reward did not return within {self.limits.deadline_s:g} s "
                               "(killed its process group)") from None
        except (BrokenPipeError, EOFError, ConnectionError):
            raise SandboxError(f"the reward process died ({self._death()})") from None
        self.per_sample = bool(header.get("per_sample"))
        if float(header.get("cpu", 0.0)) > self.limits.cpu_total_s / 2:
            self.close()  # the next call starts a fresh worker, well before RLIMIT_CPU's hard limit
        return self._result(header, data, n)

    def start(self) -> list[Layer]:
        """Start the worker now (if it is not running) and load the code; return the layers as the worker saw them."""
        if self._proc is not None and self._proc.poll() is None and self._loaded:
            return self.layers()
        self.close()
        self._spawn()
        deadline = time.monotonic() + self.limits.startup_s
        try:
            self._send_message({"op": "init", **self._config()}, deadline)
            header, _ = self._receive(deadline)
        except TimeoutError:
            self.close()
            raise SandboxError(f"the reward process did not start within {self.limits.startup_s:g} s") from None
        except (BrokenPipeError, EOFError, ConnectionError):
            raise SandboxError(f"the reward process died while starting ({self._death()})") from None
        if not header.get("ready"):
            self.close()
            raise SandboxError(str(header.get("error", "the reward process failed to start")))
        self._layers = [Layer(str(x["name"]), bool(x["active"]), str(x["detail"])) for x in header["layers"]]
        self._loaded = True
        return self.layers()

    def load(self, source: str) -> None:
        """Swap in new code, in the same worker if it runs (no new process: search candidates reuse one worker)."""
        self.source = self._checked(source)
        if self._proc is None or self._proc.poll() is not None or not self._loaded:
            self._loaded = False
            return
        deadline = time.monotonic() + self.limits.startup_s
        try:
            self._send_message({"op": "load", "source": self.source, "filename": self.filename, "gate": self.gate},
                               deadline)
            self._receive(deadline)
        except (TimeoutError, BrokenPipeError, EOFError, ConnectionError):
            self.close()  # the next call starts a fresh worker with the new code

    def layers(self) -> list[Layer]:
        """Every layer: the host's own and those the worker reported at start (empty before ``start()``)."""
        if not self._layers:
            return []
        lim = self.limits
        env = ", ".join(sorted(_environment(lim.threads)))
        host = [
            Layer("static gate", self.gate, "AST allow-list of gate.py" if self.gate else "switched off (tests only)"),
            Layer("clean environment", True, f"python -I, only {env}"),
        ]
        restricted = "torch, math, allow-listed np and builtins, fresh every call" if self.gate \
            else "off with the gate (full builtins)"
        after = [
            Layer("restricted globals", self.gate, restricted),
            Layer("deadline", True, f"SIGKILL of the process group after {lim.deadline_s:g} s"),
            Layer("output cap", True, f"reward code's stdout/stderr -> /dev/null; replies over "
                                      f"{lim.max_reply_bytes} bytes rejected"),
            Layer("result checks", True, f"reward float [N] on cpu, finite, |r| <= {lim.reward_bound:g}; "
                                         f"<= {lim.max_components} finite components [N]" if lim.check_values else
                  f"reward float [N] on cpu, <= {lim.max_components} components [N] (values unchecked)"),
        ]
        return host + self._layers + after

    @property
    def pid(self) -> int | None:
        """The worker's pid (its process group id too), or None when none runs."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def close(self) -> None:
        """Kill the worker's process group (grandchildren too) and close the pipes."""
        self._loaded = False
        if self._fds is not None:
            for fd in self._fds:
                os.close(fd)
            self._fds = None
        if self._shm is not None:
            try:
                self._shm.close()
            except BufferError:  # a view is still referenced (a traceback's frame): unmapped when it goes
                pass
            self._shm = None
        if self._proc is not None:
            try:
                os.killpg(self._proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self._proc.wait()
            self._proc = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    # ---- worker ---------------------------------------------------------------------------------------------------

    def _checked(self, source: str) -> str:
        if not isinstance(source, str):
            raise TypeError(f"Sandbox: source must be str, got {type(source).__name__}")
        if self.gate:
            gate_module.check_source(source)
        return source

    def _config(self) -> dict[str, Any]:
        limits = {**asdict(self.limits), "cpu_s": self.limits.batch_cpu_s}
        return {"source": self.source, "filename": self.filename, "gate": self.gate, "slices": self.slices,
                "limits": limits, "disable": sorted(self.disable), "threads": self.limits.threads,
                "builtins": sorted(gate_module.BUILTINS), "numpy": sorted(gate_module.NUMPY),
                "numpy_linalg": sorted(gate_module.NUMPY_LINALG)}

    def _spawn(self) -> None:
        request_r, request_w = os.pipe()
        reply_r, reply_w = os.pipe()
        for fd in (request_w, reply_w):
            try:
                import fcntl

                fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)  # a 4,096 x 39 batch in one write
            except OSError:
                pass
        shm_fd = _shared_batch_file()
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-B", WORKER, str(request_r), str(reply_w), str(shm_fd)],
                pass_fds=(request_r, reply_w) if shm_fd < 0 else (request_r, reply_w, shm_fd),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                env=_environment(self.limits.threads), cwd="/", start_new_session=True)
        finally:
            os.close(request_r)
            os.close(reply_w)
            if shm_fd >= 0:
                self._shm = mmap.mmap(shm_fd, SHARED_BATCH_BYTES)
                os.close(shm_fd)
        os.set_blocking(request_w, False)
        self._fds = (request_w, reply_r)

    def _send_message(self, message: dict[str, Any], deadline: float) -> None:
        blob = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        self._write([memoryview(_LEN.pack(len(blob))), memoryview(blob)], deadline)

    def _write(self, chunks: list[memoryview], deadline: float) -> None:
        assert self._fds is not None
        fd = self._fds[0]
        while chunks:
            try:
                written = os.writev(fd, chunks)
            except BlockingIOError:
                _wait(fd, deadline, write=True)
                continue
            while chunks and written >= len(chunks[0]):
                written -= len(chunks[0])
                chunks.pop(0)
            if chunks and written:
                chunks[0] = chunks[0][written:]

    def _receive(self, deadline: float) -> tuple[dict[str, Any], memoryview]:
        assert self._fds is not None
        fd = self._fds[1]
        total = _LEN.unpack(_read(fd, _LEN.size, deadline))[0]
        if total > self.limits.max_reply_bytes:
            self.close()
            raise SandboxError(f"the reward process sent a reply of {total} bytes, over the limit of "
                               f"{self.limits.max_reply_bytes} (max_reply_bytes)")
        frame = _read(fd, total, deadline)
        size = _REPLY_HEAD.unpack_from(frame)[0]
        start = _REPLY_HEAD.size
        if size > total - start:
            self.close()
            raise SandboxError("the reward process sent a malformed reply")
        header = json.loads(bytes(frame[start:start + size]))
        if not isinstance(header, dict):
            self.close()
            raise SandboxError("the reward process sent a malformed reply")
        return header, memoryview(frame)[start + size:]

    def _death(self) -> str:
        proc = self._proc
        status = "no process"
        if proc is not None:
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            code = proc.returncode
            if code is None:
                status = "stopped answering"
            elif code < 0:
                status = f"killed by {signal.Signals(-code).name}" + _SIGNAL_HINTS.get(-code, "")
            else:
                status = f"exit status {code}"
        self.close()
        return status

    # ---- checks ---------------------------------------------------------------------------------------------------

    def _check_inputs(self, s: np.ndarray, a: np.ndarray) -> None:
        if s.ndim != 2 or a.ndim != 2 or len(s) != len(a):
            raise ValueError(f"Sandbox: states {list(s.shape)} and actions {list(a.shape)} must be [N, D] and [N, A]")
        if self.state_dim is not None and s.shape[1] != self.state_dim:
            raise ValueError(f"Sandbox: states have {s.shape[1]} columns, {self.spec.name}'s state has "
                             f"{self.state_dim}")

    def _result(self, header: dict[str, Any], data: memoryview,
                n: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if "error" in header:
            raise SandboxError(_clip(str(header["error"])))
        items = header.get("items")
        if not isinstance(items, list) or not items:
            raise SandboxError("the reward process sent a malformed reply")
        if len(items) - 1 > self.limits.max_components:
            raise SandboxError(f"compute_reward returned {len(items) - 1} components, over the limit of "
                               f"{self.limits.max_components}")
        offset = 0
        arrays: dict[str | None, np.ndarray] = {}
        for item in items:
            key, array, offset = self._item(item, data, offset, n)
            arrays[key] = array
        reward = arrays.pop(None)
        if not self.limits.check_values:
            return reward, {str(k): v for k, v in arrays.items()}
        bad = np.flatnonzero(~np.isfinite(reward))
        if len(bad):
            raise SandboxError(f"compute_reward returned a non-finite reward ({reward[bad[0]]} at index {bad[0]}, "
                               f"{len(bad)} of {n})")
        over = np.flatnonzero(np.abs(reward) > self.limits.reward_bound)
        if len(over):
            raise SandboxError(f"compute_reward returned reward {reward[over[0]]:g} at index {over[0]}, over the "
                               f"bound {self.limits.reward_bound:g} (reward_bound)")
        components: dict[str, np.ndarray] = {}
        for key, array in arrays.items():
            assert key is not None
            bad = np.flatnonzero(~np.isfinite(array))
            if len(bad):
                raise SandboxError(f"compute_reward returned a non-finite component '{_clip(key, 80)}' "
                                   f"({array[bad[0]]} at index {bad[0]})")
            components[key] = array
        return reward, components

    def _item(self, item: Any, data: memoryview, offset: int, n: int) -> tuple[str | None, np.ndarray, int]:
        key, kind, dtype, shape, device, nbytes = item
        what = "reward" if key is None else f"component '{_clip(str(key), 80)}'"
        if kind != "Tensor":
            raise SandboxError(f"compute_reward returned {what} of type {_clip(str(kind), 80)}, expected a "
                               "torch.Tensor")
        if shape != [n]:
            raise SandboxError(f"compute_reward returned {what} of shape {shape}, expected [{n}]")
        if device != "cpu":
            raise SandboxError(f"compute_reward returned {what} on device {device}, expected cpu")
        if nbytes != 4 * n or offset + nbytes > len(data):
            raise SandboxError(f"compute_reward returned {what} of dtype {dtype}, expected a floating dtype")
        array = np.frombuffer(data, np.float32, n, offset).copy()
        return key, array, offset + nbytes


def _joined(parts: list[tuple[np.ndarray, dict[str, np.ndarray]]]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The results of consecutive calls as one; a component that some calls lack (per-sample code that adds a term
    only in some rows) is 0 there, as within a call."""
    names = list(dict.fromkeys(k for _, comps in parts for k in comps))
    reward = np.concatenate([r for r, _ in parts])
    return reward, {k: np.concatenate([c.get(k, np.zeros(len(r), np.float32)) for r, c in parts]) for k in names}


def _shared_batch_file() -> int:
    """A sealed memfd for batches up to ``SHARED_BATCH_BYTES`` (the worker can neither shrink nor grow it, so the
    host's mapping never faults); -1 where the kernel has none (every batch then goes over the pipe)."""
    try:
        fd = os.memfd_create("robot-rl-sandbox-batch", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    except (AttributeError, OSError):
        return -1
    try:
        os.ftruncate(fd, SHARED_BATCH_BYTES)
        import fcntl

        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
    except OSError:
        os.close(fd)
        return -1
    return fd


def _bytes(array: np.ndarray) -> memoryview:
    return memoryview(array.data).cast("B")


_SIGNAL_HINTS: dict[int, str] = {signal.SIGXCPU: " (CPU time limit)", signal.SIGXFSZ: " (file size limit)",
                 signal.SIGSYS: " (seccomp)"}


def _environment(threads: int) -> dict[str, str]:
    """The worker's whole environment: nothing inherited from the host (API keys stay there)."""
    t = str(threads)
    return {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "TMPDIR": "/tmp", "LANG": "C.UTF-8", "OMP_NUM_THREADS": t,
            "MKL_NUM_THREADS": t, "OPENBLAS_NUM_THREADS": t}


def _clip(text: str, limit: int = 500) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _wait(fd: int, deadline: float, write: bool = False) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    ready = select.select([], [fd], [], left)[1] if write else select.select([fd], [], [], left)[0]
    if not ready:
        raise TimeoutError


def _read(fd: int, size: int, deadline: float) -> bytearray:
    out = bytearray(size)
    view = memoryview(out)
    got = 0
    while got < size:
        _wait(fd, deadline)
        k = os.readv(fd, [view[got:]])
        if k == 0:
            raise EOFError
        got += k
    return out


def sandbox_layers(limits: SandboxLimits | None = None) -> list[Layer]:
    """Start a worker with every layer on, run one batch through it, and return the layers it reports: what this
    machine's kernel and privileges actually give (a layer the kernel refuses shows as inactive, with the reason)."""
    from robot_rl.core.specs import ActionSpec, ArraySpec

    spec = EnvSpec(name="probe/sandbox-v0", observations={"state": ArraySpec((2,))},
                   action=ActionSpec(1, "ee_delta", scale=(1.0,), offset=(0.0,)))
    source = "def compute_reward(obs, action):\n    r = obs['state'].sum(dim=-1)\n    return r, {'r': r}\n"
    with Sandbox(source, spec, limits) as box:
        box.start()
        reward, _ = box(np.ones((2, 2), np.float32), np.zeros((2, 1), np.float32))
        if reward.tolist() != [2.0, 2.0]:
            raise SandboxError(f"the probe batch returned {reward.tolist()}, expected [2.0, 2.0]")
        return box.layers()


def format_layers(layers: list[Layer]) -> str:
    """A plain-text table: layer, on/off, detail."""
    width = max((len(x.name) for x in layers), default=5)
    lines = [f"{'layer':<{width}}  active  detail"]
    lines += [f"{x.name:<{width}}  {'yes' if x.active else 'NO':<6}  {x.detail}" for x in layers]
    return "\n".join(lines)
