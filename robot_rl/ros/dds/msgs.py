"""ROS 2 message types as Cyclone DDS IDL structs: the names, field order and CDR layout ``rmw_cyclonedds_cpp`` uses.

ROS 2 maps ``<pkg>/msg/<Type>`` to the DDS type ``<pkg>::msg::dds_::<Type>_``; its payload is plain (final, XCDR1)
CDR of the fields in ``.msg`` order. Each class below is that struct, field for field (checked against the ROS 2
Humble/Jazzy definitions that ``rosbags`` ships, and its CDR against ``rosbags``' own deserializer, in
``tests/ros/test_dds.py``). ``uint8[]`` fields (image data) are declared ``sequence<uint8>`` (so the XTypes type
object is ROS's) but (de)serialized as one block of bytes (:func:`_bytes_field`): a 640x480 rgb8 image takes
milliseconds instead of the 0.2 s of a Python int per pixel. They are written from bytes or a uint8 array and read
back as a writable uint8 numpy array (as ``rosbags`` gives them).

The classes keep ROS's field names, so ``robot_rl.ros.convert`` reads and builds them like rclpy or ``rosbags``
messages (:func:`dds_types` is their :class:`~robot_rl.ros.convert.MessageTypes`).
"""

# no ``from __future__ import annotations``: cyclonedds resolves the field annotations at run time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from robot_rl.ros.convert import MessageTypes, sec_to_stamp
from robot_rl.ros.dds import MISSING

try:
    from cyclonedds.idl import IdlStruct
    from cyclonedds.idl._machinery import PlainCdrV2SequenceOfPrimitiveMachine
    from cyclonedds.idl.types import array, float32, float64, int32, int64, uint8, uint32

    if TYPE_CHECKING:  # for mypy a sequence[T] field is a Sequence[T] (a list, or bytes for uint8)
        from collections.abc import Sequence as sequence
    else:
        from cyclonedds.idl.types import sequence
except ImportError:
    raise ImportError(MISSING) from None


class _ByteSequence(PlainCdrV2SequenceOfPrimitiveMachine):
    """``sequence<uint8>`` on the wire (uint32 length, the bytes), written from bytes or a uint8 array in one block,
    read back as one uint8 array."""

    def __init__(self) -> None:
        super().__init__(uint8)

    def serialize(self, buffer: Any, value: Any, *args: Any, **kwargs: Any) -> None:
        data = value.tobytes() if isinstance(value, np.ndarray) else bytes(value)
        buffer.align(4)
        buffer.write("I", 4, len(data))
        buffer.write_bytes(data)

    def deserialize(self, buffer: Any, *args: Any, **kwargs: Any) -> np.ndarray:
        buffer.align(4)
        return np.frombuffer(bytearray(buffer.read_bytes(buffer.read("I", 4))), dtype=np.uint8)  # writable

    def default_initialize(self) -> np.ndarray:
        return np.zeros(0, dtype=np.uint8)


def _bytes_field(cls: type[Any], name: str) -> None:
    """Make the ``sequence[uint8]`` field ``name`` of ``cls`` a :class:`_ByteSequence` (both CDR versions)."""
    cls.__idl__.populate()
    for machine in (cls.__idl__.v1_machine, cls.__idl__.v2_machine):
        assert isinstance(machine.members_machines[name], PlainCdrV2SequenceOfPrimitiveMachine), (cls, name)
        machine.members_machines[name] = _ByteSequence()


def _dds(ros_type: str) -> str:
    """``sensor_msgs/msg/JointState`` -> ``sensor_msgs::msg::dds_::JointState_``."""
    pkg, kind, name = ros_type.split("/")
    return f"{pkg}::{kind}::dds_::{name}_"


# --- builtin_interfaces, std_msgs ---------------------------------------------------------------------------------
@dataclass
class Time(IdlStruct, typename=_dds("builtin_interfaces/msg/Time")):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Duration(IdlStruct, typename=_dds("builtin_interfaces/msg/Duration")):
    sec: int32 = 0
    nanosec: uint32 = 0


@dataclass
class Header(IdlStruct, typename=_dds("std_msgs/msg/Header")):
    stamp: Time = field(default_factory=Time)
    frame_id: str = ""


@dataclass
class Bool(IdlStruct, typename=_dds("std_msgs/msg/Bool")):
    data: bool = False


