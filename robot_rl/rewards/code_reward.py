"""Reward code (``compute_reward(obs, action) -> (reward[N], components)``) run in a separate process.

The file is never imported or ``exec``'d in the caller's process: a child Python (``-I``: isolated mode, no user
site, no ``PYTHON*`` variables) loads it and evaluates batches sent over a pipe. The child runs in its own process
group with a minimal environment (no API keys), an address-space limit and a per-call timeout; on a timeout the
whole group is killed (grandchildren too). Issue 5's sandbox hardens this further (filesystem, network).

``obs`` maps the ``EnvSpec``'s named state slices (and ``"state"``, the whole vector) to float32 tensors
``[N, k]`` of the observation *after* the step; ``action`` is float32 ``[N, A]``.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import signal
import struct
import subprocess
import sys
from types import TracebackType
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec

_LEN = struct.Struct("<Q")
STARTUP_TIMEOUT = 120.0
"""Seconds the child may take to start (import torch, load the file) before its first call."""


class RewardCodeError(RuntimeError):
    """The reward code failed: did not load, raised, timed out, or returned the wrong thing (one line)."""


class CodeReward:
    """Evaluate the reward file ``path`` on batches, in a child process started on first use."""

    def __init__(self, path: str, spec: EnvSpec, timeout: float = 30.0, memory_mb: int = 4096) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise RewardCodeError(f"{path}: no such reward code file")
        with open(self.path, "rb") as f:
            self.sha256 = hashlib.sha256(f.read()).hexdigest()
        self.spec = spec
        self.timeout = timeout
        self.memory_mb = memory_mb
        self._proc: subprocess.Popen[bytes] | None = None

    def identity(self) -> dict[str, Any]:
        return {"labeler": "code", "model": os.path.basename(self.path), "path": self.path, "sha256": self.sha256}

    def __call__(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``states`` (after the step) ``[N, D]``, ``actions`` ``[N, A]`` -> (float32 ``[N]``, components)."""
        obs = {"state": np.asarray(states, np.float32)}
        for s in self.spec.state_slices:
            obs[s.name] = obs["state"][:, s.start:s.stop]
        reply = self._call({"obs": obs, "action": np.asarray(actions, np.float32)})
        if "error" in reply:
            raise RewardCodeError(f"{self.path}: {reply['error']}")
        reward = np.asarray(reply["reward"], np.float32)
        n = len(states)
        if reward.shape != (n,):
            raise RewardCodeError(f"{self.path}: compute_reward returned reward of shape {list(reward.shape)}, "
                                  f"expected [{n}]")
        return reward, {k: np.asarray(v, np.float32) for k, v in reply["components"].items()}

    def close(self) -> None:
        if self._proc is not None:
            _kill_group(self._proc)
            if self._proc.stderr is not None:
                self._proc.stderr.close()
            self._proc = None

    def __enter__(self) -> CodeReward:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _start(self) -> subprocess.Popen[bytes]:
        env = {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": "/tmp", "PYTHONHASHSEED": "0"}
        limit = self.memory_mb * 1024 * 1024

        def limits() -> None:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

        return subprocess.Popen([sys.executable, "-I", "-m", "robot_rl.rewards._code_worker", self.path],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                                start_new_session=True, preexec_fn=limits, cwd=os.path.dirname(self.path))

    def _call(self, request: dict[str, Any]) -> dict[str, Any]:
        starting = self._proc is None or self._proc.poll() is not None
        if starting:
            self._proc = self._start()
        proc = self._proc
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        blob = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            if starting:
                _receive(proc, STARTUP_TIMEOUT)  # the ready message
            proc.stdin.write(_LEN.pack(len(blob)) + blob)
            proc.stdin.flush()
            reply = _receive(proc, self.timeout)
        except TimeoutError:
            self.close()
            raise RewardCodeError(f"{self.path}: compute_reward did not return within {self.timeout:g} s "
                                  "(killed its process group)") from None
        except (BrokenPipeError, EOFError, OSError):
            err = _stderr_tail(proc)
            self.close()
            raise RewardCodeError(f"{self.path}: the reward process died ({err})") from None
        return reply


def _receive(proc: subprocess.Popen[bytes], timeout: float) -> dict[str, Any]:
    head = _read_exact(proc, _LEN.size, timeout)
    return dict(pickle.loads(_read_exact(proc, _LEN.unpack(head)[0], timeout)))


def _read_exact(proc: subprocess.Popen[bytes], n: int, timeout: float) -> bytes:
    import select

    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    out = bytearray()
    while len(out) < n:
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise TimeoutError
        chunk = os.read(fd, n - len(out))
        if not chunk:
            raise EOFError
        out += chunk
    return bytes(out)


def _stderr_tail(proc: subprocess.Popen[bytes]) -> str:
    _kill_group(proc)
    text = ""
    if proc.stderr is not None:
        text = proc.stderr.read().decode(errors="replace")
        proc.stderr.close()
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else f"exit status {proc.returncode}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()
