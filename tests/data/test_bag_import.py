"""``import-bag``: real rosbag2 (sqlite3, mcap) and plain MCAP bags written with ``rosbags`` -> HDF5 dataset."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from robot_rl.cli import import_bag_cmd
from robot_rl.data import Dataset, DatasetError
from robot_rl.data.bag_import import BagImportError, BagSpec, BagWarning, import_bag
from tests.data.bags import (
    JOINTS,
    boolean,
    compressed,
    float_array,
    frame_rgb,
    image,
    joint_pos,
    joint_state,
    robot_messages,
    string,
    write_bag,
)

SPEC: dict[str, Any] = {
    "env_name": "real/test-arm", "task": "wave", "control_hz": 10, "sync_tolerance": 0.05,
    "joints": {"topic": "/joint_states", "names": ["wrist", "shoulder", "elbow"]},
    "cameras": {"wrist": "/cam"}, "actions": {"topic": "/cmd", "scale": 100},
}
NEXT: dict[str, Any] = {"from_next_state": True, "low": -10, "high": 10}
"""Actions from the next joint positions, normalized by declared limits of +-10 rad."""


def spec(**changes: Any) -> BagSpec:
    d = {**SPEC, **changes}
    return BagSpec.from_dict({k: v for k, v in d.items() if v is not None})


def load(path: Path) -> tuple[list[Any], list[dict[str, Any]], Any]:
    with Dataset(path) as ds:
        return ([ds.load_episode(n, images=True) for n in ds.episode_names],
                [ds.episode_attrs(n) for n in ds.episode_names], ds.spec)


def reordered(t: np.ndarray) -> np.ndarray:
    """Known joint positions at times t, in the spec's order (wrist, shoulder, elbow)."""
    return np.stack([joint_pos(x)[[2, 0, 1]] for x in t])


@pytest.fixture(scope="module")
def robot_bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bags")
    messages = robot_messages()
    bags = {storage: write_bag(root / storage, messages, storage) for storage in ("sqlite3", "mcap")}
    bags["plain_mcap"] = next(bags["mcap"].glob("*.mcap"))
    return bags


@pytest.mark.parametrize("kind", ["sqlite3", "mcap", "plain_mcap"])
def test_import_values_shapes(robot_bags: dict[str, Path], tmp_path: Path, kind: str) -> None:
    report = import_bag(robot_bags[kind], spec(), tmp_path / "d.h5", image_compression="lzf")
    assert (report.episodes, report.steps, report.samples, report.dropped["total"]) == (1, 20, 21, 0)
    (ep,), (attrs,), env = load(tmp_path / "d.h5")
    t = np.arange(21) * 0.1
    np.testing.assert_allclose(ep.states, reordered(t[:-1]), atol=1e-6)
    np.testing.assert_allclose(ep.next_states, reordered(t[1:]), atol=1e-6)
    np.testing.assert_allclose(ep.actions, np.stack([np.arange(20), -np.arange(20)], 1) / 100, atol=1e-6)
    assert ep.images["wrist"].shape == (20, 8, 6, 3) and ep.images["wrist"].dtype == np.uint8
    np.testing.assert_array_equal(ep.images["wrist"], np.stack([frame_rgb(3 * k) for k in range(20)]))
    assert np.isnan(ep.rewards).all() and ep.dones.tolist() == [False] * 19 + [True] and ep.terminals[-1]
    assert not attrs["actions_from_next_state"]
    assert env.name == "real/test-arm" and env.task_text == "wave" and env.control_hz == 10
    assert env.state_dim == 3 and env.action.dim == 2 and env.action.scale == (100.0, 100.0)
    assert env.extras["joint_names"] == ["wrist", "shoulder", "elbow"] and env.cameras == ("wrist",)
    assert env.observations["image/wrist"].shape == (8, 6, 3)