@dataclass
class Empty(IdlStruct, typename=_dds("std_msgs/msg/Empty")):
    structure_needs_at_least_one_member: uint8 = 0
    """ROS's IDL generator adds this member: a DDS struct may not be empty."""


@dataclass
class String(IdlStruct, typename=_dds("std_msgs/msg/String")):
    data: str = ""


@dataclass
class Int64(IdlStruct, typename=_dds("std_msgs/msg/Int64")):
    data: int64 = 0


@dataclass
class MultiArrayDimension(IdlStruct, typename=_dds("std_msgs/msg/MultiArrayDimension")):
    label: str = ""
    size: uint32 = 0
    stride: uint32 = 0


@dataclass
class MultiArrayLayout(IdlStruct, typename=_dds("std_msgs/msg/MultiArrayLayout")):
    dim: sequence[MultiArrayDimension] = field(default_factory=list)
    data_offset: uint32 = 0


@dataclass
class Float64MultiArray(IdlStruct, typename=_dds("std_msgs/msg/Float64MultiArray")):
    layout: MultiArrayLayout = field(default_factory=MultiArrayLayout)
    data: sequence[float64] = field(default_factory=list)


# --- sensor_msgs --------------------------------------------------------------------------------------------------
@dataclass
class JointState(IdlStruct, typename=_dds("sensor_msgs/msg/JointState")):
    header: Header = field(default_factory=Header)
    name: sequence[str] = field(default_factory=list)
    position: sequence[float64] = field(default_factory=list)
    velocity: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)


@dataclass
class Image(IdlStruct, typename=_dds("sensor_msgs/msg/Image")):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    encoding: str = ""
    is_bigendian: uint8 = 0
    step: uint32 = 0
    data: sequence[uint8] = b""


@dataclass
class CompressedImage(IdlStruct, typename=_dds("sensor_msgs/msg/CompressedImage")):
    header: Header = field(default_factory=Header)
    format: str = ""
    data: sequence[uint8] = b""


_bytes_field(Image, "data")
_bytes_field(CompressedImage, "data")


@dataclass
class RegionOfInterest(IdlStruct, typename=_dds("sensor_msgs/msg/RegionOfInterest")):
    x_offset: uint32 = 0
    y_offset: uint32 = 0
    height: uint32 = 0
    width: uint32 = 0
    do_rectify: bool = False


@dataclass
class CameraInfo(IdlStruct, typename=_dds("sensor_msgs/msg/CameraInfo")):
    header: Header = field(default_factory=Header)
    height: uint32 = 0
    width: uint32 = 0
    distortion_model: str = ""
    d: sequence[float64] = field(default_factory=list)
    k: array[float64, 9] = field(default_factory=lambda: [0.0] * 9)  # type: ignore[type-arg,valid-type,assignment]
    r: array[float64, 9] = field(default_factory=lambda: [0.0] * 9)  # type: ignore[type-arg,valid-type,assignment]
    p: array[float64, 12] = field(default_factory=lambda: [0.0] * 12)  # type: ignore[type-arg,valid-type,assignment]
    binning_x: uint32 = 0
    binning_y: uint32 = 0
    roi: RegionOfInterest = field(default_factory=RegionOfInterest)


@dataclass
class Joy(IdlStruct, typename=_dds("sensor_msgs/msg/Joy")):
    """A gamepad or SpaceMouse (``joy``/``spacenav`` drivers): teleop input, ``robot_rl.ros.teleop``."""

    header: Header = field(default_factory=Header)
    axes: sequence[float32] = field(default_factory=list)
    buttons: sequence[int32] = field(default_factory=list)


# --- geometry_msgs, trajectory_msgs -------------------------------------------------------------------------------
@dataclass
class Vector3(IdlStruct, typename=_dds("geometry_msgs/msg/Vector3")):
    x: float64 = 0.0
    y: float64 = 0.0
    z: float64 = 0.0


@dataclass
class Twist(IdlStruct, typename=_dds("geometry_msgs/msg/Twist")):
    linear: Vector3 = field(default_factory=Vector3)
    angular: Vector3 = field(default_factory=Vector3)


@dataclass
class TwistStamped(IdlStruct, typename=_dds("geometry_msgs/msg/TwistStamped")):
    header: Header = field(default_factory=Header)
    twist: Twist = field(default_factory=Twist)


