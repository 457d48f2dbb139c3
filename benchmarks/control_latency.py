"""Control-loop latency of the ROS-free core: observation in -> command out, on the CPU; and over DDS.

Each tick at the control rate: a fresh ``sensor_msgs/JointState`` (rosbags class) is cached, then ``ControlLoop.tick``
builds the observation, runs the policy (IQL-sized actor: two 256-unit layers), gates the action and builds a
``JointTrajectory``. The latency is from caching the message to the command message in hand.

``--dds`` adds the same loop over Cyclone DDS between two processes on loopback (``robot_rl.ros.dds``): an
``EchoRobot`` process publishes ``JointState`` at the rate; this process takes each one as it arrives
(``DdsTransport.poll``), ticks and publishes the command; the robot measures from the joint state's stamp to the
command's arrival (both wall time): serialization, two DDS hops, deserialization, the tick.

``--weights`` measures the weight push of ``robot-rl learner`` -> ``robot-rl actor`` over DDS
(``robot_rl.ros.dds.learning``, latched topic): from the start of serializing the actor's weights in this process
to the policy rebuilt from them in a receiving process (both wall time, one machine), for an IQL-sized actor (two
256-unit layers) and a large one (three 1024-unit layers).

    .venv/bin/python benchmarks/control_latency.py [--ticks-10hz 100] [--ticks-50hz 500] [--threads 1] [--dds]
    PYTHONPATH=. .venv/bin/python benchmarks/control_latency.py --ticks-10hz 20 --ticks-50hz 50 --weights
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rosbags.typesys import Stores, get_typestore

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.nn.networks import GaussianActor
from robot_rl.nn.normalize import ObsNormalizer
from robot_rl.rl.policy import Policy
from robot_rl.ros import ControlConfig, ControlLoop, ObservationConfig, SafetyConfig, rosbags_types

JOINTS = tuple(f"joint{i}" for i in range(1, 8))


def make_loop(rate_hz: float, types: object = None) -> tuple[ControlLoop, object]:
    spec = EnvSpec("bench/arm7-v0", {"state": ArraySpec((14,))},
                   ActionSpec(7, "joint_position", scale=(1.0,) * 7, offset=(0.0,) * 7))
    policy = Policy(GaussianActor(14, 7, (256, 256)), ObsNormalizer.identity(14), spec)
    cfg = ControlConfig(ObservationConfig(JOINTS, ("position", "velocity")), control_rate_hz=rate_hz,
                        safety=SafetyConfig(lower=(-3.0,) * 7, upper=(3.0,) * 7, max_delta=(0.05,) * 7))
    ts = get_typestore(Stores.ROS2_JAZZY)
    loop = ControlLoop(policy, spec, cfg, types or rosbags_types(ts), clock=time.time)  # type: ignore[arg-type]
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


def run_dds(rate_hz: float, ticks: int, domain: int = 77) -> tuple[np.ndarray, np.ndarray]:
    """Observation -> command over DDS (robot-measured) and the tick alone (policy side), ms, warm-up excluded."""
    from robot_rl.ros.dds.msgs import dds_types
    from robot_rl.ros.dds.qos import loopback_config
    from robot_rl.ros.dds.transport import DdsTopics, DdsTransport

    os.environ["CYCLONEDDS_URI"] = loopback_config()
    loop, _ = make_loop(rate_hz, dds_types())
    with tempfile.TemporaryDirectory() as tmp:
        stats_file = Path(tmp) / "robot.json"
        robot = subprocess.Popen(
            [sys.executable, "-m", "robot_rl.ros.dds.echo_robot", "--joints", ",".join(JOINTS), "--rate", str(rate_hz),
             "--command-kind", "joint_trajectory", "--domain", str(domain), "--stats", str(stats_file)],
            stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert robot.stdout is not None and robot.stdout.readline().strip() == "ready"
        transport = DdsTransport(DdsTopics(reset=None, estop=None), "joint_trajectory", domain_id=domain)
        ticks_ms = []
        try:
            transport.wait_for_robot(30)
            while transport.published < ticks + 10:
                fresh = [m for k, m in transport.poll(2.0) if k == "joint_states"]
                if not fresh:
                    raise RuntimeError("no joint_states from the robot process for 2 s")
                loop.cache.put("joint_states", fresh[-1])
                result = loop.tick()
                if result.message is None:
                    raise RuntimeError(f"tick refused: {result.reason}")
                transport.publish(result.message)
                ticks_ms.append(result.latency_s * 1e3)
            time.sleep(0.2)  # the last command's arrival
        finally:
            transport.close()
            robot.terminate()
            robot.wait(timeout=30)
        stats = json.loads(stats_file.read_text())
    return np.asarray(stats["latencies_s"][10:]) * 1e3, np.asarray(ticks_ms[10:])


def weights_receiver(domain: int, out: Path, count: int) -> None:
    """Child process of ``--weights``: an actor's end of the link; per version, when the weights arrived and when the
    policy was rebuilt from them (wall time), written to ``out``."""
    from robot_rl.apps.policy_weights import decode_weights
    from robot_rl.ros.dds.learning import ActorLink, RowLayout, Spool
    from robot_rl.ros.dds.participant import Participant

    p = Participant(domain)
    with tempfile.TemporaryDirectory() as tmp:
        link = ActorLink(p, Spool(Path(tmp), RowLayout(39, 4), "bench"))
        print("ready", flush=True)
        got: dict[int, tuple[float, float]] = {}
        deadline = time.monotonic() + 120
        while len(got) < count and time.monotonic() < deadline:
            p.wait(0.5)
            msg = link.pump()
            if msg is not None:
                arrived = time.time()
                version, _, _ = decode_weights(bytes(msg.data))
                got[version] = (arrived, time.time())
    p.close()
    out.write_text(json.dumps({str(k): v for k, v in got.items()}))


def run_weights(hidden: tuple[int, ...], pushes: int, period_s: float, domain: int = 78) -> dict[str, float]:
    """Weight push over DDS, learner -> actor process: from the start of serializing the actor's weights to the
    policy rebuilt on the actor side (decode + ``policy_from_payload``); ms."""
    import dataclasses

    from robot_rl.apps.policy_weights import encode_weights
    from robot_rl.rl.iql import IQL, IQLConfig
    from robot_rl.ros.dds.learning import LearnerLink, RowLayout
    from robot_rl.ros.dds.participant import Participant
    from robot_rl.ros.dds.qos import loopback_config

    os.environ["CYCLONEDDS_URI"] = loopback_config()
    spec = EnvSpec("bench/reach-v0", {"state": ArraySpec((39,))}, ActionSpec(4, "ee_delta", (0.01,) * 4, (0.0,) * 4))
    agent = IQL(39, 4, IQLConfig(hidden=hidden))
    base = {"algo": "iql", "config": {"obs": "state", "iql": {"hidden": list(hidden)}}, "env_spec": spec.to_json(),
            "normalizer": dataclasses.asdict(ObsNormalizer.identity(39))}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "recv.json"
        child = subprocess.Popen([sys.executable, __file__, "--weights-receiver", str(out), "--domain", str(domain),
                                  "--pushes", str(pushes)], stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        p = Participant(domain)
        link = LearnerLink(p, Path(tmp) / "received", RowLayout(39, 4))
        Participant.wait_for_readers(link.weights, 30, "weights")
        sent, size = {}, 0
        for version in range(pushes):
            sent[version] = time.time()
            data = encode_weights(agent, base, version, version)
            size = len(data)
            link.publish_weights(version, data)
            time.sleep(period_s)
        child.wait(timeout=120)
        p.close()
        got = {int(k): v for k, v in json.loads(out.read_text()).items()}
    arrive = np.array([got[v][0] - sent[v] for v in sorted(got) if v > 0]) * 1e3  # version 0: warm-up
    ready = np.array([got[v][1] - sent[v] for v in sorted(got) if v > 0]) * 1e3
    return {"size_kb": size / 1024, "received": len(got), "arrive_median": float(np.median(arrive)),
            "ready_median": float(np.median(ready)), "ready_p99": float(np.percentile(ready, 99)),
            "ready_max": float(ready.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks-10hz", type=int, default=100)
    parser.add_argument("--ticks-50hz", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (a robot PC shares its cores)")
    parser.add_argument("--dds", action="store_true", help="also measure over Cyclone DDS between two processes")
    parser.add_argument("--weights", action="store_true",
                        help="also measure the weight push learner -> actor over DDS (robot-rl learner/actor)")
    parser.add_argument("--pushes", type=int, default=40, help="weight pushes per actor size (--weights)")
    parser.add_argument("--weights-receiver", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--domain", type=int, default=78, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.weights_receiver is not None:
        weights_receiver(args.domain, args.weights_receiver, args.pushes)
        return
    print(f"python {platform.python_version()}, torch {torch.__version__}, {platform.processor() or platform.machine()}"
          f", torch threads {args.threads}")
    print("| rate | ticks | median (ms) | p99 (ms) | max (ms) |\n| --- | --- | --- | --- | --- |")
    for rate, ticks in ((10.0, args.ticks_10hz), (50.0, args.ticks_50hz)):
        ms = run(rate, ticks)
        print(f"| {rate:.0f} Hz | {len(ms)} | {np.median(ms):.3f} | {np.percentile(ms, 99):.3f} | {ms.max():.3f} |")
    if args.dds:
        print("\nover DDS (loopback, two processes): joint state stamp -> command at the robot; tick alone")
        print("| rate | commands | median (ms) | p99 (ms) | max (ms) | tick median (ms) | ratio DDS/tick (median) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for rate, ticks in ((10.0, args.ticks_10hz), (50.0, args.ticks_50hz)):
            ms, tick = run_dds(rate, ticks)
            print(f"| {rate:.0f} Hz | {len(ms)} | {np.median(ms):.3f} | {np.percentile(ms, 99):.3f} | {ms.max():.3f} "
                  f"| {np.median(tick):.3f} | {np.median(ms) / np.median(tick):.1f} |")
    if args.weights:
        print("\nweight push over DDS (loopback, two processes): serialize -> policy rebuilt at the actor, "
              "0.25 s apart")
        print("| actor | message (KB) | pushes | arrived, median (ms) | policy ready, median (ms) | p99 (ms) "
              "| max (ms) |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for hidden in ((256, 256), (1024, 1024, 1024)):
            r = run_weights(hidden, args.pushes, 0.25)
            print(f"| {'x'.join(map(str, hidden))} | {r['size_kb']:.0f} | {r['received'] - 1} "
                  f"| {r['arrive_median']:.2f} | {r['ready_median']:.2f} | {r['ready_p99']:.2f} "
                  f"| {r['ready_max']:.2f} |")


if __name__ == "__main__":
    main()
