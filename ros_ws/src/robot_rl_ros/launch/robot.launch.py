"""Policy, recorder and reward nodes together (record what the policy does, scored live)."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    config = os.path.join(get_package_share_directory("robot_rl_ros"), "config")
    command = [("command", LaunchConfiguration("command_topic"))]
    sim_time = {"use_sim_time": LaunchConfiguration("use_sim_time")}  # sim-time joint_states: the watchdog needs it
    return LaunchDescription([
        DeclareLaunchArgument("checkpoint"),
        DeclareLaunchArgument("env_spec_file"),
        DeclareLaunchArgument("reward_model"),
        DeclareLaunchArgument("output", default_value="recordings/robot.h5"),
        DeclareLaunchArgument("command_topic", default_value="/arm_controller/joint_trajectory"),
        DeclareLaunchArgument("use_sim_time", default_value="false"),
        Node(package="robot_rl_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[os.path.join(config, "policy.yaml"), {"checkpoint": LaunchConfiguration("checkpoint")},
                         sim_time],
             remappings=command),
        Node(package="robot_rl_ros", executable="recorder_node", name="recorder_node", output="screen",
             parameters=[os.path.join(config, "recorder.yaml"),
                         {"env_spec_file": LaunchConfiguration("env_spec_file"),
                          "output": LaunchConfiguration("output")}, sim_time],
             remappings=command),
        Node(package="robot_rl_ros", executable="reward_node", name="reward_node", output="screen",
             parameters=[os.path.join(config, "reward.yaml"),
                         {"env_spec_file": LaunchConfiguration("env_spec_file"),
                          "reward_model": LaunchConfiguration("reward_model")}, sim_time],
             remappings=command),
    ])