def test_reorder_by_name_and_interpolation(tmp_path: Path) -> None:
    """Joint messages in changing name orders, off the grid (every 0.03 s from 0.013 s): linear interpolation."""
    orders = [JOINTS, ("wrist", "elbow", "shoulder"), ("elbow", "shoulder", "wrist")]
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", 0.013 + 0.03 * k,
             joint_state(0.013 + 0.03 * k, orders[k % 3])) for k in range(40)]
    write_bag(tmp_path / "b", msgs)
    report = import_bag(tmp_path / "b", spec(cameras=None, actions=NEXT,
                                             sync_tolerance=0.02), tmp_path / "d.h5")
    (ep,), (attrs,), env = load(tmp_path / "d.h5")
    t = 0.013 + 0.1 * np.arange(12)  # grid starts at the first joint stamp, ends before 0.013 + 1.17
    assert report.steps == 11 and ep.length == 11
    np.testing.assert_allclose(ep.states, reordered(t[:-1]), atol=1e-6)
    np.testing.assert_allclose(ep.actions, reordered(t[1:]) / 10, atol=1e-6)  # action = next joint positions / 10
    assert attrs["actions_from_next_state"] and env.extras["actions_from_next_state"]
    assert env.action.names == ("wrist", "shoulder", "elbow")


def test_default_joint_order_is_the_first_message(tmp_path: Path) -> None:
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10, ("elbow", "wrist", "shoulder")
                                                                                if k == 0 else JOINTS))
            for k in range(5)]
    write_bag(tmp_path / "b", msgs)
    import_bag(tmp_path / "b", spec(cameras=None, actions=NEXT,
                                    joints={"topic": "/joint_states"}), tmp_path / "d.h5")
    (ep,), _, env = load(tmp_path / "d.h5")
    assert env.extras["joint_names"] == ["elbow", "wrist", "shoulder"]
    np.testing.assert_allclose(ep.states, np.stack([joint_pos(k / 10)[[1, 2, 0]] for k in range(4)]), atol=1e-6)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "png", "jpeg"])
def test_encodings_padding_compressed(tmp_path: Path, encoding: str) -> None:
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10)) for k in range(4)]
    for k in range(4):
        rgb = frame_rgb(10 * k, 16, 16)
        if encoding == "mono8":
            rgb[:] = rgb[:, :, :1]
        msg = compressed(k / 10, rgb, encoding) if encoding in ("png", "jpeg") else image(k / 10, rgb, encoding, pad=5)
        kind = "sensor_msgs/msg/CompressedImage" if encoding in ("png", "jpeg") else "sensor_msgs/msg/Image"
        msgs.append(("/cam", kind, k / 10, msg))
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]), "mcap")
    import_bag(tmp_path / "b", spec(actions=NEXT), tmp_path / "d.h5")
    (ep,), _, _ = load(tmp_path / "d.h5")
    want = np.stack([frame_rgb(10 * k, 16, 16) for k in range(3)])
    if encoding == "mono8":
        want[:] = want[:, :, :, :1]
    got = ep.images["wrist"].astype(int)
    assert np.abs(got - want).max() <= (8 if encoding == "jpeg" else 0)


def test_string_markers_split_episodes(tmp_path: Path) -> None:
    msgs = robot_messages(seconds=3.0)
    for t, text in [(0.2, "start"), (1.0, "end"), (1.5, "start"), (2.2, "next"), (2.9, "end")]:
        msgs.append(("/episode", "std_msgs/msg/String", t, string(text)))
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]))
    report = import_bag(tmp_path / "b", spec(episodes={"marker_topic": "/episode"}), tmp_path / "d.h5")
    eps, attrs, _ = load(tmp_path / "d.h5")
    assert [e.length for e in eps] == [8, 7, 7] and report.episodes == 3
    assert [round(a["bag_time_start"], 3) for a in attrs] == [0.2, 1.5, 2.2]
    np.testing.assert_allclose(eps[1].states[0], reordered(np.array([1.5]))[0], atol=1e-6)
    assert all(e.dones[-1] and e.terminals[-1] for e in eps)


def test_bool_markers_and_gap_split(tmp_path: Path) -> None:
    msgs = [m for m in robot_messages(seconds=4.0) if not 1.5 < m[2] < 2.5]  # a 1 s pause in everything
    msgs += [("/episode", "std_msgs/msg/Bool", 0.0, boolean(True)), ("/episode", "std_msgs/msg/Bool", 3.5,
                                                                     boolean(False))]
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]), "mcap")
    report = import_bag(tmp_path / "b", spec(episodes={"marker_topic": "/episode", "gap_s": 0.5}), tmp_path / "d.h5")
    eps, attrs, _ = load(tmp_path / "d.h5")
    assert [e.length for e in eps] == [15, 10] and report.dropped["total"] == 0
    assert not eps[0].terminals[-1] and eps[0].dones[-1]  # cut by the gap: truncated, not terminal
    assert eps[1].terminals[-1] and round(attrs[1]["bag_time_start"], 3) == 2.5


