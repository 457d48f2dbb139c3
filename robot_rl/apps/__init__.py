"""Applications that wire the lower layers together for one use: above ``rl`` and ``rewards`` (they may import
both), below ``cli``. Nothing below imports them.

- ``robot_nodes``: what the ROS 2 nodes in ``ros_ws/src/robot_rl_ros`` load from disk: a ``robot_rl.ros``
  ``ControlLoop`` running a run folder's policy, a ``RewardScorer`` of a saved reward model.
- ``actor`` / ``learner``: learning on the robot, ``robot-rl actor`` / ``learner`` over the DDS link of
  ``robot_rl.ros.dds.learning``; ``policy_weights``: the weights message between them.
"""

from robot_rl.apps.robot_nodes import load_control_loop, load_reward_scorer

__all__ = ["load_control_loop", "load_reward_scorer"]
