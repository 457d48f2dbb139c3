"""Import a ROS 2 recording (rosbag2 directory with sqlite3 or mcap storage, or a plain ``.mcap``/``.db3`` file)
into the project's HDF5 dataset format, as ``robot-rl import-bag`` does.

```
spec = BagSpec.from_yaml("configs/bag_topics.example.yaml")
report = import_bag("run_0/", spec, "run_0.h5")        # BagImportError: one line naming bag, topic, time
print(report.summary())
```

How samples are made (``BagSpec``, ``bag_spec.py``, holds the settings):

- One clock per recording (``clock``): ``header`` (the default) times messages by their header stamps and
  messages without a header (Float64MultiArray, Twist, markers) by the bag's log time, which holds only where
  the two clocks agree: a recording whose header stamps are on another clock (sim time) than its log times, with
  a topic that has no header, is refused with both clocks named; ``log`` times every topic by when the bag
  recorded it. A topic whose stamps go back in time is sorted with a ``BagWarning`` (``out_of_order: sort``, the
  default) or refused (``out_of_order: error``).
- Episodes: the joint stream's time span is cut at marker messages (``start``/``end``/split, see
  ``bag_messages.marker_kind``) and where the joint stream pauses longer than ``episodes.gap_s``.
- Each episode is sampled on a fixed grid (``control_hz``, starting at the episode start). At each grid time
  joints are linearly interpolated, images and commands are the nearest previous message. A sample whose
  nearest joint message, or previous image/command, is further than ``sync_tolerance`` is dropped (counted in
  ``ImportReport.dropped``); an episode is cut at dropped samples, and pieces shorter than
  ``episodes.min_steps`` steps are dropped too.
- Step t of an episode of n samples is (sample t, command at t, sample t+1): T = n - 1 steps. Without a
  command topic (``actions.from_next_state``) the action is the next sample's joint positions, and the
  episode attr ``actions_from_next_state`` is true. Actions are normalized as ``(command - offset) / scale``
  (``scale``/``offset`` given, or from the declared command limits ``low``/``high``); a recording whose
  normalized actions leave ``[-1, 1]`` is refused with the range it reached.
- ``resume=True`` appends to an existing file and skips the episodes already imported from the same bag,
  recognized by the bag's content hash (episode attr ``bag_sha256``) and start time: importing a bag twice
  adds nothing.
- Rewards are NaN (unlabeled). ``dones`` is true at the last step of every episode; ``terminals`` too when the
  episode ended at a marker or at the end of the recording (not when cut by a gap or dropped samples).
- Images are stored as RGB uint8 (mono8 is repeated to 3 channels, the alpha of rgba8/bgra8 dropped).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.specs import ActionSpec, ArraySpec, EnvSpec, StateSlice
from robot_rl.data.bag_clock import BagImportError, clock_times
from robot_rl.data.bag_messages import (
    TYPES_BY_ROLE,
    command_values,
    header_ns,
    image_rgb,
    joint_values,
    marker_kind,
)
from robot_rl.data.bag_resume import bag_digest, imported_starts
from robot_rl.data.bag_spec import BagSpec
from robot_rl.data.episode import Episode
from robot_rl.data.errors import DatasetWarning
from robot_rl.data.layout import one_line
from robot_rl.data.writer import DatasetWriter

__all__ = ["BagData", "BagImportError", "BagSpec", "BagWarning", "ImportReport", "build_episodes", "import_bag",
           "read_bag"]

ProgressFn = Callable[[int, int], None]
"""``on_progress(messages_done, messages_total)``."""

ACTION_RANGE_SLACK = 1e-3
"""Normalized actions may exceed ``[-1, 1]`` by this much (rounding at the limits) before a bag is refused."""


class BagWarning(DatasetWarning):
    """Something in a bag was repaired (e.g. out-of-order stamps sorted)."""


@dataclass
class Stream:
    """One topic's messages in time order: ``times`` in seconds from the bag start, ``items`` one per time."""

    topic: str
    msgtype: str
    times: np.ndarray
    items: list[Any]


@dataclass
class BagData:
    """What ``read_bag`` took from a bag: the streams of the spec's topics."""

    bag: str
    start_ns: int
    """Time 0 of the streams, ns on the recording's clock."""
    joint_names: tuple[str, ...]
    joints: Stream
    cameras: dict[str, Stream]
    actions: Stream | None
    markers: Stream | None
    warnings: list[str] = field(default_factory=list)
    sha256: str = ""
    """Content hash of the bag's data files (``bag_digest``)."""


