"""``policy_node``: runs a robot_rl checkpoint on the robot behind the safety gate.

Subscribes ``joint_states``, ``cameras/<cam>/image_raw`` and ``cameras/<cam>/camera_info`` (sensor-data QoS) and
``estop`` (std_msgs/Bool, transient-local: True latches a stop, also one published before the node started); a
timer at ``control_rate_hz`` ticks the ``ControlLoop``; publishes the command on ``command`` (JointTrajectory,
Float64MultiArray or TwistStamped by ``command_kind``) and refusal reasons on ``~/status``. Services ``~/start``
and ``~/stop`` (std_srvs/Trigger). Motion starts only on ``~/start`` (or ``autostart``).
"""

from __future__ import annotations

from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Bool, String
from std_srvs.srv import Trigger

from robot_rl.apps.robot_nodes import load_control_loop
from robot_rl.ros.control import ControlConfig, ObservationConfig
from robot_rl.ros.safety import SafetyConfig
from robot_rl_ros.common import (
    COMMAND_TYPES,
    LATCHED,
    RCLPY_TYPES,
    declare,
    declare_list,
    ros_clock,
    spin,
    subscribe_observations,
)


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy_node")
        checkpoint = declare(self, "checkpoint", "")
        if not checkpoint:
            raise SystemExit("policy_node: set the 'checkpoint' parameter to a robot-rl run folder")
        cameras = declare_list(self, "cameras", Parameter.Type.STRING_ARRAY)
        image_size = int(declare(self, "image_size", 0))
        config = ControlConfig(
            ObservationConfig(tuple(declare_list(self, "joint_names", Parameter.Type.STRING_ARRAY)),
                              tuple(declare(self, "state_fields", ["position"])), tuple(cameras),
                              image_size or None),
            command_kind=declare(self, "command_kind", "joint_trajectory"),
            control_rate_hz=float(declare(self, "control_rate_hz", 10.0)),
            safety=SafetyConfig(
                lower=tuple(declare_list(self, "lower", Parameter.Type.DOUBLE_ARRAY)),
                upper=tuple(declare_list(self, "upper", Parameter.Type.DOUBLE_ARRAY)),
                max_delta=tuple(declare_list(self, "max_delta", Parameter.Type.DOUBLE_ARRAY)),
                max_obs_age_s=float(declare(self, "max_obs_age_s", 0.25))),
            time_from_start_s=float(declare(self, "time_from_start_s", 0.0)),
            frame_id=declare(self, "frame_id", ""),
            publish_hold=bool(declare(self, "publish_hold", False)),
        )
        self.loop = load_control_loop(checkpoint, config, RCLPY_TYPES, ros_clock(self), declare(self, "device", "cpu"))
        self.subs = subscribe_observations(self, self.loop.cache, cameras, bool(declare(self, "compressed", False)))
        # Transient-local: an e-stop latched before this node started is still seen (a volatile subscription
        # would miss it, and ~/start could enable motion while the e-stop is asserted).
        self.subs.append(self.create_subscription(Bool, "estop", self._on_estop, LATCHED))
        self.pub = self.create_publisher(COMMAND_TYPES[config.command_kind], "command", 10)
        self.status = self.create_publisher(String, "~/status", 10)
        self.create_service(Trigger, "~/start", self._start)
        self.create_service(Trigger, "~/stop", self._stop)
        self.timer = self.create_timer(1.0 / config.control_rate_hz, self._tick)
        self._last_reason = None
        if declare(self, "autostart", False):
            self.loop.start()
        self.get_logger().info(f"policy '{self.loop.spec.name}' ready; call ~/start to move")

    def _on_estop(self, msg: Bool) -> None:
        if msg.data:
            self.loop.stop("e-stop topic")

    def _start(self, _req: Any, resp: Any) -> Any:
        self.loop.start()
        resp.success, resp.message = True, "started"
        return resp

    def _stop(self, _req: Any, resp: Any) -> Any:
        self.loop.stop("~/stop service")
        resp.success, resp.message = True, "stopped (latched until ~/start)"
        return resp

    def _tick(self) -> None:
        result = self.loop.tick()
        if result.message is not None:
            self.pub.publish(result.message)
        if result.reason != self._last_reason:  # say each change once, not every tick
            self._last_reason = result.reason
            self.status.publish(String(data=result.reason or "running"))
            if result.reason:
                self.get_logger().warning(result.reason)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = PolicyNode()
    spin(node, lambda: node.loop.stop("shutdown"))


if __name__ == "__main__":
    main()
