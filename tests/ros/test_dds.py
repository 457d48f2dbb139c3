"""The DDS participant (robot_rl.ros.dds): ROS 2 wire conventions checked against ``rosbags`` (the ROS 2 Humble
message definitions and its own CDR (de)serializer), and ``RosEnv`` over DDS between real processes on loopback."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pytest
import torch

pytest.importorskip("cyclonedds", reason="needs the dds extra")

from cyclonedds.idl import IdlStruct  # noqa: E402
from cyclonedds.idl._type_normalize import get_extended_type_hints  # noqa: E402
from cyclonedds.idl.types import array, sequence  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402
from rosbags.typesys.base import Nodetype  # noqa: E402

from robot_rl.core import ArraySpec  # noqa: E402
from robot_rl.envs.ros_env import RosEnv  # noqa: E402
from robot_rl.ros import ControlConfig, ObservationConfig, SafetyConfig  # noqa: E402
from robot_rl.ros.dds import MISSING  # noqa: E402
from robot_rl.ros.dds.msgs import MESSAGES, Bool, JointState, dds_types, ros_type_name  # noqa: E402
from robot_rl.ros.dds.participant import Participant  # noqa: E402
from robot_rl.ros.dds.qos import QosProfile, dds_topic, loopback_config  # noqa: E402
from robot_rl.ros.dds.transport import DdsTopics, DdsTransport  # noqa: E402
from tests.ros import JOINTS, SPEC  # noqa: E402

HUMBLE = get_typestore(Stores.ROS2_HUMBLE)
JAZZY = get_typestore(Stores.ROS2_JAZZY)
ROOT = Path(__file__).resolve().parents[2]
_domains = itertools.count()


# --- wire conventions against rosbags ----------------------------------------------------------------------------
def _rosbags_def(hint: Any) -> tuple[Any, Any]:
    """A cyclonedds field annotation in rosbags' field-definition form."""
    if hint is str:
        return Nodetype.BASE, ("string", 0)
    if hint is bool:
        return Nodetype.BASE, ("bool", 0)
    if isinstance(hint, sequence):
        return Nodetype.SEQUENCE, (_rosbags_def(hint.subtype), hint.max_length or 0)
    if isinstance(hint, array):
        return Nodetype.ARRAY, (_rosbags_def(hint.subtype), hint.length)
    if isinstance(hint, type) and issubclass(hint, IdlStruct):
        return Nodetype.NAME, ros_type_name(hint)
    return Nodetype.BASE, (get_args(hint)[1], 0)  # Annotated[int, 'int32']


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_idl_struct_matches_the_ros2_definition(name: str) -> None:
    cls = MESSAGES[name]
    pkg, _, typ = name.split("/")
    assert cls.__idl_typename__ == f"{pkg}::msg::dds_::{typ}_"
    mine = [(k, _rosbags_def(v)) for k, v in get_extended_type_hints(cls).items()]
    for store in (HUMBLE, JAZZY):
        assert mine == [(k, (v[0], v[1])) for k, v in store.fielddefs[name][1]]


def _fill(cls: type[Any], rng: np.random.Generator) -> Any:
    """An instance of ``cls`` with every field set to a non-default value."""
    def value(hint: Any) -> Any:
        if hint is str:
            return f"s{rng.integers(1000)}"
        if hint is bool:
            return True
        if isinstance(hint, sequence) and get_args(hint.subtype)[1:] == ("uint8",):
            return rng.integers(0, 256, int(rng.integers(1, 20)), dtype=np.uint8).tobytes()
        if isinstance(hint, sequence):
            return [value(hint.subtype) for _ in range(int(rng.integers(1, 4)))]
        if isinstance(hint, array):
            return [value(hint.subtype) for _ in range(hint.length)]
        if isinstance(hint, type) and issubclass(hint, IdlStruct):
            return _fill(hint, rng)
        kind = get_args(hint)[1]
        if kind.startswith("float"):  # a float32 field holds what a float32 can (Joy.axes)
            return float(np.float32(rng.normal() * 1e3)) if kind == "float32" else float(rng.normal() * 1e3)
        lo = -(2 ** 31) if kind == "int32" else -(2 ** 62) if kind == "int64" else 0
        hi = 255 if kind == "uint8" else 2 ** 31 - 1 if kind == "int32" else 2 ** 32 - 1
        return int(rng.integers(lo, hi))
    return cls(**{k: value(v) for k, v in get_extended_type_hints(cls).items()})