@dataclass
class ImportReport:
    """What ``import_bag`` did."""

    bag: str
    out: str
    episodes: int = 0
    steps: int = 0
    samples: int = 0
    """Grid samples considered (kept and dropped)."""
    dropped: dict[str, int] = field(default_factory=dict)
    """Reason (``joints``, ``camera:<name>``, ``actions``, ``short``) -> dropped samples; a sample may have
    several reasons. ``total`` counts each dropped sample once."""
    skipped: int = 0
    """Episodes not written because ``resume`` found them already imported from this bag."""
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for the console."""
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(self.dropped.items()) if v and k != "total")
        text = (f"{self.bag}: {self.episodes} episodes, {self.steps} steps to {self.out}; "
                f"dropped {self.dropped.get('total', 0)} of {self.samples} samples")
        if dropped:
            text += f" ({dropped})"
        if self.skipped:
            text += f"; skipped {self.skipped} episodes already imported from this bag"
        return text


def import_bag(bag: str | os.PathLike[str], spec: BagSpec, out: str | os.PathLike[str], *,
               image_compression: str | None = "gzip", resume: bool = False,
               on_progress: ProgressFn | None = None) -> ImportReport:
    """Read ``bag``, sample it as ``spec`` says, and write its episodes to ``out`` with ``DatasetWriter``
    (crash-safe; ``resume=True`` appends to an existing file of the same environment, skipping the episodes it
    already holds from this bag)."""
    data = read_bag(bag, spec, on_progress)
    episodes, env_spec, report = build_episodes(data, spec)
    report.out = os.fspath(out)
    if not episodes:
        raise BagImportError(f"{data.bag}: no episode left: all {report.samples} samples were dropped "
                             f"({_reasons(report.dropped)}); check sync_tolerance and control_hz")
    if resume and os.path.exists(out) and os.path.getsize(out) > 0:
        done = imported_starts(out, data.sha256)
        kept = [e for e in episodes if round(float(e.attrs["bag_time_start"]), 6) not in done]
        report.skipped = len(episodes) - len(kept)
        report.episodes, report.steps = len(kept), sum(e.length for e in kept)
        episodes = kept
        if not episodes:
            return report
    with DatasetWriter(out, env_spec, source=f"rosbag:{data.bag}", task_text=spec.task, resume=resume,
                       image_compression=image_compression) as writer:
        for episode in episodes:
            writer.add_episode(episode)
    return report


def read_bag(bag: str | os.PathLike[str], spec: BagSpec, on_progress: ProgressFn | None = None) -> BagData:
    """Read the spec's topics from ``bag`` (rosbag2 directory, ``.mcap`` or ``.db3`` file)."""
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    path = Path(bag)
    name = os.fspath(bag)
    if not path.exists():
        raise BagImportError(f"{name}: no such bag (file or rosbag2 directory)")
    try:
        reader = AnyReader([path], default_typestore=get_typestore(Stores.ROS2_HUMBLE))
        reader.open()
    except Exception as e:  # rosbags raises many types for a corrupt file
        raise BagImportError(f"{name}: cannot open the bag, corrupt or not a rosbag2/MCAP recording "
                             f"({one_line(e)})") from None
    try:
        data = _read(reader, name, spec, on_progress)
    finally:
        reader.close()
    data.sha256 = bag_digest(path)
    return data


def _check_topics(reader: Any, bag: str, spec: BagSpec) -> dict[str, str]:
    """Topic -> msgtype for the spec's topics; one-line error for a missing topic or an unusable type."""
    topics = reader.topics
    types = {}
    for topic, role in spec.topics.items():
        if topic not in topics:
            have = ", ".join(sorted(topics)) or "none"
            raise BagImportError(f"{bag}: topic '{topic}' ({role}) is not in the bag (topics: {have})")
        msgtype = topics[topic].msgtype
        allowed = TYPES_BY_ROLE[role.split(":")[0]]
        if msgtype not in allowed:
            raise BagImportError(f"{bag}: topic '{topic}' ({role}) has message type '{msgtype}', "
                                 f"expected {' or '.join(allowed)}")
        if topics[topic].msgcount == 0:
            raise BagImportError(f"{bag}: topic '{topic}' ({role}) has no messages")
        types[topic] = msgtype
    return types


