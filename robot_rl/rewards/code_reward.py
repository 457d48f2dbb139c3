"""Reward code (``compute_reward(obs, action) -> (reward[N], components)``) from a file, run in the sandbox.

The file is never imported or ``exec``'d in the caller's process: ``codegen.sandbox.Sandbox`` runs it in a worker
process (clean environment, own network namespace, rlimits, nobody when the caller is root, seccomp, a per-batch
deadline with a process-group kill, host-side checks of the result). The file is read here and sent to the worker.

``obs`` maps the ``EnvSpec``'s named state slices (and ``"state"``, the whole vector) to float32 tensors
``[N, k]`` of the observation *after* the step; ``action`` is float32 ``[N, A]``.

A file you point ``relabel --source code:FILE.py`` at is your own code: by default it runs as written (imports and
module-level code allowed) behind the process layers only. ``gate=True`` also applies the static gate
(``codegen.gate``) that LLM-written candidates go through.
"""

from __future__ import annotations

import hashlib
import os
from types import TracebackType
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.rewards.codegen.errors import RewardCodeError
from robot_rl.rewards.codegen.sandbox import Sandbox, SandboxLimits

__all__ = ["STARTUP_TIMEOUT", "CodeReward", "RewardCodeError"]

STARTUP_TIMEOUT = 120.0
"""Seconds the worker may take to start (import torch, load the file) before its first call."""


class CodeReward:
    """Evaluate the reward file ``path`` on batches, in a sandbox worker started on first use."""

    def __init__(self, path: str, spec: EnvSpec, timeout: float = 30.0, memory_mb: int = 4096, *,
                 gate: bool = False) -> None:
        self.path = os.path.abspath(path)
        if not os.path.isfile(self.path):
            raise RewardCodeError(f"{path}: no such reward code file")
        with open(self.path, "rb") as f:
            raw = f.read()
        self.sha256 = hashlib.sha256(raw).hexdigest()
        try:
            source = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RewardCodeError(f"{path}: not UTF-8 text (byte {e.start})") from None
        limits = SandboxLimits(deadline_s=timeout, startup_s=STARTUP_TIMEOUT, memory_mb=memory_mb, check_values=False)
        try:
            self._sandbox = Sandbox(source, spec, limits, gate=gate, filename=self.path)
        except RewardCodeError as e:
            raise type(e)(f"{self.path}: {e}") from None

    def identity(self) -> dict[str, Any]:
        return {"labeler": "code", "model": os.path.basename(self.path), "path": self.path, "sha256": self.sha256}

    def __call__(self, states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """``states`` (after the step) ``[N, D]``, ``actions`` ``[N, A]`` -> (float32 ``[N]``, components)."""
        try:
            return self._sandbox(states, actions)
        except RewardCodeError as e:
            raise type(e)(f"{self.path}: {e}") from None

    def close(self) -> None:
        self._sandbox.close()

    def __enter__(self) -> CodeReward:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