def test_samples_outside_tolerance_dropped_and_counted(tmp_path: Path) -> None:
    write_bag(tmp_path / "b", robot_messages(skip_cam=(0.55, 1.0)))
    report = import_bag(tmp_path / "b", spec(), tmp_path / "d.h5")
    eps, _, _ = load(tmp_path / "d.h5")
    # previous frame at 0.5333: grid 0.6 is within 0.05 s? no (0.067) -> dropped 0.6..1.0 (frame 1.0333 next)
    assert report.dropped["camera:wrist"] == 5 and report.dropped["total"] == 5 and report.samples == 21
    assert [e.length for e in eps] == [5, 9] and not eps[0].terminals[-1] and eps[1].terminals[-1]
    assert "camera:wrist 5" in report.summary()


def test_out_of_order_stamps_sorted_with_warning_or_refused(tmp_path: Path) -> None:
    msgs = robot_messages(cam_hz=10, cmd_hz=10)
    i = next(i for i, m in enumerate(msgs) if m[0] == "/cam" and m[2] == 0.5)
    j = next(i for i, m in enumerate(msgs) if m[0] == "/cam" and m[2] == 0.6)
    msgs[i], msgs[j] = msgs[j], msgs[i]  # header stamps 0.6 then 0.5
    write_bag(tmp_path / "b", msgs, log={i: msgs[j][2], j: msgs[i][2]})
    with pytest.warns(BagWarning, match=r"topic '/cam' at t=0\.500s: stamps go back in time"):
        report = import_bag(tmp_path / "b", spec(), tmp_path / "d.h5")
    (ep,), _, _ = load(tmp_path / "d.h5")
    np.testing.assert_array_equal(ep.images["wrist"][:, 0, 0, 0], np.arange(20))
    assert len(report.warnings) == 1
    with pytest.raises(BagImportError, match=r"^\S+/b: topic '/cam' at t=0\.500s: stamps go back in time"):
        import_bag(tmp_path / "b", spec(out_of_order="error"), tmp_path / "e.h5")


def _one_line(exc: pytest.ExceptionInfo[BaseException], *parts: str) -> None:
    text = str(exc.value)
    assert "\n" not in text, text
    for part in parts:
        assert part in text, text


def test_errors_missing_topic_and_unknown_type(robot_bags: dict[str, Path], tmp_path: Path) -> None:
    bag = robot_bags["sqlite3"]
    with pytest.raises(BagImportError) as e:
        import_bag(bag, spec(cameras={"wrist": "/nope"}), tmp_path / "d.h5")
    _one_line(e, str(bag), "topic '/nope' (camera:wrist) is not in the bag", "/joint_states")
    with pytest.raises(BagImportError) as e:
        import_bag(bag, spec(cameras={"wrist": "/cmd"}, actions=NEXT), tmp_path / "d.h5")
    _one_line(e, str(bag), "topic '/cmd'", "type 'std_msgs/msg/Float64MultiArray'", "sensor_msgs/msg/Image")
    assert not (tmp_path / "d.h5").exists()


