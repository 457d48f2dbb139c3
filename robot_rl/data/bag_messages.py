"""Decoding of the ROS 2 messages that ``bag_import`` reads: stamps, joint states, images, commands, markers.

Each function takes a message deserialized by ``rosbags`` and raises ``ValueError`` (one line, no location;
``bag_import`` adds the bag, topic and time) when the message cannot be used.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

JOINT_TYPES = ("sensor_msgs/msg/JointState",)
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
ACTION_TYPES = ("std_msgs/msg/Float64MultiArray", "trajectory_msgs/msg/JointTrajectory",
                "geometry_msgs/msg/Twist", "geometry_msgs/msg/TwistStamped")
MARKER_TYPES = ("std_msgs/msg/String", "std_msgs/msg/Bool")
TYPES_BY_ROLE = {"joints": JOINT_TYPES, "camera": IMAGE_TYPES, "actions": ACTION_TYPES, "marker": MARKER_TYPES}

_CHANNELS = {"rgb8": 3, "bgr8": 3, "mono8": 1, "rgba8": 4, "bgra8": 4}


def header_ns(msg: Any) -> int | None:
    """The message's header stamp in ns; None for a message without a header (or with a zero stamp)."""
    header = getattr(msg, "header", None)
    if header is None:
        return None
    ns = int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)
    return ns if ns > 0 else None


def joint_values(msg: Any, names: tuple[str, ...], velocity: bool, cache: dict[tuple[str, ...], np.ndarray]
                 ) -> np.ndarray:
    """JointState -> float64 ``[positions (, velocities)]`` ordered as ``names`` (empty: the message's order)."""
    order = tuple(msg.name)
    index = cache.get(order)
    if index is None:
        if names:
            missing = [n for n in names if n not in order]
            if missing:
                raise ValueError(f"joint '{missing[0]}' not in the message (it has {', '.join(order) or 'none'})")
            index = np.array([order.index(n) for n in names], dtype=np.int64)
        else:
            index = np.arange(len(order))
        cache[order] = index
    position = np.asarray(msg.position, dtype=np.float64)
    if len(position) != len(order) or (len(order) == 0 and len(names) == 0):
        raise ValueError(f"{len(position)} positions for {len(order)} joint names")
    parts = [position[index]]
    if velocity:
        vel = np.asarray(msg.velocity, dtype=np.float64)
        if len(vel) != len(order):
            raise ValueError(f"{len(vel)} velocities for {len(order)} joint names (joints.velocity is true)")
        parts.append(vel[index])
    return np.concatenate(parts)


def image_rgb(msg: Any, msgtype: str) -> np.ndarray:
    """Image (rgb8, bgr8, mono8, rgba8, bgra8; row padding allowed) or CompressedImage -> uint8 ``[H, W, 3]`` RGB."""
    if msgtype.endswith("CompressedImage"):
        decoded = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if decoded is None:
            raise ValueError(f"cannot decode the compressed image (format {msg.format!r})")
        return np.ascontiguousarray(decoded[:, :, ::-1])
    encoding = str(msg.encoding).lower()
    channels = _CHANNELS.get(encoding)
    if channels is None:
        raise ValueError(f"image encoding {msg.encoding!r} is not supported (use {', '.join(_CHANNELS)})")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if h == 0 or w == 0 or step < w * channels or data.size < h * step:
        raise ValueError(f"image {w}x{h} {encoding} with step {step} has {data.size} bytes, expected {h * step}")
    pixels = data[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)
    if encoding == "mono8":
        return np.repeat(pixels, 3, axis=2)
    if encoding == "rgba8":
        return np.ascontiguousarray(pixels[:, :, :3])
    return np.ascontiguousarray(pixels[:, :, 2::-1])  # bgr8, bgra8


def command_values(msg: Any, msgtype: str, names: tuple[str, ...]) -> np.ndarray:
    """Command -> float64 vector: Float64MultiArray ``data``; JointTrajectory first point's positions (ordered
    as ``names`` when given); Twist and TwistStamped ``[linear xyz, angular xyz]``."""
    if msgtype.endswith("Float64MultiArray"):
        return np.asarray(msg.data, dtype=np.float64).copy()
    if msgtype.endswith(("Twist", "TwistStamped")):
        twist = msg.twist if msgtype.endswith("TwistStamped") else msg
        lin, ang = twist.linear, twist.angular
        return np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=np.float64)
    if not msg.points:
        raise ValueError("JointTrajectory has no points")
    positions = np.asarray(msg.points[0].positions, dtype=np.float64)
    order = list(msg.joint_names)
    if names and order:
        missing = [n for n in names if n not in order]
        if missing:
            raise ValueError(f"joint '{missing[0]}' not in the trajectory (it has {', '.join(order)})")
        positions = positions[[order.index(n) for n in names]]
    return positions


def marker_kind(msg: Any, msgtype: str) -> str:
    """Marker -> ``"start"``, ``"end"`` or ``"split"``: Bool true/false = start/end; String "start"/"begin",
    "end"/"stop", anything else = split (end the current episode and start the next)."""
    if msgtype.endswith("Bool"):
        return "start" if msg.data else "end"
    text = str(msg.data).strip().lower()
    if text in ("start", "begin"):
        return "start"
    if text in ("end", "stop"):
        return "end"
    return "split"
