"""Launch the policy node (with its safety gate): ``ros2 launch robot_rl_ros policy.launch.py checkpoint:=runs/x``."""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("robot_rl_ros")
    return LaunchDescription([
        DeclareLaunchArgument("params", default_value=os.path.join(share, "config", "policy.yaml")),
        DeclareLaunchArgument("checkpoint", description="robot-rl run folder"),
        DeclareLaunchArgument("command_topic", default_value="/arm_controller/joint_trajectory"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true when joint_states are stamped in sim time (/clock)"),
        Node(package="robot_rl_ros", executable="policy_node", name="policy_node", output="screen",
             parameters=[LaunchConfiguration("params"), {"checkpoint": LaunchConfiguration("checkpoint"),
                                                         "use_sim_time": LaunchConfiguration("use_sim_time")}],
             remappings=[("command", LaunchConfiguration("command_topic"))]),
    ])
