"""``reward_node``: scores the current observation with a learned reward model.

Subscribes ``joint_states`` and ``command`` (the last action); a timer at ``rate_hz`` publishes the ensemble-mean
reward on ``~/reward`` and the success probability on ``~/success_probability`` (std_msgs/Float64).
"""

from __future__ import annotations

import rclpy
import torch
from rclpy.node import Node
from rclpy.parameter import Parameter
from std_msgs.msg import Float64

from robot_rl.apps.robot_nodes import load_reward_scorer
from robot_rl.core.specs import EnvSpec
from robot_rl.ros.control import MessageCache, ObservationConfig, build_observation
from robot_rl.ros.convert import ConversionError, command_to_array
from robot_rl_ros.common import COMMAND_TYPES, declare, declare_list, spin, subscribe_observations


class RewardNode(Node):
    def __init__(self) -> None:
        super().__init__("reward_node")
        model, spec_file = declare(self, "reward_model", ""), declare(self, "env_spec_file", "")
        if not model or not spec_file:
            raise SystemExit("reward_node: set 'reward_model' (RewardModel.save file) and 'env_spec_file'")
        with open(spec_file) as f:
            self.spec = EnvSpec.from_json(f.read())
        self.scorer = load_reward_scorer(model, float(declare(self, "success_threshold", 0.5)))
        self.kind = declare(self, "command_kind", "joint_trajectory")
        self.obs_config = ObservationConfig(tuple(declare_list(self, "joint_names", Parameter.Type.STRING_ARRAY)),
                                            tuple(declare(self, "state_fields", ["position"])))
        self.cache = MessageCache()
        self.subs = subscribe_observations(self, self.cache, [], False)
        self.subs.append(self.create_subscription(COMMAND_TYPES[self.kind], "command",
                                                  lambda m: self.cache.put("command", m), 10))
        self.reward_pub = self.create_publisher(Float64, "~/reward", 10)
        self.success_pub = self.create_publisher(Float64, "~/success_probability", 10)
        self.timer = self.create_timer(1.0 / float(declare(self, "rate_hz", 10.0)), self._tick)

    def _tick(self) -> None:
        snapshot = self.cache.snapshot()
        try:
            obs = build_observation(snapshot, self.obs_config)
            action = None
            if "command" in snapshot:
                physical = command_to_array(snapshot["command"], self.kind, self.obs_config.joint_names)
                action = self.spec.action.from_physical(torch.from_numpy(physical)[None])[0].numpy()
            score = self.scorer.score(obs.terms["state"], action)
        except (ConversionError, ValueError) as e:
            self.get_logger().warning(f"no reward: {e}", throttle_duration_sec=2.0)
            return
        self.reward_pub.publish(Float64(data=score.reward))
        self.success_pub.publish(Float64(data=score.success_probability))


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = RewardNode()
    spin(node, lambda: None)


if __name__ == "__main__":
    main()
