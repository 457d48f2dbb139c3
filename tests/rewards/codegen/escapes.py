"""Attacks on the sandbox's process layers (issue 19): host reads, persistent writes, native code from a writable
place. Run with the gate off (the gate refuses every one of them first). Shared by the root tests and the run as a
user who is not root (``test_sandbox_escapes.py``), which imports this module in a separate interpreter.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import uuid
from pathlib import Path

import numpy as np

from robot_rl.rewards.codegen.sandbox import Sandbox, SandboxLimits
from tests.rewards.codegen.candidates import SPEC, batch

REPO = Path(__file__).resolve().parents[3]
HOST_READS = ("/etc/passwd", "/etc/hostname", "/proc/1/cmdline", "/proc/self/environ", "/proc/self/mounts",
              "/root/.bashrc", "/home")
"""World-readable or revealing host paths (those that exist on the machine are tried)."""
WRITABLE = ("/tmp", "/dev/shm", "/var/tmp", "/run/lock", "/var/lock", "/dev/mqueue")
"""World-writable places on a Linux host, where a file could outlive the worker."""


def read_attack(paths: list[str]) -> str:
    """Reward = the number of ``paths`` whose content (or listing) the code could get."""
    return f'''
import os
def compute_reward(obs, action):
    got = 0
    for p in {paths!r}:
        try:
            if os.path.isdir(p):
                os.listdir(p)
            else:
                open(p, "rb").read(64)
            got += 1
        except OSError:
            pass
    return torch.full((len(action),), float(got)), {{}}
'''


def write_attack(paths: list[str]) -> str:
    """Reward bit i = the write of ``paths[i]`` succeeded (inside the worker)."""
    return f'''
def compute_reward(obs, action):
    bits = 0
    for i, p in enumerate({paths!r}):
        try:
            with open(p, "w") as f:
                f.write("left by reward code")
            bits += 1 << i
        except OSError:
            pass
    return torch.full((len(action),), float(bits)), {{}}
'''


def native_attack(library: str) -> str:
    """Reward = 1 if the library loads from its own place, + 10 if a copy written to /tmp loads, + 100 if a copy
    in /dev/shm loads."""
    return f'''
import ctypes
def compute_reward(obs, action):
    data = open({library!r}, "rb").read()
    got = 0.0
    try:
        ctypes.CDLL({library!r})
        got += 1
    except OSError:
        pass
    for where, value in (("/tmp/dropped.so", 10), ("/dev/shm/dropped.so", 100)):
        try:
            with open(where, "wb") as f:
                f.write(data)
            ctypes.CDLL(where)
            got += value
        except OSError:
            pass
    return torch.full((len(action),), got), {{}}
'''


def small_library() -> str | None:
    """A small shared library of the host's C library (loadable by ctypes, under RLIMIT_FSIZE's 1 MiB)."""
    for pattern in ("/usr/lib/*-linux-gnu/libdl.so.2", "/usr/lib/*-linux-gnu/libutil.so.1", "/usr/lib64/libdl.so.2",
                    "/lib/*-linux-gnu/libdl.so.2"):
        for path in sorted(glob.glob(pattern)):
            if os.path.getsize(path) < 512 << 10:
                return os.path.realpath(path)
    return None


def run_all(out_dir: str) -> dict[str, object]:
    """Every attack in one sandbox (gate off, every process layer on). ``out_dir``: a writable directory of the
    host that the worker must not be able to write into either. Returns what happened, as JSON-able values."""
    reads = [p for p in HOST_READS if os.path.exists(p)]
    tag = uuid.uuid4().hex
    targets = [f"{d}/robot-rl-escape-{tag}" for d in WRITABLE if os.path.isdir(d)]
    targets += [f"{out_dir}/robot-rl-escape-{tag}", f"{REPO}/robot-rl-escape-{tag}",
                f"{os.path.dirname(np.__file__)}/robot-rl-escape-{tag}"]
    library = small_library()
    states, actions = batch(2)
    result: dict[str, object] = {"reads": reads, "targets": targets, "library": library}
    with Sandbox("def compute_reward(obs, action):\n    return action.sum(-1), {}\n", SPEC,
                 SandboxLimits(deadline_s=10.0, startup_s=120.0), gate=False) as box:
        result["layers"] = {x.name: [x.active, x.detail] for x in box.start()}
        box.load(read_attack(reads))
        result["read"] = float(box(states, actions)[0][0])
        box.load(write_attack(targets))
        result["write_bits"] = int(box(states, actions)[0][0])
        result["left_on_host"] = [t for t in targets if os.path.exists(t)]
        for t in result["left_on_host"]:  # type: ignore[union-attr]
            Path(t).unlink(missing_ok=True)  # /var/lock may be /run/lock
        if library:
            box.load(native_attack(library))
            result["native"] = float(box(states, actions)[0][0])
        result["host_leftovers"] = [p for p in ("/tmp/dropped.so", "/dev/shm/dropped.so") if os.path.exists(p)]
    return result


if __name__ == "__main__":
    print(json.dumps(run_all(sys.argv[1])))
