"""Write real ROS 2 bags (rosbag2 sqlite3 / mcap, via ``rosbags``) with known content, for the import tests."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

TS = get_typestore(Stores.ROS2_HUMBLE)
T0_NS = 1_700_000_000 * 1_000_000_000
"""Bag time 0 (ns since the epoch)."""
JOINTS = ("shoulder", "elbow", "wrist")

Message = tuple[str, str, float, Any]
"""(topic, msgtype, time in s from T0, message); the log time is the time too unless ``log`` overrides it."""


def _t(name: str) -> Any:
    return TS.types[name]


def header(t: float) -> Any:
    ns = T0_NS + round(t * 1e9)
    stamp = _t("builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return _t("std_msgs/msg/Header")(stamp=stamp, frame_id="base")


def joint_pos(t: float) -> np.ndarray:
    """Known joint positions at time t (linear in t, so interpolation is exact): shoulder, elbow, wrist."""
    return np.array([1.0 + 0.5 * t, -2.0 + 0.25 * t, 0.1 * t])


def joint_state(t: float, names: Sequence[str] = JOINTS, pos: np.ndarray | None = None) -> Any:
    """JointState at t with joints ``names`` (in that order); ``pos``: their positions (default: joint_pos(t))."""
    if pos is None:
        values = dict(zip(JOINTS, joint_pos(t), strict=True))
        pos = np.array([values[n] for n in names])
    position = np.asarray(pos, dtype=np.float64)
    return _t("sensor_msgs/msg/JointState")(header=header(t), name=list(names), position=position,
                                            velocity=-position, effort=np.zeros(0))


def image(t: float, rgb: np.ndarray, encoding: str = "rgb8", pad: int = 0) -> Any:
    """sensor_msgs/Image from an RGB ``[H, W, 3]`` array, encoded as ``encoding``, each row padded by ``pad`` bytes."""
    h, w, _ = rgb.shape
    pixels = {"rgb8": rgb, "bgr8": rgb[:, :, ::-1], "mono8": rgb[:, :, :1],
              "rgba8": np.concatenate([rgb, np.full((h, w, 1), 7, np.uint8)], axis=2),
              "bgra8": np.concatenate([rgb[:, :, ::-1], np.full((h, w, 1), 7, np.uint8)], axis=2),
              "16UC1": np.zeros((h, w, 2), np.uint8)}[encoding]
    row = pixels.reshape(h, -1)
    data = np.concatenate([row, np.full((h, pad), 99, np.uint8)], axis=1).reshape(-1)
    return _t("sensor_msgs/msg/Image")(header=header(t), height=h, width=w, encoding=encoding, is_bigendian=0,
                                       step=row.shape[1] + pad, data=np.ascontiguousarray(data))


def compressed(t: float, rgb: np.ndarray, fmt: str = "png") -> Any:
    ok, buf = cv2.imencode(f".{fmt}", rgb[:, :, ::-1])
    assert ok
    return _t("sensor_msgs/msg/CompressedImage")(header=header(t), format=fmt, data=buf.reshape(-1))


def frame_rgb(k: int, h: int = 8, w: int = 6) -> np.ndarray:
    """Known frame k: R = k, G = 100, B = 200 + column (so channel order and columns are checked)."""
    rgb = np.empty((h, w, 3), np.uint8)
    rgb[:, :, 0] = k % 256
    rgb[:, :, 1] = 100
    rgb[:, :, 2] = 200 + np.arange(w)[None, :]
    return rgb


def float_array(values: Sequence[float]) -> Any:
    layout = _t("std_msgs/msg/MultiArrayLayout")(dim=[], data_offset=0)
    return _t("std_msgs/msg/Float64MultiArray")(layout=layout, data=np.asarray(values, dtype=np.float64))


def string(text: str) -> Any:
    return _t("std_msgs/msg/String")(data=text)


def boolean(value: bool) -> Any:
    return _t("std_msgs/msg/Bool")(data=value)


def write_bag(path: Path, messages: Sequence[Message], storage: str = "sqlite3",
              log: dict[int, float] | None = None) -> Path:
    """Write ``messages`` (in the given order) to a rosbag2 directory; ``log`` overrides the log time of
    message i. Returns ``path``."""
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        connections: dict[str, Any] = {}
        for i, (topic, msgtype, t, msg) in enumerate(messages):
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=TS)
            when = (log or {}).get(i, t)
            writer.write(connections[topic], T0_NS + round(when * 1e9), TS.serialize_cdr(msg, msgtype))
    return path


def robot_messages(seconds: float = 2.0, joint_hz: float = 100, cam_hz: float = 30, cmd_hz: float | None = 10,
                   shape: tuple[int, int] = (8, 6), compressed_cam: bool = False, names: Sequence[str] = JOINTS,
                   skip_cam: tuple[float, float] | None = None) -> list[Message]:
    """Joints (``/joint_states``), one camera (``/cam``) showing frame_rgb(k), commands [k, -k] at k / cmd_hz
    (``/cmd``), time-ordered. ``skip_cam``: no camera frames in that time span."""
    out: list[Message] = []
    for k in range(int(round(seconds * joint_hz)) + 1):
        out.append(("/joint_states", "sensor_msgs/msg/JointState", k / joint_hz, joint_state(k / joint_hz, names)))
    for k in range(int(round(seconds * cam_hz)) + 1):
        t = k / cam_hz
        if skip_cam and skip_cam[0] <= t <= skip_cam[1]:
            continue
        rgb = frame_rgb(k, *shape)
        if compressed_cam:
            out.append(("/cam", "sensor_msgs/msg/CompressedImage", t, compressed(t, rgb)))
        else:
            out.append(("/cam", "sensor_msgs/msg/Image", t, image(t, rgb)))
    if cmd_hz:
        for k in range(int(round(seconds * cmd_hz)) + 1):
            out.append(("/cmd", "std_msgs/msg/Float64MultiArray", k / cmd_hz, float_array([k, -k])))
    return sorted(out, key=lambda m: m[2])
