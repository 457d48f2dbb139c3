"""ROS-free logic of the robot nodes: message conversion, safety gate, control loop, recorder, reward scoring, and
teleop interventions (``teleop``: when a person's gamepad / SpaceMouse input overrides the policy).

Nothing here imports rclpy: the nodes in ``ros_ws/src/robot_rl_ros`` wire rclpy subscriptions, timers and services
to these classes, and tests drive them with ``rosbags`` message classes. This package uses ``robot_rl.core`` and
``robot_rl.data`` only: loading a policy or a reward model from a run folder is ``robot_rl.apps.robot_nodes``.

```
loop = ControlLoop(policy, policy.spec, config, rosbags_types())  # or, from a run folder:
loop = robot_rl.apps.robot_nodes.load_control_loop("runs/drawer", config, rosbags_types())
loop.cache.put("joint_states", msg)       # subscription callbacks only cache
loop.start()                               # ~/start: motion needs an explicit start
result = loop.tick()                       # timer: result.message to publish, or None and result.reason
```
"""

from robot_rl.ros.control import (
    ESTOP,
    JOINT_STATES,
    ControlConfig,
    ControlLoop,
    MessageCache,
    Observation,
    ObservationConfig,
    TickResult,
    build_observation,
    image_key,
)
from robot_rl.ros.convert import (
    COMMAND_KINDS,
    CommandKind,
    ConversionError,
    Intrinsics,
    MessageTypes,
    camera_info_to_intrinsics,
    command_to_array,
    compressed_image_to_array,
    float64_array_to_numpy,
    image_to_array,
    joint_state_to_array,
    make_command,
    rosbags_types,
    stamp_to_sec,
)
from robot_rl.ros.recorder import EpisodeRecorder, RecorderError
from robot_rl.ros.reward import RewardScore, RewardScorer
from robot_rl.ros.safety import GateDecision, SafetyConfig, SafetyGate

__all__ = [
    "COMMAND_KINDS", "ESTOP", "JOINT_STATES", "CommandKind", "ControlConfig", "ControlLoop", "ConversionError",
    "EpisodeRecorder", "GateDecision", "Intrinsics", "MessageCache", "MessageTypes", "Observation",
    "ObservationConfig", "RecorderError", "RewardScore", "RewardScorer", "SafetyConfig", "SafetyGate", "TickResult",
    "build_observation", "camera_info_to_intrinsics", "command_to_array", "compressed_image_to_array",
    "float64_array_to_numpy", "image_key", "image_to_array", "joint_state_to_array", "make_command",
    "rosbags_types", "stamp_to_sec",
]
