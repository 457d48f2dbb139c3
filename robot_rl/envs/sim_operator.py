"""A scripted teleop operator for a ``SimRobot``: the task's scripted expert, pushing a SpaceMouse in bursts.

It subscribes to the robot's ``joint_states`` (the state, see ``robot_rl.envs.sim_robot``), and publishes a
``geometry_msgs/Twist`` on ``teleop`` at ``rate_hz``: during an intervention window (``on_s`` seconds every
``on_s + off_s``), the expert's action for the newest state (``linear`` = action[0:3], ``angular.z`` = action[3]:
run the actor with ``--teleop twist --teleop-axes 0 1 2 5``); otherwise a zero twist (the input at rest: the
policy drives). Stands in for a person in tests and benchmarks.

    python -m robot_rl.envs.sim_operator --task metaworld/reach-v3 --domain 7 --on 1 --off 3 --stats op.json
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

from robot_rl.envs import task_expert
from robot_rl.ros.dds.msgs import JointState, Twist, Vector3
from robot_rl.ros.dds.participant import Participant
from robot_rl.ros.dds.qos import SENSOR_DATA


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robot_rl.envs.sim_operator", description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True)
    ap.add_argument("--domain", type=int, default=None)
    ap.add_argument("--namespace", default="")
    ap.add_argument("--topic", default="teleop")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--on", type=float, default=1.0, help="seconds of each intervention")
    ap.add_argument("--off", type=float, default=3.0, help="seconds between interventions")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before the first intervention")
    ap.add_argument("--until", type=float, default=float("inf"), help="seconds after which it never intervenes")
    ap.add_argument("--stats", type=Path, default=None)
    args = ap.parse_args(argv)
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    expert = task_expert(args.task)
    p = Participant(args.domain, None, args.namespace)
    states = p.reader("joint_states", JointState, SENSOR_DATA)
    writer = p.writer(args.topic, Twist, SENSOR_DATA)
    state: np.ndarray | None = None
    pushes = windows = 0
    start = time.monotonic()
    was_on = False
    print("ready", flush=True)
    try:
        while not stopping:
            for msg in Participant.take(states):
                state = np.asarray(msg.position, np.float64)
            phase = (time.monotonic() - start - args.delay) % (args.on + args.off)
            elapsed = time.monotonic() - start
            on = args.delay <= elapsed < args.until and phase < args.on and state is not None
            windows += int(on and not was_on)
            was_on = on
            twist = Twist()
            if on and state is not None:
                a = np.clip(np.asarray(expert(state), np.float64), -1, 1)
                twist = Twist(linear=Vector3(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                              angular=Vector3(z=float(a[3])))
                pushes += 1
            writer.write(twist)
            time.sleep(1.0 / args.rate)
    finally:
        if args.stats:
            args.stats.write_text(json.dumps({"pushes": pushes, "windows": windows}))
        p.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