def _same(mine: Any, theirs: Any, where: str) -> None:
    if isinstance(mine, IdlStruct):
        for k in get_extended_type_hints(type(mine)):
            _same(getattr(mine, k), getattr(theirs, k), f"{where}.{k}")
    elif isinstance(mine, bytes | np.ndarray):
        assert np.array_equal(np.frombuffer(mine, np.uint8), np.asarray(theirs, np.uint8)), where
    elif isinstance(mine, list) and mine and isinstance(mine[0], IdlStruct):
        assert len(mine) == len(theirs), where
        for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(mine, list):
        assert list(np.asarray(theirs).tolist()) == mine, where
    else:
        assert mine == theirs, where


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_cdr_bytes_decode_with_rosbags_into_the_same_values(name: str) -> None:
    cls = MESSAGES[name]
    msg = _fill(cls, np.random.default_rng(abs(hash(name)) % 2 ** 32))
    data = msg.serialize()
    assert data[:4] == b"\x00\x01\x00\x00"  # CDR_LE, XCDR1 plain: what rmw_cyclonedds_cpp sends
    decoded = HUMBLE.deserialize_cdr(data, name)
    _same(msg, decoded, name)
    # and back: rosbags' bytes are ours, and decode with our struct
    theirs = HUMBLE.serialize_cdr(decoded, name)
    assert bytes(theirs) == data
    _same(cls.deserialize(bytes(theirs)), decoded, name)


def test_names_and_commands() -> None:
    assert dds_topic("/joint_states") == "rt/joint_states"
    assert dds_topic("cameras/wrist/image_raw", "/arm") == "rt/arm/cameras/wrist/image_raw"
    for bad in ("~/status", "a//b", "1x", ""):
        with pytest.raises(ValueError, match="not a ROS 2 topic name"):
            dds_topic(bad)
    from robot_rl.ros.convert import make_command
    msg = make_command(dds_types(), "joint_trajectory", np.array([0.1, -0.2]), JOINTS, stamp=12.5)
    decoded = HUMBLE.deserialize_cdr(msg.serialize(), "trajectory_msgs/msg/JointTrajectory")
    assert list(decoded.joint_names) == list(JOINTS) and decoded.header.stamp.sec == 12
    assert decoded.points[0].positions.tolist() == [0.1, -0.2] and decoded.points[0].time_from_start.nanosec == 1e8


def test_images_through_cdr_decode_with_the_stack_converters() -> None:
    import io

    from PIL import Image as PILImage

    from robot_rl.ros.control import decode_image
    from robot_rl.ros.dds.msgs import CompressedImage, Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    bgr = np.ascontiguousarray(pixels[..., ::-1])
    raw = Image(height=6, width=5, encoding="bgr8", step=18, data=np.pad(bgr, ((0, 0), (0, 1), (0, 0))).tobytes())
    back = Image.deserialize(raw.serialize())
    assert isinstance(back.data, np.ndarray) and back.data.flags.writeable
    assert np.array_equal(decode_image(back), pixels)  # row padding (step) and BGR handled
    png = io.BytesIO()
    PILImage.fromarray(pixels).save(png, format="PNG")
    compressed = CompressedImage(format="png", data=png.getvalue())
    assert np.array_equal(decode_image(CompressedImage.deserialize(compressed.serialize())), pixels)