@dataclass
class JointTrajectoryPoint(IdlStruct, typename=_dds("trajectory_msgs/msg/JointTrajectoryPoint")):
    positions: sequence[float64] = field(default_factory=list)
    velocities: sequence[float64] = field(default_factory=list)
    accelerations: sequence[float64] = field(default_factory=list)
    effort: sequence[float64] = field(default_factory=list)
    time_from_start: Duration = field(default_factory=Duration)


@dataclass
class JointTrajectory(IdlStruct, typename=_dds("trajectory_msgs/msg/JointTrajectory")):
    header: Header = field(default_factory=Header)
    joint_names: sequence[str] = field(default_factory=list)
    points: sequence[JointTrajectoryPoint] = field(default_factory=list)


MESSAGES: dict[str, type[Any]] = {
    "builtin_interfaces/msg/Time": Time, "builtin_interfaces/msg/Duration": Duration,
    "std_msgs/msg/Header": Header, "std_msgs/msg/Bool": Bool, "std_msgs/msg/Empty": Empty,
    "std_msgs/msg/String": String, "std_msgs/msg/Int64": Int64,
    "std_msgs/msg/MultiArrayDimension": MultiArrayDimension, "std_msgs/msg/MultiArrayLayout": MultiArrayLayout,
    "std_msgs/msg/Float64MultiArray": Float64MultiArray,
    "sensor_msgs/msg/JointState": JointState, "sensor_msgs/msg/Image": Image,
    "sensor_msgs/msg/CompressedImage": CompressedImage, "sensor_msgs/msg/RegionOfInterest": RegionOfInterest,
    "sensor_msgs/msg/CameraInfo": CameraInfo, "sensor_msgs/msg/Joy": Joy,
    "geometry_msgs/msg/Vector3": Vector3, "geometry_msgs/msg/Twist": Twist,
    "geometry_msgs/msg/TwistStamped": TwistStamped,
    "trajectory_msgs/msg/JointTrajectoryPoint": JointTrajectoryPoint,
    "trajectory_msgs/msg/JointTrajectory": JointTrajectory,
}
"""ROS 2 type name -> IDL struct, for every message the stack sends or reads over DDS."""

COMMAND_MESSAGES: dict[str, type[Any]] = {"joint_trajectory": JointTrajectory, "float64_array": Float64MultiArray,
                                          "twist": TwistStamped}
"""``ControlConfig.command_kind`` -> the command message class (as the policy node publishes it)."""


def ros_type_name(cls: type[Any]) -> str:
    """ROS 2 name of an IDL struct class: ``sensor_msgs::msg::dds_::JointState_`` -> ``sensor_msgs/msg/JointState``."""
    pkg, kind, _, name = str(cls.__idl_typename__).split("::")
    return f"{pkg}/{kind}/{name[:-1]}"


def stamp(t: float) -> Time:
    """Seconds -> ``builtin_interfaces/Time`` (``ConversionError`` on a negative or non-finite time)."""
    sec, nanosec = sec_to_stamp(t)
    return Time(sec=sec, nanosec=nanosec)


def dds_types() -> MessageTypes:
    """:class:`MessageTypes` building commands as these IDL structs (float sequences as lists of Python floats)."""
    return MessageTypes(
        header=Header, time=Time, duration=Duration, float64_multi_array=Float64MultiArray,
        multi_array_layout=MultiArrayLayout, joint_trajectory=JointTrajectory,
        joint_trajectory_point=JointTrajectoryPoint, twist_stamped=TwistStamped, twist=Twist, vector3=Vector3,
        sequence=lambda a: [float(x) for x in np.asarray(a, dtype=np.float64).reshape(-1)],
    )


# --- the actor/learner link (robot_rl.ros.dds.learning) -----------------------------------------------------------
@dataclass
class Blob(IdlStruct, typename="robot_rl_msgs::msg::dds_::Blob_"):
    """The actor/learner link's one message type (``robot_rl_msgs/msg/Blob``: no ROS 2 package ships it; a ROS 2
    node would need a ``.msg`` with these four fields): a batch of transitions, an ack, or the policy weights."""

    sender: str = ""
    seq: int64 = 0
    kind: str = ""
    data: sequence[uint8] = b""


_bytes_field(Blob, "data")