def _read(reader: Any, bag: str, spec: BagSpec, on_progress: ProgressFn | None) -> BagData:
    types = _check_topics(reader, bag, spec)
    roles = spec.topics
    connections = [c for c in reader.connections if c.topic in roles]
    total = sum(int(c.msgcount) for c in connections)
    start_ns = int(reader.start_time)
    log: dict[str, list[int]] = {t: [] for t in roles}
    head: dict[str, list[int]] = {t: [] for t in roles}
    items: dict[str, list[Any]] = {t: [] for t in roles}
    names = spec.joint_names
    cache: dict[tuple[str, ...], np.ndarray] = {}
    topic, log_ns, done = "", start_ns, 0
    messages = reader.messages(connections=connections)
    while True:
        try:
            item = next(messages, None)
        except Exception as e:
            where = "before its first message"
            if topic:
                where = f"after topic '{topic}' at t={(log_ns - start_ns) / 1e9:.3f}s"
            raise BagImportError(f"{bag}: cannot read the bag {where}, corrupt? ({one_line(e)})") from None
        if item is None:
            break
        connection, log_ns, raw = item
        topic = connection.topic
        t = (log_ns - start_ns) / 1e9
        try:
            msg = reader.deserialize(raw, connection.msgtype)
            role = roles[topic]
            if role == "joints":
                if not names:
                    names = tuple(msg.name)
                value: Any = joint_values(msg, names, spec.joint_velocity, cache)
            elif role == "actions":
                value = command_values(msg, types[topic], names)
            elif role == "marker":
                value = marker_kind(msg, types[topic])
            else:
                value = msg  # images are decoded later, only those sampled
        except Exception as e:
            raise BagImportError(f"{bag}: topic '{topic}' at t={t:.3f}s: {one_line(e)}") from None
        stamp = header_ns(msg)
        log[topic].append(log_ns)
        head[topic].append(-1 if stamp is None else stamp)
        items[topic].append(value)
        done += 1
        if on_progress is not None and (done % 64 == 0 or done == total):
            on_progress(done, total)
    if on_progress is not None:
        on_progress(done, total)
    notes: list[str] = []
    times, start_ns = clock_times(bag, spec, types, log, head)
    streams = {t: _stream(bag, t, types[t], times[t], items[t], spec, notes) for t in roles}
    _check_widths(bag, streams[spec.joint_topic])
    if spec.action_topic:
        _check_widths(bag, streams[spec.action_topic])
    return BagData(
        bag=bag, start_ns=start_ns, joint_names=names, joints=streams[spec.joint_topic],
        cameras={cam: streams[topic] for cam, topic in spec.cameras.items()},
        actions=streams[spec.action_topic] if spec.action_topic else None,
        markers=streams[spec.marker_topic] if spec.marker_topic else None, warnings=notes)


def _stream(bag: str, topic: str, msgtype: str, times: list[float], items: list[Any], spec: BagSpec,
            notes: list[str]) -> Stream:
    """Make one topic's stream, sorting (with a warning) or refusing stamps that go back in time."""
    t = np.asarray(times, dtype=np.float64)
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        where = f"{bag}: topic '{topic}' at t={t[back[0] + 1]:.3f}s: stamps go back in time"
        if spec.out_of_order == "error":
            raise BagImportError(f"{where} ({back.size} times; set out_of_order: sort to sort them)")
        note = f"{where} ({back.size} times); sorted them by stamp"
        warnings.warn(note, BagWarning, stacklevel=4)
        notes.append(note)
        order = np.argsort(t, kind="stable")
        t = t[order]
        items = [items[i] for i in order]
    return Stream(topic, msgtype, t, items)


def _check_widths(bag: str, stream: Stream) -> None:
    width = len(stream.items[0])
    for t, value in zip(stream.times, stream.items, strict=True):
        if len(value) != width:
            raise BagImportError(f"{bag}: topic '{stream.topic}' at t={t:.3f}s: {len(value)} values, "
                                 f"the first message had {width}")


def _intervals(data: BagData, spec: BagSpec) -> list[tuple[float, float, bool]]:
    """Episode time spans ``(start, end, terminal)`` from markers and joint-stream gaps."""
    jt = data.joints.times
    t0, t1 = float(jt[0]), float(jt[-1])
    spans: list[tuple[float, float, bool]] = []
    events = list(zip(data.markers.times, data.markers.items, strict=True)) if data.markers else []
    current: float | None = None if events and events[0][1] == "start" else t0
    for t, kind in events:
        if current is not None:
            spans.append((current, float(t), True))
        current = None if kind == "end" else float(t)
    if current is not None:
        spans.append((current, t1, True))
    clipped = [(max(a, t0), min(b, t1), term) for a, b, term in spans if min(b, t1) > max(a, t0)]
    if not spec.gap_s:
        return clipped
    out: list[tuple[float, float, bool]] = []
    gaps = np.flatnonzero(np.diff(jt) > spec.gap_s)
    for a, b, term in clipped:
        for g in gaps:
            if a <= jt[g] and jt[g + 1] <= b:
                out.append((a, float(jt[g]), False))
                a = float(jt[g + 1])
        out.append((a, b, term))
    return [s for s in out if s[1] > s[0]]


