"""``DdsTransport``: the ``RosTransport`` of ``RosEnv`` over Cyclone DDS, speaking ROS 2's wire conventions.

Topics are those of the policy node (``ros_ws/src/robot_rl_ros``), relative to ``namespace``:

| topic | type | QoS | direction |
| --- | --- | --- | --- |
| ``joint_states`` | sensor_msgs/JointState | sensor data (matches any writer) | in, key ``joint_states`` |
| ``cameras/<cam>/image_raw[/compressed]`` | Image / CompressedImage | sensor data | in, key ``image/<cam>`` |
| ``cameras/<cam>/camera_info`` | CameraInfo | sensor data | in, key ``image/<cam>/camera_info`` |
| ``estop`` | std_msgs/Bool | latched (transient local) | in, key ``estop`` |
| ``command`` | JointTrajectory / Float64MultiArray / TwistStamped | default (reliable) | out |
| ``reset`` / ``reset_done`` | std_msgs/Int64 | default (reliable) | out / in |

Reset convention: ``reset(seed)`` publishes a request id (``std_msgs/Int64``) on ``reset`` (again every
``retry_s`` until answered) and returns when the robot echoes that id on ``reset_done``, after it reached its start
pose; the seed is not sent (a real robot's reset is not seeded). With ``reset_topic=None`` it returns at once (an
operator resets; ``RosEnv.reset`` still waits for a fresh observation). A robot that never answers ->
``TimeoutError`` naming the topics and the domain.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from robot_rl.ros.control import ESTOP, JOINT_STATES, image_key
from robot_rl.ros.convert import CommandKind
from robot_rl.ros.dds.msgs import (
    COMMAND_MESSAGES,
    Bool,
    CameraInfo,
    CompressedImage,
    Image,
    Int64,
    JointState,
    ros_type_name,
)
from robot_rl.ros.dds.participant import Participant
from robot_rl.ros.dds.qos import DEFAULT, LATCHED, SENSOR_DATA, QosProfile


@dataclass(frozen=True)
class DdsTopics:
    """Topic names (ROS 2, relative to the participant's namespace) of one robot."""

    joint_states: str = "joint_states"
    cameras: tuple[str, ...] = ()
    compressed: bool = False
    """Subscribe ``cameras/<cam>/image_raw/compressed`` (CompressedImage) instead of ``image_raw`` (Image)."""
    camera_info: bool = False
    """Also subscribe ``cameras/<cam>/camera_info``."""
    command: str = "command"
    estop: str | None = "estop"
    reset: str | None = "reset"
    """``None``: no reset handshake."""
    reset_done: str = "reset_done"

    def image_topic(self, camera: str) -> str:
        return f"cameras/{camera}/image_raw" + ("/compressed" if self.compressed else "")


class DdsTransport:
    """``RosTransport`` over DDS. ``now()`` is ``clock`` (wall time by default: the stamps of a robot whose ROS
    clock is the system clock). Messages are the IDL structs of :mod:`robot_rl.ros.dds.msgs`; build ``RosEnv`` with
    ``types=dds_types()`` so its commands are too."""

    def __init__(self, topics: DdsTopics | None = None, command_kind: CommandKind = "joint_trajectory",
                 domain_id: int | None = None, config: str | None = None, namespace: str = "",
                 reset_timeout_s: float = 30.0, retry_s: float = 0.5, discovery_timeout_s: float = 10.0,
                 clock: Callable[[], float] = time.time):
        if command_kind not in COMMAND_MESSAGES:
            raise ValueError(f"unknown command kind '{command_kind}' (use one of {sorted(COMMAND_MESSAGES)})")
        self.topics = topics = topics or DdsTopics()
        self.command_kind = command_kind
        self.command_type = COMMAND_MESSAGES[command_kind]
        self.reset_timeout_s = reset_timeout_s
        self.retry_s = retry_s
        self.discovery_timeout_s = discovery_timeout_s
        self.clock = clock
        self.participant = p = Participant(domain_id, config, namespace)
        self._readers: list[tuple[str, Any]] = [(JOINT_STATES, p.reader(topics.joint_states, JointState, SENSOR_DATA))]
        for cam in topics.cameras:
            kind = CompressedImage if topics.compressed else Image
            self._readers.append((image_key(cam), p.reader(topics.image_topic(cam), kind, SENSOR_DATA)))
            if topics.camera_info:
                self._readers.append((image_key(cam) + "/camera_info",
                                      p.reader(f"cameras/{cam}/camera_info", CameraInfo, SENSOR_DATA)))
        if topics.estop:
            self._readers.append((ESTOP, p.reader(topics.estop, Bool, LATCHED)))
        self.command_writer = p.writer(topics.command, self.command_type, DEFAULT)
        self.reset_writer = p.writer(topics.reset, Int64, DEFAULT) if topics.reset else None
        self.reset_reader = p.reader(topics.reset_done, Int64, DEFAULT) if topics.reset else None
        self._pending: list[tuple[str, Any]] = []
        self._request_ids = itertools.count(int(time.time() * 1000) % 1_000_000_000)
        self.published = 0

    # --- RosTransport ---------------------------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock()

    def spin(self, duration_s: float) -> list[tuple[str, Any]]:
        """Wait ``duration_s`` and return what arrived meanwhile (and anything that arrived during a reset)."""
        deadline = time.monotonic() + duration_s
        out = self._take()
        while (left := deadline - time.monotonic()) > 0:
            if self.participant.wait(left):
                out += self._take()
        return out

    def publish(self, msg: Any) -> None:
        """Send a command; one-line ``TypeError`` if it is not this transport's command type."""
        if not isinstance(msg, self.command_type):
            raise TypeError(f"DdsTransport publishes {ros_type_name(self.command_type)} on '{self.topics.command}' "
                            f"(command kind '{self.command_kind}'), got {type(msg).__name__}: build commands with "
                            f"robot_rl.ros.dds.dds_types()")
        self.command_writer.write(msg)
        self.published += 1

    def reset(self, seed: int | None) -> None:
        """Reset handshake (see the module docstring); ``seed`` is not sent. Joint states and images that arrive
        before the answer are dropped (they predate the reset), e-stop messages kept; returns once the robot's
        command subscriber is discovered too, so the first command after a reset is not lost."""
        if self.reset_writer is None or self.reset_reader is None:
            return
        what = f"'{self.topics.reset}' (domain {self.participant.domain_id})"
        Participant.wait_for_readers(self.reset_writer, self.discovery_timeout_s,
                                     f"reset requests on {what} (no reset handler: DdsTopics(reset=None))")
        deadline = time.monotonic() + self.discovery_timeout_s  # the answer's way back (a lost one is re-requested)
        while not self.reset_reader.get_matched_publications() and time.monotonic() < deadline:
            time.sleep(0.01)
        request = next(self._request_ids)
        deadline = time.monotonic() + self.reset_timeout_s
        while time.monotonic() < deadline:
            self.reset_writer.write(Int64(data=request))
            resend = min(time.monotonic() + self.retry_s, deadline)
            while (left := resend - time.monotonic()) > 0:
                self.participant.wait(left)
                if any(int(m.data) == request for m in Participant.take(self.reset_reader, 64)):
                    self.wait_for_robot()
                    return
                self._pending = [(k, m) for k, m in self._pending + self._take() if k == ESTOP]
        raise TimeoutError(f"no answer to reset request {request} on '{self.topics.reset_done}' within "
                           f"{self.reset_timeout_s} s: is the robot's reset handler running on {what}?")

    # --- extras ---------------------------------------------------------------------------------------------------
    def subscribe(self, key: str, topic: str, cls: type[Any], qos: QosProfile = SENSOR_DATA) -> None:
        """Also deliver ``topic`` (messages of ``cls``) from ``spin``/``poll`` under ``key``: a teleop input
        (``robot_rl.ros.teleop.TELEOP``), a success detector's ``std_msgs/Bool``. ``RosEnv`` caches them beside the
        observation; ``build_observation`` ignores keys it does not read."""
        self._readers.append((key, self.participant.reader(topic, cls, qos)))

    def poll(self, timeout_s: float) -> list[tuple[str, Any]]:
        """Return as soon as anything arrived (or after ``timeout_s`` with nothing): for event-driven loops."""
        out = self._take()
        if not out and self.participant.wait(timeout_s):
            out = self._take()
        return out

    def wait_for_robot(self, timeout_s: float | None = None) -> None:
        """Block until the robot's command subscriber is discovered (a command sent before is dropped by DDS)."""
        Participant.wait_for_readers(self.command_writer, timeout_s or self.discovery_timeout_s,
                                     f"commands on '{self.topics.command}' (domain {self.participant.domain_id})")

    def close(self) -> None:
        self.participant.close()

    def _take(self) -> list[tuple[str, Any]]:
        out, self._pending = self._pending, []
        for key, reader in self._readers:
            out += [(key, msg) for msg in Participant.take(reader)]
        return out
