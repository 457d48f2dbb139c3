"""``recorder_node``: records episodes (teleoperation or a running policy) into a robot_rl HDF5 dataset.

Subscribes ``joint_states``, ``cameras/<cam>/image_raw`` (sensor-data QoS) and ``command`` (the command sent to
the robot, of ``command_kind``: the action recorded, mapped back to [-1, 1] with the env spec). A timer at
``record_rate_hz`` appends a step while recording. Services ``~/start``, ``~/stop`` (commits the episode) and
``~/mark_success``. Rewards are NaN; ``robot-rl relabel`` fills them later.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rclpy
import torch
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_srvs.srv import Trigger

from robot_rl.core.specs import EnvSpec
from robot_rl.ros.control import MessageCache, ObservationConfig, build_observation, image_key
from robot_rl.ros.convert import ConversionError, command_to_array
from robot_rl.ros.recorder import EpisodeRecorder, RecorderError
from robot_rl_ros.common import COMMAND_TYPES, declare, declare_list, spin, subscribe_observations

COMMAND = "command"


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("recorder_node")
        spec_file, output = declare(self, "env_spec_file", ""), declare(self, "output", "")
        if not spec_file or not output:
            raise SystemExit("recorder_node: set 'env_spec_file' (EnvSpec JSON) and 'output' (a .h5 path)")
        with open(spec_file) as f:
            self.spec = EnvSpec.from_json(f.read())
        cameras = declare_list(self, "cameras", Parameter.Type.STRING_ARRAY)
        self.kind = declare(self, "command_kind", "joint_trajectory")
        self.obs_config = ObservationConfig(tuple(declare_list(self, "joint_names", Parameter.Type.STRING_ARRAY)),
                                            tuple(declare(self, "state_fields", ["position"])), tuple(cameras),
                                            int(declare(self, "image_size", 0)) or None)
        self.recorder = EpisodeRecorder(output, self.spec, source=f"ros2:{self.get_fully_qualified_name()}",
                                        resume=bool(declare(self, "resume", True)), cameras=tuple(cameras))
        self.cache = MessageCache()
        self.subs = subscribe_observations(self, self.cache, cameras, bool(declare(self, "compressed", False)))
        self.subs.append(self.create_subscription(COMMAND_TYPES[self.kind], "command",
                                                  lambda m: self.cache.put(COMMAND, m), 10))
        self.create_service(Trigger, "~/start", self._start)
        self.create_service(Trigger, "~/stop", self._stop)
        self.create_service(Trigger, "~/mark_success", self._mark_success)
        self.timer = self.create_timer(1.0 / float(declare(self, "record_rate_hz", 10.0)), self._tick)

    def _tick(self) -> None:
        snapshot = self.cache.snapshot()
        try:
            obs = build_observation(snapshot, self.obs_config)
            if COMMAND not in snapshot:
                raise ConversionError("no command received yet")
            physical = command_to_array(snapshot[COMMAND], self.kind, self.obs_config.joint_names)
        except ConversionError as e:
            if self.recorder.recording:
                self.get_logger().warning(f"step skipped: {e}", throttle_duration_sec=2.0)
            return
        action = self.spec.action.from_physical(torch.from_numpy(physical)[None])[0].numpy()
        images = {c: obs.terms[image_key(c)] for c in self.obs_config.cameras}
        try:
            self.recorder.record(obs.terms["state"], np.asarray(action), images)
        except RecorderError as e:
            self.get_logger().warning(f"step skipped: {e}", throttle_duration_sec=2.0)

    def _answer(self, resp: Any, fn: Any, ok: str) -> Any:
        try:
            result = fn()
            resp.success, resp.message = True, ok.format(result)
        except RecorderError as e:
            resp.success, resp.message = False, str(e)
        return resp

    def _start(self, _req: Any, resp: Any) -> Any:
        return self._answer(resp, self.recorder.start, "recording")

    def _stop(self, _req: Any, resp: Any) -> Any:
        return self._answer(resp, self.recorder.stop, "saved {}")

    def _mark_success(self, _req: Any, resp: Any) -> Any:
        return self._answer(resp, self.recorder.mark_success, "marked successful")


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = RecorderNode()
    spin(node, node.recorder.close)


if __name__ == "__main__":
    main()
