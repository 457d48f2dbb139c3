"""Message conversion between ROS 2 messages and numpy, duck-typed on field names.

The functions read and write only the standard field names of ``sensor_msgs/JointState``, ``Image``,
``CompressedImage``, ``CameraInfo``, ``std_msgs/Float64MultiArray``, ``trajectory_msgs/JointTrajectory`` and
``geometry_msgs/TwistStamped``, so they work on rclpy messages and on ``rosbags`` message classes alike.
Outgoing messages are built through :class:`MessageTypes`, which names the classes to instantiate and how a
float sequence is passed (numpy for rosbags, a list of floats for rclpy).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

CommandKind = Literal["joint_trajectory", "float64_array", "twist"]
COMMAND_KINDS: tuple[CommandKind, ...] = ("joint_trajectory", "float64_array", "twist")
TWIST_AXES = ("linear.x", "linear.y", "linear.z", "angular.x", "angular.y", "angular.z")


class ConversionError(ValueError):
    """A message cannot be converted; the message says which field and why, in one line."""


# --- incoming ----------------------------------------------------------------------------------------------------
def stamp_to_sec(msg: Any) -> float:
    """``header.stamp`` (or a ``builtin_interfaces/Time``) of ``msg`` in seconds."""
    stamp = getattr(getattr(msg, "header", None), "stamp", msg)
    return float(stamp.sec) + 1e-9 * float(stamp.nanosec)


def sec_to_stamp(t: float) -> tuple[int, int]:
    """Seconds -> ``(sec, nanosec)`` of a ``builtin_interfaces/Time``; raises on a non-finite or negative time."""
    if not math.isfinite(t) or t < 0:
        raise ConversionError(f"time {t} s cannot be a ROS stamp (must be finite and >= 0)")
    sec = int(math.floor(t))
    nanosec = min(int(round((t - sec) * 1e9)), 999_999_999)
    return sec, nanosec


def joint_state_to_array(msg: Any, joint_names: Sequence[str], field: str = "position") -> np.ndarray:
    """``JointState.<field>`` reordered to ``joint_names``: float64 ``[len(joint_names)]`` (may hold NaN: the safety
    gate, not this function, decides what a non-finite reading means)."""
    names = list(msg.name)
    values = np.asarray(getattr(msg, field), dtype=np.float64).reshape(-1)
    if len(values) != len(names):
        raise ConversionError(f"JointState.{field} has {len(values)} values for {len(names)} names")
    index = {n: i for i, n in enumerate(names)}
    missing = [j for j in joint_names if j not in index]
    if missing:
        raise ConversionError(f"JointState lacks joints {missing} (has {names})")
    return values[[index[j] for j in joint_names]]


_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


def image_to_array(msg: Any) -> np.ndarray:
    """``sensor_msgs/Image`` (rgb8, bgr8, rgba8, bgra8, mono8) -> uint8 RGB ``[H, W, 3]`` (respects ``step``)."""
    encoding = str(msg.encoding)
    if encoding not in _CHANNELS:
        raise ConversionError(f"Image encoding '{encoding}' is not supported (use one of {sorted(_CHANNELS)})")
    h, w, c = int(msg.height), int(msg.width), _CHANNELS[encoding]
    step = int(msg.step)
    data = np.frombuffer(bytes(msg.data), dtype=np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data
    if step < w * c or data.size < h * step:
        raise ConversionError(f"Image {w}x{h} {encoding}: data has {data.size} bytes, step {step}; "
                              f"expected >= {h * w * c}")
    pixels = data[: h * step].reshape(h, step)[:, : w * c].reshape(h, w, c)
    if c == 1:
        return np.repeat(pixels, 3, axis=2)
    rgb = pixels[..., :3]
    if encoding.startswith("bgr"):
        rgb = rgb[..., ::-1]
    return np.ascontiguousarray(rgb)


def compressed_image_to_array(msg: Any) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (jpeg/png) -> uint8 RGB ``[H, W, 3]``."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(io.BytesIO(bytes(np.asarray(msg.data, dtype=np.uint8)))) as img:
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as e:
        raise ConversionError(f"CompressedImage ({msg.format}): cannot decode ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics from a ``CameraInfo``."""

    width: int
    height: int
    k: np.ndarray
    """float64 ``[3, 3]`` camera matrix."""
    d: np.ndarray
    """float64 distortion coefficients."""
    distortion_model: str


def camera_info_to_intrinsics(msg: Any) -> Intrinsics:
    """``sensor_msgs/CameraInfo`` -> :class:`Intrinsics`."""
    k = np.asarray(msg.k, dtype=np.float64).reshape(3, 3)
    return Intrinsics(int(msg.width), int(msg.height), k, np.asarray(msg.d, dtype=np.float64),
                      str(msg.distortion_model))