def test_missing_cyclonedds_is_one_line_naming_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in [m for m in sys.modules if m.startswith("robot_rl.ros.dds.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "cyclonedds.idl", None)
    with pytest.raises(ImportError) as e:
        importlib.import_module("robot_rl.ros.dds.transport")
    assert str(e.value) == MISSING and "robot-rl[dds]" in MISSING and "\n" not in MISSING


# --- processes on loopback ---------------------------------------------------------------------------------------
@pytest.fixture
def domain(monkeypatch: pytest.MonkeyPatch) -> int:
    """A domain id no other test (or concurrent test run) uses, with DDS restricted to 127.0.0.1."""
    monkeypatch.setenv("CYCLONEDDS_URI", loopback_config())
    return 100 + (os.getpid() * 7 + next(_domains)) % 130


def start_robot(domain: int, tmp_path: Path, *args: str) -> tuple[subprocess.Popen[str], Path]:
    stats = tmp_path / f"robot-{domain}.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CYCLONEDDS_URI": loopback_config()}
    proc = subprocess.Popen([sys.executable, "-m", "robot_rl.ros.dds.echo_robot", "--joints", ",".join(JOINTS),
                             "--domain", str(domain), "--stats", str(stats), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    return proc, stats


def stop_robot(proc: subprocess.Popen[str], stats: Path) -> dict[str, Any]:
    proc.terminate()
    rc = proc.wait(timeout=20)
    assert rc == 0, proc.stderr.read() if proc.stderr else rc
    return json.loads(stats.read_text())


def test_ros_env_runs_over_dds_against_a_robot_process(domain: int, tmp_path: Path) -> None:
    robot, stats_file = start_robot(domain, tmp_path, "--rate", "50", "--start", "0.5,-0.5", "--cameras", "wrist")
    transport = DdsTransport(DdsTopics(cameras=("wrist",)), "float64_array", domain_id=domain, reset_timeout_s=20)
    try:
        spec = SPEC.__class__(**{**SPEC.__dict__, "observations": {**SPEC.observations,
                                                                   "image/wrist": ArraySpec((8, 8, 3), "uint8")}})
        safety = SafetyConfig(lower=(-1.0, -1.0), upper=(1.0, 1.0), max_delta=(0.3, 0.3), max_obs_age_s=0.5)
        config = ControlConfig(ObservationConfig(JOINTS, cameras=("wrist",)), command_kind="float64_array",
                               control_rate_hz=10.0, safety=safety)
        env = RosEnv(spec, transport, config, dds_types(), reset_timeout_s=10.0)
        obs, _ = env.reset(seed=0)
        assert torch.allclose(obs["state"], torch.tensor([[0.5, -0.5]]))
        assert obs["image/wrist"].shape == (1, 8, 8, 3) and obs["image/wrist"].dtype == torch.uint8
        res = env.step(torch.tensor([[0.1, -0.1]]))
        assert res.info["safety"] == "" and bool(res.info["commanded"][0])
        assert torch.allclose(res.obs["state"], torch.tensor([[0.2, -0.2]]))  # echoed, change cap 0.3
        for _ in range(4):  # the 5th step truncates: RosEnv resets through the handshake
            res = env.step(torch.tensor([[0.1, -0.1]]))
        assert bool(res.truncated[0])
        assert torch.allclose(res.info["final_obs"]["state"], torch.tensor([[0.1, -0.1]]))
        assert torch.allclose(res.obs["state"], torch.tensor([[0.5, -0.5]]))  # back at the start pose
    finally:
        transport.close()
        stats = stop_robot(robot, stats_file)
    assert stats["commands"] == transport.published == 5 and stats["resets"] == 2
    assert stats["last_command"] == pytest.approx([0.1, -0.1])


def test_latched_estop_published_before_the_subscriber_is_received(domain: int, tmp_path: Path) -> None:
    robot, stats_file = start_robot(domain, tmp_path, "--estop", "true")
    try:
        # contrast: a volatile subscription, matched to the robot's e-stop writer, never gets the earlier message
        volatile = Participant(domain)
        reader = volatile.reader("estop", Bool, QosProfile(reliable=True, transient_local=False, depth=1))
        deadline = time.monotonic() + 10
        while not reader.get_matched_publications() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert reader.get_matched_publications(), "the robot's e-stop writer was not discovered"
        volatile.wait(1.0)
        assert Participant.take(reader) == []
        volatile.close()

        transport = DdsTransport(DdsTopics(), "float64_array", domain_id=domain, reset_timeout_s=20)
        try:
            config = ControlConfig(ObservationConfig(JOINTS), command_kind="float64_array", control_rate_hz=10.0,
                                   safety=SafetyConfig(max_obs_age_s=0.5))
            env = RosEnv(SPEC, transport, config, dds_types(), reset_timeout_s=1.0)
            with pytest.raises(RuntimeError, match="e-stop is asserted"):
                env.reset()
            assert env.estopped and not env.gate.running
        finally:
            transport.close()
    finally:
        stop_robot(robot, stats_file)


def test_reset_without_a_robot_is_one_line(domain: int) -> None:
    transport = DdsTransport(DdsTopics(), domain_id=domain, discovery_timeout_s=0.5)
    try:
        want = (f"no subscriber for reset requests on 'reset' (domain {domain}) "
                "(no reset handler: DdsTopics(reset=None))")
        with pytest.raises(TimeoutError, match=re.escape(want)):
            transport.reset(None)
        with pytest.raises(TypeError, match="publishes trajectory_msgs/msg/JointTrajectory on 'command'"):
            transport.publish(JointState())
    finally:
        transport.close()


def test_participant_refuses_one_topic_with_two_types(domain: int) -> None:
    p = Participant(domain)
    try:
        p.writer("command", JointState)
        with pytest.raises(ValueError, match="'rt/command' is already sensor_msgs/msg/JointState, not std_msgs"):
            p.reader("command", Bool)
    finally:
        p.close()
