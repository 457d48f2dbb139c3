"""Control-loop latency of the ROS-free core: observation in -> command out, on the CPU.

Each tick at the control rate: a fresh ``sensor_msgs/JointState`` (rosbags class) is cached, then ``ControlLoop.tick``
builds the observation, runs the policy (IQL-sized actor: two 256-unit layers), gates the action and builds a
``JointTrajectory``. The latency is from caching the message to the command message in hand.

    .venv/bin/python benchmarks/control_latency.py [--ticks-10hz 100] [--ticks-50hz 500] [--threads 1]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from rosbags.typesys import Stores, get_typestore

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.nn.networks import GaussianActor
from robot_rl.nn.normalize import ObsNormalizer
from robot_rl.rl.policy import Policy
from robot_rl.ros import ControlConfig, ControlLoop, ObservationConfig, SafetyConfig, rosbags_types

JOINTS = tuple(f"joint{i}" for i in range(1, 8))


def make_loop(rate_hz: float) -> tuple[ControlLoop, object]:
    spec = EnvSpec("bench/arm7-v0", {"state": ArraySpec((14,))},
                   ActionSpec(7, "joint_position", scale=(1.0,) * 7, offset=(0.0,) * 7))
    policy = Policy(GaussianActor(14, 7, (256, 256)), ObsNormalizer.identity(14), spec)
    cfg = ControlConfig(ObservationConfig(JOINTS, ("position", "velocity")), control_rate_hz=rate_hz,
                        safety=SafetyConfig(lower=(-3.0,) * 7, upper=(3.0,) * 7, max_delta=(0.05,) * 7))
    ts = get_typestore(Stores.ROS2_JAZZY)
    loop = ControlLoop(policy, spec, cfg, rosbags_types(ts), clock=time.time)
    loop.start()
    return loop, ts


def run(rate_hz: float, ticks: int) -> np.ndarray:
    loop, ts = make_loop(rate_hz)
    t = ts.types
    rng = np.random.default_rng(0)
    period, latencies = 1.0 / rate_hz, []
    next_tick = time.perf_counter()
    for i in range(ticks + 10):
        next_tick += period
        now = time.time()
        stamp = t["builtin_interfaces/msg/Time"](sec=int(now), nanosec=int((now % 1) * 1e9))
        msg = t["sensor_msgs/msg/JointState"](
            header=t["std_msgs/msg/Header"](stamp=stamp, frame_id=""), name=list(JOINTS),
            position=rng.uniform(-0.5, 0.5, 7), velocity=np.zeros(7), effort=np.zeros(7))
        start = time.perf_counter()
        loop.cache.put("joint_states", msg)
        result = loop.tick()
        elapsed = time.perf_counter() - start
        if result.message is None:
            raise RuntimeError(f"tick refused: {result.reason}")
        if i >= 10:  # warm-up ticks excluded
            latencies.append(elapsed)
        time.sleep(max(0.0, next_tick - time.perf_counter()))
    return np.asarray(latencies) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks-10hz", type=int, default=100)
    parser.add_argument("--ticks-50hz", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a robot PC shares its cores)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.processor() or platform.machine()}"
          f", torch threads {args.threads}")
    print("| rate | ticks | median (ms) | p99 (ms) | max (ms) |\n| --- | --- | --- | --- | --- |")
    for rate, ticks in ((10.0, args.ticks_10hz), (50.0, args.ticks_50hz)):
        ms = run(rate, ticks)
        print(f"| {rate:.0f} Hz | {len(ms)} | {np.median(ms):.3f} | {np.percentile(ms, 99):.3f} | {ms.max():.3f} |")


if __name__ == "__main__":
    main()
