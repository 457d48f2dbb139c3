"""What ``robot-rl actor`` and ``robot-rl learner`` share: DDS flags, the stop signal, the robot's spec."""

from __future__ import annotations

import argparse
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path


def add_dds_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--domain", type=int, default=None, help="DDS domain id (default: ROS_DOMAIN_ID, else 0)")
    p.add_argument("--namespace", default="", help="ROS 2 namespace of the robot's topics")
    p.add_argument("--duration", type=float, default=0.0, help="stop after this many seconds (default: run until "
                   "SIGINT/SIGTERM)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's)")


def stop_signal(duration_s: float) -> Callable[[], bool]:
    """True once SIGINT/SIGTERM arrived or ``duration_s`` (> 0) passed: the loops finish their step and save."""
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    end = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    return lambda: bool(stopping) or time.monotonic() >= end


def load_spec(path: Path):  # noqa: ANN201 - EnvSpec, imported lazily
    """The policy's ``EnvSpec`` from a JSON file or a run folder (its newest checkpoint)."""
    from robot_rl.core import EnvSpec
    from robot_rl.nn.checkpoint import load_checkpoint

    if path.is_dir():
        return EnvSpec.from_json(load_checkpoint(path)[0]["env_spec"])
    if not path.is_file():
        raise ValueError(f"--spec {path}: no such file or run folder")
    try:
        return EnvSpec.from_json(path.read_text())
    except (ValueError, KeyError, TypeError, json.JSONDecodeError) as e:
        raise ValueError(f"--spec {path}: not an EnvSpec JSON ({e})") from None
