"""Processes of the learning-on-the-robot tests, on loopback DDS, with their logs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robot_rl.ros.dds.qos import loopback_config

ROOT = Path(__file__).resolve().parents[2]
TASK = "metaworld/reach-v3"
STEPS = 40


class Procs:
    """The processes of one test, their logs in ``folder``; ``close`` ends what is left (by pid)."""

    def __init__(self, folder: Path, domain: int):
        self.folder, self.domain, self.procs = folder, domain, {}
        self.env = {**os.environ, "PYTHONPATH": str(ROOT), "CYCLONEDDS_URI": loopback_config(), "MUJOCO_GL": "egl",
                    "OMP_NUM_THREADS": "1"}

    def start(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"{name}.log", "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen([sys.executable, *args, "--domain", str(self.domain)], env=self.env, stdout=log,
                                stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout_s: float = 30) -> int:
        proc = self.procs.pop(name)
        proc.send_signal(sig)
        return proc.wait(timeout=timeout_s)

    def close(self) -> None:
        for proc in self.procs.values():
            proc.kill()
            proc.wait(timeout=10)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.folder.glob("*.log"))


def wait_for(what: str, cond: Callable[[], bool], timeout_s: float, procs: Procs) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