def test_errors_bad_messages_name_topic_and_time(tmp_path: Path) -> None:
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10)) for k in range(5)]
    bad = msgs + [("/cam", "sensor_msgs/msg/Image", k / 10, image(k / 10, frame_rgb(k), "16UC1" if k == 3 else "rgb8"))
                  for k in range(5)]
    write_bag(tmp_path / "enc", sorted(bad, key=lambda m: m[2]))
    with pytest.raises(BagImportError) as e:
        import_bag(tmp_path / "enc", spec(actions=NEXT), tmp_path / "d.h5")
    _one_line(e, "enc: topic '/cam' at t=0.300s", "encoding '16UC1' is not supported")
    missing = msgs + [("/joint_states", "sensor_msgs/msg/JointState", 0.7, joint_state(0.7, ("elbow", "wrist"),
                                                                                        np.zeros(2)))]
    write_bag(tmp_path / "names", missing)
    with pytest.raises(BagImportError) as e:
        import_bag(tmp_path / "names", spec(cameras=None, actions=NEXT), tmp_path / "d.h5")
    _one_line(e, "names: topic '/joint_states' at t=0.700s", "joint 'shoulder' not in the message")
    widths = msgs + [("/cmd", "std_msgs/msg/Float64MultiArray", k / 10, float_array([1.0] * (2 + (k == 2))))
                     for k in range(5)]
    write_bag(tmp_path / "widths", sorted(widths, key=lambda m: m[2]), "mcap")
    with pytest.raises(BagImportError) as e:
        import_bag(tmp_path / "widths", spec(cameras=None), tmp_path / "d.h5")
    _one_line(e, "widths: topic '/cmd' at t=0.200s", "3 values")


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_errors_corrupt_or_missing_file(robot_bags: dict[str, Path], tmp_path: Path, storage: str) -> None:
    src = next(robot_bags[storage].glob("*.db3" if storage == "sqlite3" else "*.mcap"))
    data = src.read_bytes()
    truncated = tmp_path / f"cut{src.suffix}"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / f"garbage{src.suffix}"
    garbage.write_bytes(b"\x00not a bag\x01" * 100)
    bads = [truncated, garbage]
    if storage == "mcap":  # valid header and index, damaged chunk: fails while reading messages
        damaged = tmp_path / "damaged.mcap"
        damaged.write_bytes(data[:len(data) // 2] + b"\xff" * 200 + data[len(data) // 2 + 200:])
        bads.append(damaged)
    for bad in bads:
        with pytest.raises(BagImportError) as e:
            import_bag(bad, spec(), tmp_path / "d.h5")
        _one_line(e, str(bad))
        assert not (tmp_path / "d.h5").exists()
    with pytest.raises(BagImportError, match="no such bag"):
        import_bag(tmp_path / "absent", spec(), tmp_path / "d.h5")


def test_spec_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="key 'control_hz'"):
        BagSpec.from_dict({**SPEC, "control_hz": 0})
    with pytest.raises(DatasetError, match="either actions.topic or actions.from_next_state"):
        BagSpec.from_dict({**SPEC, "actions": {}})
    with pytest.raises(DatasetError, match="key 'joints.topix': unknown"):
        BagSpec.from_dict({**SPEC, "joints": {"topix": "/j"}})
    bad = tmp_path / "s.yaml"
    bad.write_text("control_hz: [\n")
    with pytest.raises(DatasetError, match="s.yaml: cannot read the topics spec"):
        BagSpec.from_yaml(bad)
    BagSpec.from_yaml(Path(__file__).parents[2] / "configs" / "bag_topics.example.yaml")


def test_cli(robot_bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "topics.yaml").write_text(
        "control_hz: 10\njoints: {topic: /joint_states}\ncameras: {wrist: /cam}\n"
        "actions: {topic: /cmd, low: -100, high: 100}\n")
    parser = argparse.ArgumentParser()
    import_bag_cmd.add_parser(parser.add_subparsers(dest="command"), "import-bag")
    args = parser.parse_args(["import-bag", str(robot_bags["mcap"]), "--spec", str(tmp_path / "topics.yaml"),
                              "--out", str(tmp_path / "out" / "d.h5"), "--image-compression", "lzf"])
    assert import_bag_cmd.run(args) == 0
    assert "1 episodes, 20 steps" in capsys.readouterr().err
    eps, _, _ = load(tmp_path / "out" / "d.h5")
    assert eps[0].length == 20


def _trajectory(t: float, k: int) -> Any:
    from tests.data.bags import TS, header

    point = TS.types["trajectory_msgs/msg/JointTrajectoryPoint"](
        positions=np.array([k, 10 * k, 100 * k], dtype=np.float64), velocities=np.zeros(0),
        accelerations=np.zeros(0), effort=np.zeros(0),
        time_from_start=TS.types["builtin_interfaces/msg/Duration"](sec=0, nanosec=100_000_000))
    return TS.types["trajectory_msgs/msg/JointTrajectory"](header=header(t), joint_names=list(JOINTS), points=[point])


def _twist(t: float, k: int) -> Any:
    from tests.data.bags import TS, header

    vec = TS.types["geometry_msgs/msg/Vector3"]
    twist = TS.types["geometry_msgs/msg/Twist"](linear=vec(x=k, y=0.0, z=-k), angular=vec(x=0.0, y=0.5, z=0.0))
    return TS.types["geometry_msgs/msg/TwistStamped"](header=header(t), twist=twist)


@pytest.mark.parametrize("kind", ["trajectory_msgs/msg/JointTrajectory", "geometry_msgs/msg/TwistStamped"])
def test_trajectory_and_twist_commands_and_velocity(tmp_path: Path, kind: str) -> None:
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10)) for k in range(5)]
    make = _trajectory if kind.endswith("JointTrajectory") else _twist
    msgs += [("/cmd", kind, k / 10, make(k / 10, k)) for k in range(5)]
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]), "mcap")
    mode = "joint_position" if kind.endswith("JointTrajectory") else "twist"
    import_bag(tmp_path / "b", spec(cameras=None, actions={"topic": "/cmd", "mode": mode, "scale": 1000},
                                    joints={"topic": "/joint_states", "names": ["wrist", "shoulder", "elbow"],
                                            "velocity": True}), tmp_path / "d.h5")
    (ep,), _, env = load(tmp_path / "d.h5")
    k = np.arange(4)
    if mode == "twist":
        want = np.stack([k, 0 * k, -k, 0 * k, 0 * k + 0.5, 0 * k], 1) / 1000
    else:
        want = np.stack([100 * k, k, 10 * k], 1) / 1000  # reordered by name: wrist, shoulder, elbow
    np.testing.assert_allclose(ep.actions, want, atol=1e-6)
    assert env.state_dim == 6 and env.action.mode == mode and [s.name for s in env.state_slices] == [
        "joint_pos", "joint_vel"]
    np.testing.assert_allclose(ep.states[:, 3:], -ep.states[:, :3], atol=1e-6)  # the bags' velocity = -position


