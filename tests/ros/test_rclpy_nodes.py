"""The rclpy package: imports and parses where ROS 2 is installed; skips (with the reason) where it is not."""

import ast
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "ros_ws" / "src" / "robot_rl_ros"


def test_package_files_parse():
    """Without ROS, at least every node, launch file and test is valid Python and setup.py names every node."""
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) >= 8
    for f in files:
        ast.parse(f.read_text(), str(f))
    setup = (PACKAGE / "setup.py").read_text()
    for node in ("policy_node", "recorder_node", "reward_node"):
        assert f"{node} = robot_rl_ros.{node}:main" in setup
        assert (PACKAGE / "robot_rl_ros" / f"{node}.py").is_file()
    assert (PACKAGE / "resource" / "robot_rl_ros").is_file()


@pytest.mark.ros
def test_nodes_import_with_rclpy(monkeypatch):
    if importlib.util.find_spec("rclpy") is None:
        pytest.skip("rclpy is not installed (ROS 2 is not on PyPI or Debian 12); run the launch tests in "
                    "docker/ros.Dockerfile: colcon test --packages-select robot_rl_ros")
    monkeypatch.syspath_prepend(str(PACKAGE))
    for node in ("policy_node", "recorder_node", "reward_node"):
        module = importlib.import_module(f"robot_rl_ros.{node}")
        assert callable(module.main)
