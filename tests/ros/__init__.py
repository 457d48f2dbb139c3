"""Tests of robot_rl.ros and RosEnv; helpers shared by them: rosbags messages and a fake arm."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from rosbags.typesys import Stores, get_typestore

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec
from robot_rl.ros.convert import command_to_array, sec_to_stamp

TS = get_typestore(Stores.ROS2_JAZZY)
T = TS.types
JOINTS = ("shoulder", "elbow")
SPEC = EnvSpec(name="ros/toy-arm-v0", observations={"state": ArraySpec((2,))},
               action=ActionSpec(2, "joint_position", scale=(1.0, 1.0), offset=(0.0, 0.0), names=JOINTS),
               max_episode_steps=5, control_hz=10.0, task_text="move both joints to zero")


def header(t: float, frame: str = "") -> Any:
    sec, nsec = sec_to_stamp(t)
    return T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nsec), frame_id=frame)


def joint_state(t: float, positions: Any, names: tuple[str, ...] = JOINTS) -> Any:
    p = np.asarray(positions, dtype=np.float64)
    return T["sensor_msgs/msg/JointState"](header=header(t), name=list(names), position=p,
                                           velocity=np.zeros_like(p), effort=np.zeros_like(p))


def image(t: float, h: int = 8, w: int = 8, encoding: str = "rgb8", value: int = 100) -> Any:
    c = 1 if encoding == "mono8" else 3
    data = np.full(h * w * c, value, dtype=np.uint8)
    return T["sensor_msgs/msg/Image"](header=header(t), height=h, width=w, encoding=encoding, is_bigendian=0,
                                      step=w * c, data=data)


class FakeArm:
    """A 2-joint arm that reaches each commanded position in one period; publishes rosbags messages."""

    def __init__(self, cameras: tuple[str, ...] = (), start: tuple[float, ...] = (0.5, -0.5)):
        self.t = 100.0
        self.start = np.asarray(start, dtype=np.float64)
        self.position = self.start.copy()
        self.cameras = cameras
        self.published: list[Any] = []
        self.nan_joints = False
        self.camera_delay = 0.0

    def now(self) -> float:
        return self.t

    def spin(self, duration_s: float) -> list[tuple[str, Any]]:
        self.t += duration_s
        pos = np.full(2, np.nan) if self.nan_joints else self.position
        out: list[tuple[str, Any]] = [("joint_states", joint_state(self.t, pos))]
        out += [(f"image/{c}", image(self.t - self.camera_delay)) for c in self.cameras]
        return out

    def publish(self, msg: Any) -> None:
        self.published.append(msg)
        self.position = command_to_array(msg, "joint_trajectory", JOINTS)

    def reset(self, seed: int | None) -> None:
        self.position = self.start.copy()
        self.t = 100.0


def train_toy_policy(folder: Path) -> Path:
    """A real checkpoint: BC on a toy dataset whose actions move the joints halfway to zero."""
    from robot_rl.data import DatasetWriter, Episode
    from robot_rl.rl.iql import IQLConfig
    from robot_rl.rl.train import TrainConfig, train

    rng = np.random.default_rng(0)
    data = folder / "toy.h5"
    with DatasetWriter(data, SPEC, source="test") as w:
        for _ in range(20):
            s = rng.uniform(-1, 1, (5, 2)).astype(np.float32)
            a = (0.5 * s).astype(np.float32)
            dones = np.zeros(5, bool)
            dones[-1] = True
            w.add_episode(Episode(states=s, actions=a, rewards=np.zeros(5, np.float32), next_states=a.copy(),
                                  terminals=np.zeros(5, bool), dones=dones))
    run = folder / "run"
    train(TrainConfig(dataset=str(data), algo="bc", steps=60, log_every=30, checkpoint_every=60, device="cpu",
                      iql=IQLConfig(hidden=(16, 16), batch_size=32)), run)
    return run
