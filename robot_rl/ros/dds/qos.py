"""ROS 2's naming and QoS conventions on DDS: ``rt/`` topic names, the rclpy QoS profiles, a loopback config.

ROS 2 topic ``/joint_states`` is the DDS topic ``rt/joint_states`` (``rq/``/``rr/`` are services, not used here).
The profiles are rclpy's: ``qos_profile_sensor_data`` (best effort, volatile, keep last 5), the default (reliable,
volatile, keep last 10), and a latched one (reliable, transient local, keep last 1) as the policy node's e-stop.
All of them ask for XCDR1 data representation, as ``rmw_cyclonedds_cpp`` does. A best-effort reader matches
reliable and best-effort writers alike; a reliable reader matches only reliable writers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from robot_rl.ros.dds import MISSING

try:
    from cyclonedds.core import Policy
    from cyclonedds.qos import Qos
    from cyclonedds.util import duration
except ImportError:  # pragma: no cover
    raise ImportError(MISSING) from None

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")


def dds_topic(name: str, namespace: str = "") -> str:
    """ROS 2 topic name -> DDS topic name: ``/joint_states`` or ``joint_states`` -> ``rt/joint_states``;
    relative names go under ``namespace`` (``/arm`` + ``command`` -> ``rt/arm/command``)."""
    full = name if name.startswith("/") else f"{namespace.rstrip('/')}/{name}"
    bare = full.strip("/")
    if not _NAME.match(bare):
        raise ValueError(f"'{name}' (namespace '{namespace}') is not a ROS 2 topic name: use letters, digits, _ and "
                         f"/ separators, each part starting with a letter or _ (no '~', no '//')")
    return f"rt/{bare}"


@dataclass(frozen=True)
class QosProfile:
    """The three policies ROS 2 profiles differ in (the rest are the DDS defaults, as in rclpy)."""

    reliable: bool
    transient_local: bool
    depth: int

    def to_cyclone(self) -> Any:
        """This profile as a ``cyclonedds.qos.Qos`` (XCDR1 data representation, as ``rmw_cyclonedds_cpp``)."""
        reliability = (Policy.Reliability.Reliable(duration(milliseconds=100)) if self.reliable
                       else Policy.Reliability.BestEffort)
        durability = Policy.Durability.TransientLocal if self.transient_local else Policy.Durability.Volatile
        return Qos(reliability, durability, Policy.History.KeepLast(self.depth),
                   Policy.DataRepresentation(use_cdrv0_representation=True))


SENSOR_DATA = QosProfile(reliable=False, transient_local=False, depth=5)
"""rclpy ``qos_profile_sensor_data``: joint states and images in (matches any writer)."""
DEFAULT = QosProfile(reliable=True, transient_local=False, depth=10)
"""rclpy's default (``QoSProfile(depth=10)``): commands out, reset requests."""
LATCHED = QosProfile(reliable=True, transient_local=True, depth=1)
"""Latched topics (the e-stop): a late subscriber still gets the last message published before it started."""


def loopback_config(max_participants: int = 60) -> str:
    """A Cyclone DDS XML config that keeps all traffic on 127.0.0.1 (unicast discovery, no multicast): for tests and
    for processes on one machine. Pass it as ``config=`` or put it in ``CYCLONEDDS_URI``."""
    return ("<CycloneDDS><Domain Id=\"any\"><General><Interfaces><NetworkInterface address=\"127.0.0.1\"/>"
            "</Interfaces><AllowMulticast>false</AllowMulticast></General><Discovery>"
            "<ParticipantIndex>auto</ParticipantIndex>"
            f"<MaxAutoParticipantIndex>{max_participants}</MaxAutoParticipantIndex>"
            "<Peers><Peer address=\"127.0.0.1\"/></Peers></Discovery></Domain></CycloneDDS>")
