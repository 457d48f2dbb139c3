"""Shared rclpy helpers: message classes for ``robot_rl.ros.convert``, parameters, clock, subscriptions."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import builtin_interfaces.msg as builtin_msg
import geometry_msgs.msg as geometry_msg
import rclpy
import std_msgs.msg as std_msg
import trajectory_msgs.msg as trajectory_msg
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.exceptions import ParameterUninitializedException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, JointState

from robot_rl.ros.control import JOINT_STATES, MessageCache, image_key
from robot_rl.ros.convert import MessageTypes

RCLPY_TYPES = MessageTypes(
    header=std_msg.Header, time=builtin_msg.Time, duration=builtin_msg.Duration,
    float64_multi_array=std_msg.Float64MultiArray, multi_array_layout=std_msg.MultiArrayLayout,
    joint_trajectory=trajectory_msg.JointTrajectory, joint_trajectory_point=trajectory_msg.JointTrajectoryPoint,
    twist_stamped=geometry_msg.TwistStamped, twist=geometry_msg.Twist, vector3=geometry_msg.Vector3,
    sequence=lambda a: [float(x) for x in a],
)
"""rclpy message classes; float sequences as lists of Python floats (rclpy rejects numpy arrays there)."""

COMMAND_TYPES: dict[str, Any] = {"joint_trajectory": trajectory_msg.JointTrajectory,
                                 "float64_array": std_msg.Float64MultiArray,
                                 "twist": geometry_msg.TwistStamped}


LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
"""For latched topics (the e-stop): a late subscriber still gets the last message published before it started."""


def declare(node: Node, name: str, default: Any) -> Any:
    """Declare a scalar or non-empty list parameter and return its value. A float parameter accepts an int
    (``control_rate_hz: 20``): rclpy types parameters from their defaults and would refuse it (INTEGER vs DOUBLE)."""
    if isinstance(default, float):
        value = node.declare_parameter(name, default, ParameterDescriptor(dynamic_typing=True)).value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise SystemExit(f"{node.get_name()}: parameter '{name}' must be a number, got {value!r}")
        return float(value)
    return node.declare_parameter(name, default).value


def spin(node: Node, cleanup: Callable[[], None]) -> None:
    """Spin until Ctrl-C or an external shutdown (SIGTERM from ``docker stop`` or launch raises
    ``ExternalShutdownException`` in Jazzy), then ``cleanup()``, destroy the node and shut rclpy down."""
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        cleanup()
        node.destroy_node()
        rclpy.try_shutdown()


def declare_list(node: Node, name: str, kind: Parameter.Type) -> list[Any]:
    """Declare a list parameter that may be left unset (empty list)."""
    node.declare_parameter(name, kind)
    try:
        value = node.get_parameter(name).value
    except ParameterUninitializedException:
        return []
    return list(value or [])


def ros_clock(node: Node) -> Callable[[], float]:
    """The node's clock (ROS time: sim time when ``use_sim_time``) in seconds, the base of ``header.stamp``."""
    return lambda: node.get_clock().now().nanoseconds * 1e-9


def subscribe_observations(node: Node, cache: MessageCache, cameras: list[str], compressed: bool) -> list[Any]:
    """``joint_states``, ``cameras/<cam>/image_raw[/compressed]`` (sensor-data QoS) and ``cameras/<cam>/camera_info``
    (cached as ``<image key>/camera_info`` for ``robot_rl.ros.convert.camera_info_to_intrinsics``; the watchdog does
    not look at it), each cached as it comes."""
    subs = [node.create_subscription(JointState, "joint_states", _cacher(cache, JOINT_STATES), QoSProfile(depth=10))]
    for cam in cameras:
        topic = f"cameras/{cam}/image_raw" + ("/compressed" if compressed else "")
        kind = CompressedImage if compressed else Image
        subs.append(node.create_subscription(kind, topic, _cacher(cache, image_key(cam)), qos_profile_sensor_data))
        subs.append(node.create_subscription(CameraInfo, f"cameras/{cam}/camera_info",
                                             _cacher(cache, image_key(cam) + "/camera_info"), qos_profile_sensor_data))
    return subs


def _cacher(cache: MessageCache, key: str) -> Callable[[Any], None]:
    """A subscription callback that only caches the message under ``key``."""
    return lambda msg: cache.put(key, msg)
