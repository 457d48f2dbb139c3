"""``EchoRobot``: a stand-in robot on DDS, for tests, benchmarks and checking the wiring without an arm.

It publishes ``JointState`` (reliable, as ``joint_state_publisher``) and an rgb8 ``Image`` per camera (sensor data)
at ``rate_hz``, stamped with wall time; a command moves its joints to the commanded positions at once
(``float64_array``, ``joint_trajectory``; a ``twist`` is counted but moves nothing); a reset request
(``std_msgs/Int64`` on ``reset``) puts it back at ``start`` and echoes the id on ``reset_done``; ``estop`` set
publishes a latched e-stop ``Bool`` at start. It records, per published joint state, the time until the first
command that followed it arrived: observation out -> command in.

    python -m robot_rl.ros.dds.echo_robot --joints shoulder,elbow --rate 50 --domain 7 --stats stats.json

runs until SIGTERM/SIGINT or ``--duration``, prints ``ready`` once its writers exist, and writes the statistics
(JSON) on exit.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.ros.convert import command_to_array
from robot_rl.ros.dds.msgs import COMMAND_MESSAGES, Bool, Header, Image, Int64, JointState, stamp
from robot_rl.ros.dds.participant import Participant
from robot_rl.ros.dds.qos import DEFAULT, LATCHED, SENSOR_DATA
from robot_rl.ros.dds.transport import DdsTopics


@dataclass
class EchoStats:
    published: int = 0
    commands: int = 0
    resets: int = 0
    last_command: list[float] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)
    """Per joint state answered: command arrival - the joint state's stamp (both wall time)."""


class EchoRobot:
    def __init__(self, joints: tuple[str, ...], start: tuple[float, ...] | None = None,
                 topics: DdsTopics | None = None, command_kind: str = "float64_array", rate_hz: float = 50.0,
                 image_size: int = 8, domain_id: int | None = None, config: str | None = None, namespace: str = "",
                 estop: bool | None = None, joint_state_qos: Any = DEFAULT):
        if command_kind not in COMMAND_MESSAGES:
            raise ValueError(f"unknown command kind '{command_kind}' (use one of {sorted(COMMAND_MESSAGES)})")
        self.joints = tuple(joints)
        self.start = np.asarray(start if start is not None else [0.0] * len(joints), dtype=np.float64)
        if self.start.shape != (len(self.joints),):
            raise ValueError(f"start pose has {self.start.size} values for {len(self.joints)} joints")
        self.position = self.start.copy()
        topics = topics or DdsTopics()
        self.topics, self.command_kind, self.rate_hz, self.image_size = topics, command_kind, rate_hz, image_size
        self.participant = p = Participant(domain_id, config, namespace)
        self.joint_writer = p.writer(topics.joint_states, JointState, joint_state_qos)
        self.image_writers = {c: p.writer(topics.image_topic(c), Image, SENSOR_DATA) for c in topics.cameras}
        self.command_reader = p.reader(topics.command, COMMAND_MESSAGES[command_kind], DEFAULT)
        self.reset_reader = p.reader(topics.reset, Int64, DEFAULT) if topics.reset else None
        self.reset_writer = p.writer(topics.reset_done, Int64, DEFAULT) if topics.reset else None
        self.estop_writer = p.writer(topics.estop, Bool, LATCHED) if topics.estop and estop is not None else None
        if self.estop_writer is not None:
            self.estop_writer.write(Bool(data=bool(estop)))
        self.stats = EchoStats()
        self._last_stamp: float | None = None
        self._last_reset: int | None = None

    def publish_state(self) -> None:
        now = time.time()
        header = Header(stamp=stamp(now))
        n = len(self.joints)
        self.joint_writer.write(JointState(header=header, name=list(self.joints), position=self.position.tolist(),
                                           velocity=[0.0] * n, effort=[0.0] * n))
        for writer in self.image_writers.values():
            s = self.image_size
            pixels = bytes([self.stats.published % 256]) * (s * s * 3)
            writer.write(Image(header=header, height=s, width=s, encoding="rgb8", is_bigendian=0, step=3 * s,
                               data=pixels))
        self.stats.published += 1
        self._last_stamp = now

    def handle_input(self) -> None:
        """Apply the commands and answer the reset requests that arrived."""
        for msg in Participant.take(self.command_reader):
            if self._last_stamp is not None:
                self.stats.latencies_s.append(time.time() - self._last_stamp)
                self._last_stamp = None  # only the first command after a joint state answers it
            self.stats.commands += 1
            values = command_to_array(msg, self.command_kind, self.joints)  # type: ignore[arg-type]
            self.stats.last_command = values.tolist()
            if self.command_kind != "twist":
                self.position = values
        if self.reset_reader is not None and self.reset_writer is not None:
            for req in Participant.take(self.reset_reader, 64):
                if int(req.data) != self._last_reset:  # a repeated request (its answer was lost) only gets answered
                    self._last_reset = int(req.data)
                    self.position = self.start.copy()
                    self.stats.resets += 1
                self.reset_writer.write(Int64(data=int(req.data)))

    def run(self, duration_s: float = float("inf"), stop: Any = None) -> EchoStats:
        """Publish at ``rate_hz`` and handle input between ticks until ``duration_s`` or ``stop()`` is true."""
        period = 1.0 / self.rate_hz
        end = time.monotonic() + duration_s
        next_tick = time.monotonic()
        while time.monotonic() < end and not (stop and stop()):
            self.publish_state()
            next_tick += period
            while (left := next_tick - time.monotonic()) > 0:
                self.participant.wait(left)
                self.handle_input()
            next_tick = max(next_tick, time.monotonic() - period)  # no catch-up burst after a stall
        return self.stats

    def close(self) -> None:
        self.participant.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robot_rl.ros.dds.echo_robot", description=__doc__.splitlines()[0])
    ap.add_argument("--joints", required=True, help="comma-separated joint names")
    ap.add_argument("--start", default="", help="comma-separated start pose (default zeros)")
    ap.add_argument("--cameras", default="", help="comma-separated camera names (rgb8 images)")
    ap.add_argument("--image-size", type=int, default=8)
    ap.add_argument("--command-kind", default="float64_array", choices=sorted(COMMAND_MESSAGES))
    ap.add_argument("--rate", type=float, default=50.0)
    ap.add_argument("--domain", type=int, default=None, help="DDS domain id (default ROS_DOMAIN_ID or 0)")
    ap.add_argument("--namespace", default="")
    ap.add_argument("--estop", choices=("true", "false"), default=None, help="publish a latched e-stop at start")
    ap.add_argument("--duration", type=float, default=float("inf"))
    ap.add_argument("--stats", type=Path, default=None, help="write the statistics (JSON) here on exit")
    args = ap.parse_args(argv)
    stopping = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    robot = EchoRobot(tuple(args.joints.split(",")),
                      tuple(float(x) for x in args.start.split(",")) if args.start else None,
                      DdsTopics(cameras=tuple(c for c in args.cameras.split(",") if c)), args.command_kind,
                      args.rate, args.image_size, args.domain, namespace=args.namespace,
                      estop=None if args.estop is None else args.estop == "true")
    print("ready", flush=True)
    try:
        stats = robot.run(args.duration, stop=lambda: bool(stopping))
    finally:
        robot.close()
    if args.stats:
        args.stats.write_text(json.dumps(asdict(stats)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