def _sim_time_joint_state(t: float, sim_t0: float = 1400.0) -> Any:
    """JointState at bag time t whose header is stamped in simulation time (``sim_t0 + t`` s, not the epoch)."""
    from tests.data.bags import TS

    msg = joint_state(t)
    ns = round((sim_t0 + t) * 1e9)
    msg.header.stamp = TS.types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return msg


def test_unstamped_twist_is_an_action_type(tmp_path: Path) -> None:
    from tests.data.bags import TS

    vec = TS.types["geometry_msgs/msg/Vector3"]
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10)) for k in range(6)]
    msgs += [("/cmd_vel", "geometry_msgs/msg/Twist", k / 10,
              TS.types["geometry_msgs/msg/Twist"](linear=vec(x=0.1 * k, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=-k)))
             for k in range(6)]
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]))
    import_bag(tmp_path / "b", spec(cameras=None, actions={"topic": "/cmd_vel", "mode": "twist", "low": -10,
                                                           "high": 10}), tmp_path / "d.h5")
    (ep,), _, env = load(tmp_path / "d.h5")
    k = np.arange(5)
    np.testing.assert_allclose(ep.actions, np.stack([0.1 * k, 0 * k, 0 * k, 0 * k, 0 * k, -k], 1) / 10, atol=1e-6)
    assert env.action.mode == "twist" and env.action.dim == 6


@pytest.mark.parametrize("other", ["commands", "marker"])
def test_two_clocks_refused_naming_both_then_log_clock_imports(tmp_path: Path, other: str) -> None:
    """JointState stamped in sim time (~1400 s) with a header-less topic timed by the log clock (~1.7e9 s)."""
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, _sim_time_joint_state(k / 10)) for k in range(21)]
    if other == "commands":
        msgs += [("/cmd", "std_msgs/msg/Float64MultiArray", k / 10, float_array([k, -k])) for k in range(21)]
        kw: dict[str, Any] = {"actions": {"topic": "/cmd", "scale": 100}}
    else:
        msgs += [("/episode", "std_msgs/msg/String", 1.0, string("split"))]
        kw = {"actions": NEXT, "episodes": {"marker_topic": "/episode"}}
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]))
    topic = "/cmd" if other == "commands" else "/episode"
    with pytest.raises(BagImportError) as e:
        import_bag(tmp_path / "b", spec(cameras=None, **kw), tmp_path / "d.h5")
    _one_line(e, "two clocks", "'/joint_states' is stamped t=1400.000 s (header clock)", f"'{topic}'",
              "has no header", "log clock t=170000000", "clock: log")
    assert "sync_tolerance" not in str(e.value) and not (tmp_path / "d.h5").exists()
    report = import_bag(tmp_path / "b", spec(cameras=None, clock="log", **kw), tmp_path / "d.h5")
    assert report.dropped["total"] == 0
    assert report.episodes == (1 if other == "commands" else 2) and report.steps == 20
    eps, _, env = load(tmp_path / "d.h5")
    assert env.extras["clock"] == "log"
    if other == "commands":
        np.testing.assert_allclose(eps[0].actions, np.stack([np.arange(20), -np.arange(20)], 1) / 100, atol=1e-6)


