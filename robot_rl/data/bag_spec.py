"""The topics spec of ``robot-rl import-bag``: which bag topics become which dataset terms (see ``bag_import``).

A spec is a YAML mapping (``configs/bag_topics.example.yaml``)::

    env_name: real/ur5-pick           # EnvSpec name stored in the file
    task: pick up the red block       # task sentence
    control_hz: 10                    # the sample grid: one sample every 1/control_hz s
    sync_tolerance: 0.05              # s; a sample whose nearest data is further away is dropped
    out_of_order: sort                # stamps going back in time: "sort" (warn and sort) or "error"
    clock: header                     # one clock for the recording: "header" (header stamps; topics without a
                                      # header take the log time, refused where the two clocks disagree) or
                                      # "log" (every topic timed by when the bag recorded it)
    joints:
      topic: /joint_states            # sensor_msgs/JointState
      names: [shoulder, elbow, wrist] # state order (by name); default: the first message's order
      velocity: false                 # also put velocities in the state
    cameras:                          # camera name -> Image or CompressedImage topic
      wrist: /wrist/image_raw
    actions:
      topic: /cmd                     # Float64MultiArray, JointTrajectory, Twist or TwistStamped
      from_next_state: false          # no command topic: action = next state's joint positions
      mode: joint_position            # ActionSpec mode
      low: [-3.14, -3.14]             # the command limits (a number or one per dim): normalized into [-1, 1]
      high: [3.14, 3.14]              # or instead: scale / offset, normalized = (command - offset) / scale
    episodes:
      marker_topic: /episode          # std_msgs/String ("start"/"end"/other: split) or std_msgs/Bool
      gap_s: 2.0                      # also split where the joint stream pauses longer than this
      min_steps: 1                    # shorter pieces are dropped
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from robot_rl.data.errors import DatasetError

_ACTION_MODES = ("joint_position", "joint_velocity", "joint_torque", "ee_delta", "twist")
CLOCKS = ("header", "log")


@dataclass(frozen=True)
class BagSpec:
    """Parsed topics spec (see the module docstring for the YAML keys)."""

    joint_topic: str
    control_hz: float
    env_name: str = "real/robot"
    task: str = ""
    sync_tolerance: float = 0.05
    out_of_order: str = "sort"
    clock: str = "header"
    joint_names: tuple[str, ...] = ()
    joint_velocity: bool = False
    cameras: dict[str, str] = field(default_factory=dict)
    action_topic: str | None = None
    actions_from_next_state: bool = False
    action_mode: str = "joint_position"
    action_scale: tuple[float, ...] | float = 1.0
    action_offset: tuple[float, ...] | float = 0.0
    marker_topic: str | None = None
    gap_s: float | None = None
    min_steps: int = 1

    @property
    def topics(self) -> dict[str, str]:
        """Topic -> role (``joints``, ``camera:<name>``, ``actions``, ``marker``)."""
        roles = {self.joint_topic: "joints"}
        roles.update({topic: f"camera:{cam}" for cam, topic in self.cameras.items()})
        if self.action_topic:
            roles[self.action_topic] = "actions"
        if self.marker_topic:
            roles[self.marker_topic] = "marker"
        return roles

    @staticmethod
    def from_yaml(path: str | os.PathLike[str]) -> BagSpec:
        """Read a spec file; ``DatasetError`` (one line naming the file and key) if it is malformed."""
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            raise DatasetError(f"{os.fspath(path)}: cannot read the topics spec ({' '.join(str(e).split())})") from None
        try:
            return BagSpec.from_dict(data)
        except DatasetError as e:
            raise DatasetError(f"{os.fspath(path)}: {e}") from None

    @staticmethod
    def from_dict(data: Any) -> BagSpec:
        """Build a spec from the parsed YAML mapping; ``DatasetError`` naming the bad key."""
        if not isinstance(data, dict):
            raise DatasetError("topics spec: expected a mapping at the top level")
        _known(data, "", {"env_name", "task", "control_hz", "sync_tolerance", "out_of_order", "clock", "joints",
                          "cameras", "actions", "episodes"})
        joints = _section(data, "joints", required=True)
        actions = _section(data, "actions")
        episodes = _section(data, "episodes")
        _known(joints, "joints.", {"topic", "names", "velocity"})
        _known(actions, "actions.", {"topic", "from_next_state", "mode", "scale", "offset", "low", "high"})
        _known(episodes, "episodes.", {"marker_topic", "gap_s", "min_steps"})
        cameras = data.get("cameras") or {}
        if not isinstance(cameras, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in cameras.items()):
            raise DatasetError("key 'cameras': expected a mapping camera name -> topic")
        spec = BagSpec(
            joint_topic=_str(joints, "joints.topic", required=True) or "",
            control_hz=_num(data, "control_hz", None),
            env_name=str(data.get("env_name", "real/robot")),
            task=str(data.get("task", "")),
            sync_tolerance=_num(data, "sync_tolerance", 0.05),
            out_of_order=str(data.get("out_of_order", "sort")),
            clock=str(data.get("clock", "header")),
            joint_names=tuple(str(n) for n in (joints.get("names") or ())),
            joint_velocity=bool(joints.get("velocity", False)),
            cameras=dict(cameras),
            action_topic=_str(actions, "actions.topic"),
            actions_from_next_state=bool(actions.get("from_next_state", False)),
            action_mode=str(actions.get("mode", "joint_position")),
            **_normalization(actions),
            marker_topic=_str(episodes, "episodes.marker_topic"),
            gap_s=_num(episodes, "gap_s", 0.0) or None,
            min_steps=int(_num(episodes, "min_steps", 1)),
        )
        spec.check()
        return spec

    def check(self) -> None:
        """``DatasetError`` naming the key of the first inconsistent setting."""
        if not self.control_hz or self.control_hz <= 0:
            raise DatasetError("key 'control_hz': expected a rate > 0 in Hz")
        if self.sync_tolerance <= 0:
            raise DatasetError("key 'sync_tolerance': expected seconds > 0")
        if self.clock not in CLOCKS:
            raise DatasetError(f"key 'clock': expected 'header' or 'log', got {self.clock!r}")
        if self.out_of_order not in ("sort", "error"):
            raise DatasetError(f"key 'out_of_order': expected 'sort' or 'error', got {self.out_of_order!r}")
        if bool(self.action_topic) == self.actions_from_next_state:
            raise DatasetError("key 'actions': give either actions.topic or actions.from_next_state: true")
        if self.action_mode not in _ACTION_MODES:
            raise DatasetError(f"key 'actions.mode': expected one of {', '.join(_ACTION_MODES)}")
        if self.min_steps < 1:
            raise DatasetError("key 'episodes.min_steps': expected an int >= 1")
        if len(set(self.topics)) != 1 + len(self.cameras) + bool(self.action_topic) + bool(self.marker_topic):
            raise DatasetError("topics spec: one topic is given two roles")


def _normalization(actions: dict[str, Any]) -> dict[str, Any]:
    """``action_scale``/``action_offset`` from ``actions.scale``/``offset`` or from the limits ``low``/``high``."""
    limits = "low" in actions or "high" in actions
    if not limits:
        return {"action_scale": _vec(actions, "actions.scale", 1.0),
                "action_offset": _vec(actions, "actions.offset", 0.0)}
    if "scale" in actions or "offset" in actions:
        raise DatasetError("key 'actions': give the command limits (low/high) or scale/offset, not both")
    if "low" not in actions or "high" not in actions:
        raise DatasetError(f"key 'actions.{'high' if 'low' in actions else 'low'}': missing (low and high go together)")
    low, high = _vec(actions, "actions.low", 0.0), _vec(actions, "actions.high", 0.0)
    if isinstance(low, tuple) and isinstance(high, tuple) and len(low) != len(high):
        raise DatasetError(f"key 'actions.high': {len(high)} values, actions.low has {len(low)}")
    n = max(len(v) if isinstance(v, tuple) else 1 for v in (low, high))
    lo = low if isinstance(low, tuple) else (low,) * n
    hi = high if isinstance(high, tuple) else (high,) * n
    bad = [i for i in range(n) if not hi[i] > lo[i]]
    if bad:
        raise DatasetError(f"key 'actions.high': must be above actions.low (dimension {bad[0]}: "
                           f"low {lo[bad[0]]}, high {hi[bad[0]]})")
    scale = tuple((h - lo_) / 2 for lo_, h in zip(lo, hi, strict=True))
    offset = tuple((h + lo_) / 2 for lo_, h in zip(lo, hi, strict=True))
    if not isinstance(low, tuple) and not isinstance(high, tuple):
        return {"action_scale": scale[0], "action_offset": offset[0]}
    return {"action_scale": scale, "action_offset": offset}


def _known(d: dict[str, Any], prefix: str, keys: set[str]) -> None:
    unknown = sorted(set(d) - keys)
    if unknown:
        raise DatasetError(f"key '{prefix}{unknown[0]}': unknown (known: {', '.join(sorted(keys))})")


def _section(d: dict[str, Any], key: str, required: bool = False) -> dict[str, Any]:
    value = d.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise DatasetError(f"key '{key}': expected a mapping")
    return value


def _str(d: dict[str, Any], key: str, required: bool = False) -> str | None:
    value = d.get(key.split(".")[-1])
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise DatasetError(f"key '{key}': expected a topic name")
    return value


def _num(d: dict[str, Any], key: str, default: float | None) -> float:
    value = d.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DatasetError(f"key '{key}': expected a number, got {value!r}")
    return float(value)


def _vec(d: dict[str, Any], key: str, default: float) -> tuple[float, ...] | float:
    value = d.get(key.split(".")[-1], default)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list) and all(isinstance(v, int | float) for v in value):
        return tuple(float(v) for v in value)
    raise DatasetError(f"key '{key}': expected a number or a list of numbers")
