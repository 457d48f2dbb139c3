"""``SimRobot``: a simulated task (MetaWorld, gym-MuJoCo) behind the DDS participant, as a robot would be.

It speaks the topics of ``robot_rl.ros.dds.transport.DdsTopics`` (what ``RosEnv`` over ``DdsTransport`` expects):

- ``joint_states`` (``sensor_msgs/JointState``, reliable): the task's ``"state"`` observation, one "joint" per value,
  named ``s0 .. s{D-1}`` (:func:`state_joint_names`), at ``rate_hz`` and right after every step;
- ``success`` (``std_msgs/Bool``, reliable): the simulator's success flag, published just before each joint state:
  what a success-detector node gives on a real robot (the actor's reward signal);
- ``cameras/<camera>/image_raw`` (``sensor_msgs/Image`` rgb8, sensor data): a rendered frame every
  ``image_period_s`` (rendering is slow here: ~0.2 s a frame on this VM);
- ``command`` in (``std_msgs/Float64MultiArray``, physical units): each command is one simulator step with the
  action it maps back to (``(command - offset) / scale``);
- ``reset`` / ``reset_done`` (``std_msgs/Int64``): a reset request resets the task (seed ``seed + resets``) and
  echoes the id.

    python -m robot_rl.envs.sim_robot --task metaworld/reach-v3 --domain 7 --rate 50 --stats robot.json

prints ``ready`` once it publishes, runs until SIGTERM/SIGINT or ``--duration``, and writes its statistics (JSON:
commands, resets, per-episode steps and success) on exit and at every reset.
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
import torch

from robot_rl.envs import make_env
from robot_rl.ros.dds import SUCCESS_TOPIC
from robot_rl.ros.dds.msgs import Bool, Float64MultiArray, Header, Image, Int64, JointState, stamp
from robot_rl.ros.dds.participant import Participant
from robot_rl.ros.dds.qos import DEFAULT, SENSOR_DATA, loopback_config
from robot_rl.ros.dds.transport import DdsTopics


def state_joint_names(dim: int) -> tuple[str, ...]:
    """The joint names a ``SimRobot`` gives the values of a ``dim``-value state: ``s0 .. s{dim-1}``."""
    return tuple(f"s{i}" for i in range(dim))


@dataclass
class SimRobotStats:
    commands: int = 0
    resets: int = 0
    images: int = 0
    episodes: list[dict[str, Any]] = field(default_factory=list)
    """Per episode (between resets): ``steps`` (commands applied) and ``success`` (any step succeeded)."""


class SimRobot:
    def __init__(self, task: str, domain_id: int | None = None, config: str | None = None, rate_hz: float = 50.0,
                 camera: str | None = None, image_size: int = 32, image_period_s: float = 1.0, seed: int = 0,
                 namespace: str = "", topics: DdsTopics | None = None, stats_path: Path | None = None):
        self.env = make_env(task, episode_length=10**9)  # episodes end by reset requests, as on a robot
        spec = self.env.spec
        self.joints = state_joint_names(spec.state_dim)
        self.scale = np.asarray(spec.action.scale, np.float64)
        self.offset = np.asarray(spec.action.offset, np.float64)
        self.topics = topics = topics or DdsTopics(cameras=(camera,) if camera else ())
        self.rate_hz, self.camera, self.image_size, self.image_period_s = rate_hz, camera, image_size, image_period_s
        self.seed, self.stats_path = seed, stats_path
        self.participant = p = Participant(domain_id, config, namespace)
        self.joint_writer = p.writer(topics.joint_states, JointState, DEFAULT)
        self.success_writer = p.writer(SUCCESS_TOPIC, Bool, DEFAULT)
        self.image_writer = p.writer(topics.image_topic(camera), Image, SENSOR_DATA) if camera else None
        self.command_reader = p.reader(topics.command, Float64MultiArray, DEFAULT)
        self.reset_reader = p.reader(topics.reset or "reset", Int64, DEFAULT)
        self.reset_writer = p.writer(topics.reset_done, Int64, DEFAULT)
        self.stats = SimRobotStats()
        self._last_reset: int | None = None
        self._last_image = -float("inf")
        self._reset(seed)
        if camera:
            self._render()  # the first render initializes the GL context (seconds): before "ready"

    def _reset(self, seed: int) -> None:
        obs, _ = self.env.reset(seed=seed)
        self.state = obs["state"][0].double().numpy()
        self.success = False
        self.sim_state: Any = None
        self.stats.episodes.append({"seed": seed, "steps": 0, "success": False})

    def _render(self) -> None:
        if self.image_writer is None or self.sim_state is None or self.camera is None:
            return
        frame = self.env.render(self.sim_state, self.camera, self.image_size, self.image_size)[0].numpy()
        s = self.image_size
        self.image_writer.write(Image(header=Header(stamp=stamp(time.time())), height=s, width=s, encoding="rgb8",
                                      is_bigendian=0, step=3 * s, data=frame.tobytes()))
        self.stats.images += 1
        self._last_image = time.monotonic()

    def publish_state(self) -> None:
        self.success_writer.write(Bool(data=bool(self.success)))
        n = len(self.joints)
        self.joint_writer.write(JointState(header=Header(stamp=stamp(time.time())), name=list(self.joints),
                                           position=self.state.tolist(), velocity=[0.0] * n, effort=[0.0] * n))

    def step(self, command: np.ndarray) -> None:
        action = np.clip((command - self.offset) / self.scale, -1.0, 1.0)
        res = self.env.step(torch.as_tensor(action, dtype=torch.float32)[None])
        self.state = res.obs["state"][0].double().numpy()
        self.success = bool(res.info["success"][0])
        self.sim_state = res.info.get("sim_state")
        episode = self.stats.episodes[-1]
        episode["steps"] += 1
        episode["success"] = episode["success"] or self.success
        self.stats.commands += 1

    def handle_input(self) -> None:
        stepped = False
        for msg in Participant.take(self.command_reader):
            values = np.asarray(msg.data, np.float64)
            if values.shape == self.scale.shape and np.all(np.isfinite(values)):
                self.step(values)
                stepped = True
        for req in Participant.take(self.reset_reader, 64):
            if int(req.data) != self._last_reset:  # a repeated request (its answer was lost) is only answered
                self._last_reset = int(req.data)
                self.stats.resets += 1
                self._reset(self.seed + self.stats.resets)
                self.write_stats()
                stepped = True
            self.reset_writer.write(Int64(data=int(req.data)))
        if stepped:
            self.publish_state()

    def run(self, duration_s: float = float("inf"), stop: Any = None) -> SimRobotStats:
        period = 1.0 / self.rate_hz
        end = time.monotonic() + duration_s
        next_tick = time.monotonic()
        while time.monotonic() < end and not (stop and stop()):
            self.publish_state()
            if self.camera and time.monotonic() - self._last_image >= self.image_period_s:
                self._render()
            next_tick += period
            while (left := next_tick - time.monotonic()) > 0:
                self.participant.wait(left)
                self.handle_input()
            next_tick = max(next_tick, time.monotonic() - period)
        return self.stats

    def write_stats(self) -> None:
        if self.stats_path is not None:
            tmp = self.stats_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(asdict(self.stats)))
            tmp.replace(self.stats_path)

    def close(self) -> None:
        self.participant.close()
        self.env.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m robot_rl.envs.sim_robot", description=__doc__.splitlines()[0])
    ap.add_argument("--task", required=True, help="a simulated task, e.g. metaworld/reach-v3")
    ap.add_argument("--rate", type=float, default=50.0, help="joint-state publishing rate (Hz)")
    ap.add_argument("--camera", default=None, help="publish this camera's frames (rgb8)")
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--image-period", type=float, default=1.0, help="seconds between frames")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--domain", type=int, default=None, help="DDS domain id (default ROS_DOMAIN_ID or 0)")
    ap.add_argument("--namespace", default="")
    ap.add_argument("--loopback", action="store_true", help="keep DDS traffic on 127.0.0.1 (loopback_config)")
    ap.add_argument("--duration", type=float, default=float("inf"))
    ap.add_argument("--stats", type=Path, default=None, help="write the statistics (JSON) here")
    args = ap.parse_args(argv)
    stopping: list[bool] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.append(True))
    robot = SimRobot(args.task, args.domain, loopback_config() if args.loopback else None, args.rate, args.camera,
                     args.image_size, args.image_period, args.seed, args.namespace, stats_path=args.stats)
    print("ready", flush=True)
    try:
        robot.run(args.duration, stop=lambda: bool(stopping))
    finally:
        robot.write_stats()
        robot.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
