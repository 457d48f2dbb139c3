"""What breaks the first time the ROS package is built and launched on ROS 2 Jazzy, checked without ROS.

Each check reads the file the Jazzy toolchain would read (setup.py for colcon, the Dockerfile, the launch files,
the nodes) and fails on the form that breaks there; the rclpy-side behaviour itself runs in the ROS image
(``colcon test --packages-select robot_rl_ros``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np

from robot_rl.data import Dataset
from robot_rl.ros import EpisodeRecorder
from tests.ros import SPEC

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "ros_ws" / "src" / "robot_rl_ros"
NODES = ("policy_node", "recorder_node", "reward_node")


def _call_keywords(path: Path, func: str) -> list[dict[str, ast.expr]]:
    calls = [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)
             and getattr(n.func, "id", getattr(n.func, "attr", None)) == func]
    return [{k.arg: k.value for k in c.keywords if k.arg} for c in calls]


def test_recorder_creates_the_output_folder(tmp_path: Path) -> None:
    """recorder_node's default output is recordings/robot.h5: the folder need not exist."""
    path = tmp_path / "recordings" / "nested" / "robot.h5"
    rec = EpisodeRecorder(path, SPEC, source="ros2:test", resume=True)
    rec.start()
    rec.record(np.zeros(2, np.float32), np.zeros(2))
    rec.observe(np.ones(2))
    assert rec.stop() == "demo_0"
    rec.close()
    with Dataset(path) as ds:
        assert ds.episode_names == ["demo_0"]


def test_setup_declares_test_extras_not_tests_require() -> None:
    """setuptools >= 72 drops ``tests_require``; colcon test then falls back to unittest and runs nothing."""
    (kw,) = _call_keywords(PACKAGE / "setup.py", "setup")
    assert "tests_require" not in kw
    extras = ast.literal_eval(kw["extras_require"])
    assert "pytest" in extras["test"]


def test_dockerfile_builds_without_symlink_install_and_has_a_dockerignore() -> None:
    text = (ROOT / "docker" / "ros.Dockerfile").read_text()
    builds = [line for line in text.splitlines() if "colcon build" in line and not line.lstrip().startswith("#")]
    assert builds and all("--symlink-install" not in line for line in builds)
    ignore = (ROOT / "docker" / "ros.Dockerfile.dockerignore").read_text().split()
    assert ignore[ignore.index("*") if "*" in ignore else -1] == "*", "the context must start from nothing"
    assert not any(line.startswith("!") and ".venv" in line for line in ignore)
    for needed in ("!robot_rl", "!ros_ws/src", "!pyproject.toml", "!constraints.txt"):
        assert needed in ignore


def test_nodes_end_cleanly_on_external_shutdown() -> None:
    """SIGTERM (docker stop, launch shutdown) raises ExternalShutdownException out of spin on Jazzy."""
    common = ast.parse((PACKAGE / "robot_rl_ros" / "common.py").read_text())
    spin = next(n for n in common.body if isinstance(n, ast.FunctionDef) and n.name == "spin")
    handlers = [h for n in ast.walk(spin) if isinstance(n, ast.Try) for h in n.handlers]
    caught = {e.id for h in handlers for e in (h.type.elts if isinstance(h.type, ast.Tuple) else [h.type])
              if isinstance(e, ast.Name)}
    assert {"KeyboardInterrupt", "ExternalShutdownException"} <= caught
    for node in NODES:
        tree = ast.parse((PACKAGE / "robot_rl_ros" / f"{node}.py").read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        called = {getattr(c.func, "id", None) for c in ast.walk(main) if isinstance(c, ast.Call)}
        assert "spin" in called, f"{node}.main must end through common.spin"
        assert not any(isinstance(n, ast.Try) for n in ast.walk(main)), f"{node}.main has its own try"


def test_float_parameters_accept_ints() -> None:
    """``control_rate_hz: 20`` in a params file is an INTEGER; a parameter typed from a float default refuses it."""
    common = (PACKAGE / "robot_rl_ros" / "common.py").read_text()
    (kw,) = [k for k in _call_keywords(PACKAGE / "robot_rl_ros" / "common.py", "ParameterDescriptor")]
    assert ast.literal_eval(kw["dynamic_typing"]) is True
    assert "return float(value)" in common


def test_estop_subscription_is_transient_local() -> None:
    common = (PACKAGE / "robot_rl_ros" / "common.py").read_text()
    assert "durability=DurabilityPolicy.TRANSIENT_LOCAL" in common and "ReliabilityPolicy.RELIABLE" in common
    tree = ast.parse((PACKAGE / "robot_rl_ros" / "policy_node.py").read_text())
    subs = [c for c in ast.walk(tree) if isinstance(c, ast.Call) and getattr(c.func, "attr", "") ==
            "create_subscription" and isinstance(c.args[1], ast.Constant) and c.args[1].value == "estop"]
    assert len(subs) == 1 and isinstance(subs[0].args[3], ast.Name) and subs[0].args[3].id == "LATCHED"


def test_launch_files_pass_use_sim_time_to_every_node() -> None:
    for launch in sorted((PACKAGE / "launch").glob("*.launch.py")):
        text = launch.read_text()
        assert 'DeclareLaunchArgument("use_sim_time"' in text, launch.name
        nodes = _call_keywords(launch, "Node")
        assert nodes
        for kw in nodes:
            assert "use_sim_time" in ast.unparse(kw["parameters"]) or "sim_time" in ast.unparse(kw["parameters"]), \
                f"{launch.name}: a node without use_sim_time"
