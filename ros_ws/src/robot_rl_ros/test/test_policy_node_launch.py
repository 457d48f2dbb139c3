"""launch_testing: policy_node on a toy checkpoint publishes nothing until ~/start, then commands; ~/stop latches.

Run inside the ROS image: ``colcon test --packages-select robot_rl_ros`` (or ``launch_test`` on this file).
Needs ``ROBOT_RL_TEST_CHECKPOINT`` (a robot-rl run folder of a 2-joint joint_position policy; see
tests/ros/__init__.py ``train_toy_policy``); skips without it.
"""

import os
import time
import unittest

import launch
import launch_ros.actions
import launch_testing.actions
import pytest
import rclpy
from sensor_msgs.msg import JointState
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

CHECKPOINT = os.environ.get("ROBOT_RL_TEST_CHECKPOINT", "")


@pytest.mark.launch_test
def generate_test_description():
    if not CHECKPOINT:
        pytest.skip("set ROBOT_RL_TEST_CHECKPOINT to a toy robot-rl run folder")
    node = launch_ros.actions.Node(
        package="robot_rl_ros", executable="policy_node", name="policy_node",
        parameters=[{"checkpoint": CHECKPOINT, "joint_names": ["shoulder", "elbow"], "control_rate_hz": 20.0,
                     "lower": [-1.0, -1.0], "upper": [1.0, 1.0], "max_delta": [0.3, 0.3], "max_obs_age_s": 0.5}])
    return launch.LaunchDescription([node, launch_testing.actions.ReadyToTest()])


class TestPolicyNode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node("policy_node_test")
        cls.commands = []
        cls.node.create_subscription(JointTrajectory, "command", cls.commands.append, 10)
        cls.joints = cls.node.create_publisher(JointState, "joint_states", 10)

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def spin_for(self, seconds):
        end = time.time() + seconds
        while time.time() < end:
            msg = JointState(name=["shoulder", "elbow"], position=[0.5, -0.5], velocity=[0.0, 0.0])
            msg.header.stamp = self.node.get_clock().now().to_msg()
            self.joints.publish(msg)
            rclpy.spin_once(self.node, timeout_sec=0.02)

    def call(self, name):
        client = self.node.create_client(Trigger, f"/policy_node/{name}")
        # The services exist only once torch has loaded and the checkpoint is read (tens of seconds on a cold
        # container), so wait generously.
        self.assertTrue(client.wait_for_service(timeout_sec=120.0))
        future = client.call_async(Trigger.Request())
        rclpy.spin_until_future_complete(self.node, future, timeout_sec=5.0)
        return future.result()

    def test_start_stop(self):
        self.spin_for(1.0)
        self.assertEqual(self.commands, [], "commands were published before ~/start")
        self.assertTrue(self.call("start").success)
        self.spin_for(1.0)
        self.assertGreater(len(self.commands), 5)
        self.assertEqual(list(self.commands[-1].joint_names), ["shoulder", "elbow"])
        self.call("stop")
        self.spin_for(0.3)
        n = len(self.commands)
        self.spin_for(1.0)
        self.assertEqual(len(self.commands), n, "commands were published after ~/stop")