def float64_array_to_numpy(msg: Any) -> np.ndarray:
    """``std_msgs/Float64MultiArray.data`` as float64 ``[n]``."""
    return np.asarray(msg.data, dtype=np.float64).reshape(-1)


def command_to_array(msg: Any, kind: CommandKind, joint_names: Sequence[str] = ()) -> np.ndarray:
    """A command message back to its float64 values (what a recorder stores as the action taken): the first
    trajectory point's positions reordered to ``joint_names``, the array data, or the 6 twist components."""
    if kind == "float64_array":
        return float64_array_to_numpy(msg)
    if kind == "twist":
        t = msg.twist
        return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z], np.float64)
    if kind == "joint_trajectory":
        if not len(msg.points):
            raise ConversionError("JointTrajectory has no points")
        pos = np.asarray(msg.points[0].positions, dtype=np.float64)
        names = list(msg.joint_names)
        if not joint_names:
            return pos
        missing = [j for j in joint_names if j not in names]
        if missing:
            raise ConversionError(f"JointTrajectory lacks joints {missing} (has {names})")
        return pos[[names.index(j) for j in joint_names]]
    raise ConversionError(f"unknown command kind '{kind}' (use one of {COMMAND_KINDS})")


# --- outgoing ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MessageTypes:
    """The message classes outgoing commands are built from, and how float sequences are passed to them."""

    header: Callable[..., Any]
    time: Callable[..., Any]
    duration: Callable[..., Any]
    float64_multi_array: Callable[..., Any]
    multi_array_layout: Callable[..., Any]
    joint_trajectory: Callable[..., Any]
    joint_trajectory_point: Callable[..., Any]
    twist_stamped: Callable[..., Any]
    twist: Callable[..., Any]
    vector3: Callable[..., Any]
    sequence: Callable[[np.ndarray], Any]
    """float64 ``[n]`` -> what the classes take for a ``float64[]`` field."""


def rosbags_types(typestore: Any | None = None) -> MessageTypes:
    """:class:`MessageTypes` of the ``rosbags`` typestore (ROS 2 Jazzy by default): real message classes that
    ``typestore.serialize_cdr`` accepts, without ROS."""
    if typestore is None:
        from rosbags.typesys import Stores, get_typestore

        typestore = get_typestore(Stores.ROS2_JAZZY)
    t = typestore.types
    return MessageTypes(
        header=t["std_msgs/msg/Header"], time=t["builtin_interfaces/msg/Time"],
        duration=t["builtin_interfaces/msg/Duration"], float64_multi_array=t["std_msgs/msg/Float64MultiArray"],
        multi_array_layout=t["std_msgs/msg/MultiArrayLayout"],
        joint_trajectory=t["trajectory_msgs/msg/JointTrajectory"],
        joint_trajectory_point=t["trajectory_msgs/msg/JointTrajectoryPoint"],
        twist_stamped=t["geometry_msgs/msg/TwistStamped"], twist=t["geometry_msgs/msg/Twist"],
        vector3=t["geometry_msgs/msg/Vector3"], sequence=lambda a: np.asarray(a, dtype=np.float64),
    )


def make_command(types: MessageTypes, kind: CommandKind, values: np.ndarray, joint_names: Sequence[str] = (),
                 stamp: float = 0.0, frame_id: str = "", time_from_start: float = 0.1) -> Any:
    """Build the command message of ``kind`` carrying ``values`` (float64; joint targets, or 6 twist components)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(values)):
        raise ConversionError(f"command values are not finite: {values.tolist()}")
    sec, nanosec = sec_to_stamp(stamp)
    header = types.header(stamp=types.time(sec=sec, nanosec=nanosec), frame_id=frame_id)
    empty = np.zeros(0, dtype=np.float64)
    if kind == "float64_array":
        layout = types.multi_array_layout(dim=[], data_offset=0)
        return types.float64_multi_array(layout=layout, data=types.sequence(values))
    if kind == "joint_trajectory":
        if len(joint_names) != len(values):
            raise ConversionError(f"{len(values)} joint targets for {len(joint_names)} joint names")
        dsec, dnsec = sec_to_stamp(time_from_start)
        point = types.joint_trajectory_point(
            positions=types.sequence(values), velocities=types.sequence(empty), accelerations=types.sequence(empty),
            effort=types.sequence(empty), time_from_start=types.duration(sec=dsec, nanosec=dnsec))
        return types.joint_trajectory(header=header, joint_names=list(joint_names), points=[point])
    if kind == "twist":
        if len(values) != 6:
            raise ConversionError(f"a twist command needs 6 values ({', '.join(TWIST_AXES)}), got {len(values)}")
        v = [float(x) for x in values]
        twist = types.twist(linear=types.vector3(x=v[0], y=v[1], z=v[2]),
                            angular=types.vector3(x=v[3], y=v[4], z=v[5]))
        return types.twist_stamped(header=header, twist=twist)
    raise ConversionError(f"unknown command kind '{kind}' (use one of {COMMAND_KINDS})")