def test_stamped_topics_on_two_clocks_refused(tmp_path: Path) -> None:
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10)) for k in range(11)]
    msgs += [("/cam", "sensor_msgs/msg/Image", k / 10, image(k / 10, frame_rgb(k))) for k in range(11)]
    for _, _, t, m in msgs[11:]:  # the camera's driver stamps sim time
        m.header.stamp.sec, m.header.stamp.nanosec = 1400 + int(t), round((t % 1) * 1e9)
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]))
    with pytest.raises(BagImportError) as e:
        import_bag(tmp_path / "b", spec(actions=NEXT), tmp_path / "d.h5")
    _one_line(e, "two clocks", "'/joint_states' is stamped t=1700000000.000 s", "'/cam' t=1400.000 s", "clock: log")
    assert import_bag(tmp_path / "b", spec(actions=NEXT, clock="log"), tmp_path / "d.h5").steps == 10


def test_resume_skips_what_was_imported_from_the_same_bag(tmp_path: Path) -> None:
    """Importing a bag twice with --resume adds nothing; a partly imported bag gets only its missing episodes."""
    from robot_rl.data.bag_import import build_episodes, read_bag
    from robot_rl.data.writer import DatasetWriter

    msgs = robot_messages(seconds=3.0) + [("/episode", "std_msgs/msg/String", 1.0, string("next")),
                                          ("/episode", "std_msgs/msg/String", 2.0, string("next"))]
    bag = write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]), "mcap")
    other = write_bag(tmp_path / "c", robot_messages(seconds=1.0), "mcap")
    s = spec(episodes={"marker_topic": "/episode"})
    episodes, env_spec, _ = build_episodes(read_bag(bag, s), s)
    assert len(episodes) == 3
    with DatasetWriter(tmp_path / "d.h5", env_spec, source="rosbag:b", task_text="wave") as w:
        w.add_episode(episodes[1])  # as if an import died after writing one episode
    report = import_bag(bag, s, tmp_path / "d.h5", resume=True)
    assert (report.episodes, report.skipped) == (2, 1) and "skipped 1 episodes already imported" in report.summary()
    again = import_bag(bag, s, tmp_path / "d.h5", resume=True)
    assert (again.episodes, again.steps, again.skipped) == (0, 0, 3)
    more = import_bag(other, spec(), tmp_path / "d.h5", resume=True)
    assert (more.episodes, more.skipped) == (1, 0)
    _, attrs, _ = load(tmp_path / "d.h5")
    starts = sorted((a["bag_sha256"][:8], round(a["bag_time_start"], 3)) for a in attrs)
    assert len(starts) == 4 and len(set(starts)) == 4


def test_actions_normalized_from_limits_or_refused(tmp_path: Path) -> None:
    """Commands around 5,000 (e.g. motor ticks): declared limits normalize them; without limits, a refusal."""
    msgs = [("/joint_states", "sensor_msgs/msg/JointState", k / 10, joint_state(k / 10)) for k in range(6)]
    msgs += [("/cmd", "std_msgs/msg/Float64MultiArray", k / 10, float_array([4000 + 200 * k, 10.0]))
             for k in range(6)]
    write_bag(tmp_path / "b", sorted(msgs, key=lambda m: m[2]))
    with pytest.raises(BagImportError) as e:
        import_bag(tmp_path / "b", spec(cameras=None, actions={"topic": "/cmd"}), tmp_path / "d.h5")
    _one_line(e, "topic '/cmd'", "dimension 0 is 4000..4800 raw", "actions.low/actions.high")
    assert not (tmp_path / "d.h5").exists()
    import_bag(tmp_path / "b", spec(cameras=None, actions={"topic": "/cmd", "low": [0, 0], "high": [8000, 20]}),
               tmp_path / "d.h5")
    (ep,), _, env = load(tmp_path / "d.h5")
    np.testing.assert_allclose(ep.actions[:, 0], (4000 + 200 * np.arange(5) - 4000) / 4000, atol=1e-6)
    np.testing.assert_allclose(ep.actions[:, 1], 0.0, atol=1e-6)
    assert env.action.scale == (4000.0, 10.0) and env.action.offset == (4000.0, 10.0)
    for bad, where in [({"low": 0}, "actions.high': missing"), ({"low": 1, "high": 1}, "must be above actions.low"),
                       ({"low": 0, "high": 1, "scale": 2}, "not both")]:
        with pytest.raises(DatasetError, match=where):
            spec(cameras=None, actions={"topic": "/cmd", **bad})