def _previous(times: np.ndarray, grid: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest previous message at each grid time, and whether it is within ``tol``."""
    index = np.searchsorted(times, grid + 1e-9, side="right") - 1
    ok = index >= 0
    ok[ok] = grid[ok] - times[index[ok]] <= tol + 1e-9
    return np.maximum(index, 0), ok


def _joints_at(times: np.ndarray, values: np.ndarray, grid: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolated joint values at the grid times, and whether the nearest message is within ``tol``."""
    inside = (grid >= times[0] - 1e-9) & (grid <= times[-1] + 1e-9)
    right = np.clip(np.searchsorted(times, grid), 0, len(times) - 1)
    left = np.clip(right - 1, 0, len(times) - 1)
    nearest = np.minimum(np.abs(times[right] - grid), np.abs(grid - times[left]))
    ok = inside & (nearest <= tol + 1e-9)
    out = np.stack([np.interp(grid, times, values[:, d]) for d in range(values.shape[1])], axis=1)
    return out, ok


def build_episodes(data: BagData, spec: BagSpec) -> tuple[list[Episode], EnvSpec, ImportReport]:
    """Sample ``data`` on the control grid and cut it into episodes (see the module docstring)."""
    report = ImportReport(bag=data.bag, out="", warnings=list(data.warnings))
    dropped = {"total": 0, "joints": 0, "short": 0, **{f"camera:{c}": 0 for c in data.cameras}}
    if data.actions is not None:
        dropped["actions"] = 0
    joint_values_ = np.asarray(data.joints.items, dtype=np.float64)
    action_dim = (len(data.actions.items[0]) if data.actions is not None else len(data.joint_names))
    scale, offset = _vector(spec.action_scale, action_dim, "scale"), _vector(spec.action_offset, action_dim, "offset")
    decoded: dict[tuple[str, int], np.ndarray] = {}
    episodes: list[Episode] = []
    dt = 1.0 / spec.control_hz
    for a, b, terminal in _intervals(data, spec):
        grid = a + dt * np.arange(int(np.floor((b - a) / dt + 1e-6)) + 1)
        states, ok = _joints_at(data.joints.times, joint_values_, grid, spec.sync_tolerance)
        valid = ok.copy()
        dropped["joints"] += int((~ok).sum())
        frames: dict[str, np.ndarray] = {}
        for cam, stream in data.cameras.items():
            frames[cam], cam_ok = _previous(stream.times, grid, spec.sync_tolerance)
            dropped[f"camera:{cam}"] += int((~cam_ok).sum())
            valid &= cam_ok
        commands = None
        if data.actions is not None:
            cmd_index, cmd_ok = _previous(data.actions.times, grid, spec.sync_tolerance)
            dropped["actions"] += int((~cmd_ok).sum())
            valid &= cmd_ok
            commands = np.asarray(data.actions.items, dtype=np.float64)[cmd_index]
        report.samples += len(grid)
        dropped["total"] += int((~valid).sum())
        for lo, hi in _runs(valid):  # samples lo..hi-1
            if hi - lo - 1 < spec.min_steps:
                dropped["short"] += hi - lo
                dropped["total"] += hi - lo
                continue
            raw = commands[lo:hi - 1] if commands is not None else states[lo + 1:hi, :len(data.joint_names)]
            actions = ((raw - offset) / scale).astype(np.float32)
            _check_range(data, spec, raw, actions, float(grid[lo]))
            images = {cam: np.stack([_frame(data, cam, int(i), decoded) for i in frames[cam][lo:hi - 1]])
                      for cam in data.cameras}
            episodes.append(_episode(states[lo:hi], actions, images, terminal and hi == len(grid),
                                     data, spec, float(grid[lo])))
    report.dropped = dropped
    report.episodes = len(episodes)
    report.steps = sum(e.length for e in episodes)
    return episodes, _env_spec(data, spec, episodes, action_dim, scale, offset), report


def _check_range(data: BagData, spec: BagSpec, raw: np.ndarray, actions: np.ndarray, start: float) -> None:
    """Refuse actions that normalization does not bring into ``[-1, 1]``, naming the range they reached."""
    over = np.abs(actions) > 1.0 + ACTION_RANGE_SLACK
    if not over.any():
        return
    d = int(np.flatnonzero(over.any(axis=0))[0])
    source = f"topic '{spec.action_topic}'" if spec.action_topic else "the next joint positions (from_next_state)"
    raise BagImportError(
        f"{data.bag}: actions from {source} in the episode at t={start:.3f}s leave [-1, 1] after normalization: "
        f"dimension {d} is {raw[:, d].min():.6g}..{raw[:, d].max():.6g} raw, {actions[:, d].min():.4g}.."
        f"{actions[:, d].max():.4g} normalized; declare the command limits as actions.low/actions.high "
        f"(or actions.scale/offset) in the topics spec")


def _runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """``[lo, hi)`` ranges of consecutive true values."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], valid.astype(np.int8), [0]])))
    return [(int(lo), int(hi)) for lo, hi in zip(edges[::2], edges[1::2], strict=True)]


def _frame(data: BagData, cam: str, index: int, decoded: dict[tuple[str, int], np.ndarray]) -> np.ndarray:
    key = (cam, index)
    if key not in decoded:
        stream = data.cameras[cam]
        try:
            image = image_rgb(stream.items[index], stream.msgtype)
            first = decoded.setdefault((cam, -1), image)  # the first decoded frame sets the size
            if first.shape != image.shape:
                raise ValueError(f"image size {image.shape[1]}x{image.shape[0]} differs from the first "
                                 f"frame's {first.shape[1]}x{first.shape[0]}")
        except ValueError as e:
            raise BagImportError(f"{data.bag}: topic '{stream.topic}' at t={stream.times[index]:.3f}s: "
                                 f"{one_line(e)}") from None
        if len(decoded) > 4096:  # frames repeat only between neighbouring samples; bound the memory
            for old in [k for k in decoded if k[1] >= 0]:
                del decoded[old]
        decoded[key] = image
    return decoded[key]


def _episode(samples: np.ndarray, actions: np.ndarray, images: dict[str, np.ndarray], terminal: bool,
             data: BagData, spec: BagSpec, start: float) -> Episode:
    t = len(samples) - 1
    dones = np.zeros(t, dtype=bool)
    dones[-1] = True
    terminals = np.zeros(t, dtype=bool)
    terminals[-1] = terminal
    return Episode(
        states=samples[:-1].astype(np.float32), actions=actions, rewards=np.full(t, np.nan, dtype=np.float32),
        next_states=samples[1:].astype(np.float32), terminals=terminals, dones=dones, images=images,
        attrs={"actions_from_next_state": np.bool_(spec.actions_from_next_state), "bag": data.bag,
               "bag_time_start": np.float64(start), "bag_start_ns": np.int64(data.start_ns),
               "bag_sha256": data.sha256})


def _vector(value: tuple[float, ...] | float, dim: int, key: str) -> np.ndarray:
    if isinstance(value, tuple):
        if len(value) != dim:
            raise BagImportError(f"key 'actions.{key}': {len(value)} values for {dim} action dimensions")
        out = np.asarray(value, dtype=np.float64)
    else:
        out = np.full(dim, float(value))
    if key == "scale" and np.any(out == 0):
        raise BagImportError("key 'actions.scale': must not be 0")
    return out


def _env_spec(data: BagData, spec: BagSpec, episodes: list[Episode], action_dim: int, scale: np.ndarray,
              offset: np.ndarray) -> EnvSpec:
    n = len(data.joint_names)
    obs = {"state": ArraySpec((n * (2 if spec.joint_velocity else 1),), description="joint positions"
                              + (" and velocities" if spec.joint_velocity else ""))}
    slices = [StateSlice("joint_pos", 0, n, unit="rad")]
    if spec.joint_velocity:
        slices.append(StateSlice("joint_vel", n, 2 * n, unit="rad/s"))
    for cam in data.cameras:
        shape = episodes[0].images[cam].shape[1:] if episodes else (0, 0, 3)
        obs[f"image/{cam}"] = ArraySpec(tuple(int(s) for s in shape), "uint8", 0, 255, f"camera {cam}")
    names = data.joint_names if action_dim == n and spec.action_mode.startswith("joint") else ()
    action = ActionSpec(action_dim, spec.action_mode, tuple(float(s) for s in scale),  # type: ignore[arg-type]
                        tuple(float(o) for o in offset), names=tuple(names))
    return EnvSpec(
        name=spec.env_name, observations=obs, action=action, state_slices=tuple(slices),
        max_episode_steps=max((e.length for e in episodes), default=1), control_hz=spec.control_hz,
        task_text=spec.task, cameras=tuple(data.cameras),
        extras={"source": "rosbag", "joint_names": list(data.joint_names), "sync_tolerance": spec.sync_tolerance,
                "clock": spec.clock,
                "actions_from_next_state": spec.actions_from_next_state,
                "topics": {topic: role for topic, role in spec.topics.items()}})


def _reasons(dropped: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()) if v and k != "total") or "none"
