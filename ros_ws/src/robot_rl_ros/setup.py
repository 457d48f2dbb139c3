"""ament_python package of the robot_rl ROS 2 nodes (the logic lives in the pip-installed ``robot_rl.ros``)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "robot_rl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(exclude=["test"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="robot_rl maintainers",
    maintainer_email="robot-rl@example.com",
    description="Thin rclpy nodes for robot_rl: policy (with safety gate), recorder, reward.",
    license="Apache-2.0",
    extras_require={"test": ["pytest"]},  # setuptools >= 72 drops tests_require: colcon test would run nothing
    entry_points={
        "console_scripts": [
            "policy_node = robot_rl_ros.policy_node:main",
            "recorder_node = robot_rl_ros.recorder_node:main",
            "reward_node = robot_rl_ros.reward_node:main",
        ],
    },
)
