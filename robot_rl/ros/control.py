"""The control loop of the policy node, without ROS: cache messages, tick, gate, command.

Subscription callbacks only cache the latest message (``MessageCache.put``); a timer at ``control_rate_hz``
calls ``ControlLoop.tick``, which builds the observation, runs the policy, passes the action through the
``SafetyGate`` and returns the command message to publish (or ``None`` with the reason).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from robot_rl.core.specs import EnvSpec
from robot_rl.ros.convert import (
    CommandKind,
    ConversionError,
    MessageTypes,
    compressed_image_to_array,
    image_to_array,
    joint_state_to_array,
    make_command,
    stamp_to_sec,
)
from robot_rl.ros.safety import GateDecision, SafetyConfig, SafetyGate

JOINT_STATES = "joint_states"
"""Cache key of the ``sensor_msgs/JointState`` message."""
ESTOP = "estop"
"""Key of a ``std_msgs/Bool`` e-stop message from a transport (``data`` True latches a stop; never cached)."""

PolicyFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]
"""``obs {"state": [1, D], "image/<cam>": [1, H, W, 3]} -> action [1, A]`` (a ``robot_rl.rl.policy.Policy``; loading
one from a run folder is ``robot_rl.apps.robot_nodes.load_control_loop``)."""


def image_key(camera: str) -> str:
    """Cache and observation key of a camera: ``image/<camera>``."""
    return f"image/{camera}"


class MessageCache:
    """Latest message per key; thread-safe, so executor threads may call ``put`` while a timer ticks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._latest: dict[str, Any] = {}

    def put(self, key: str, msg: Any) -> None:
        """Cache ``msg`` as the latest of ``key`` (what a subscription callback does, and nothing else)."""
        with self._lock:
            self._latest[key] = msg

    def get(self, key: str) -> Any | None:
        with self._lock:
            return self._latest.get(key)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._latest)

    def clear(self) -> None:
        with self._lock:
            self._latest.clear()


@dataclass(frozen=True)
class ObservationConfig:
    """How the ``"state"`` observation and images are built from cached messages."""

    joint_names: tuple[str, ...]
    """Joints, in the order of the state vector."""
    state_fields: tuple[str, ...] = ("position",)
    """``JointState`` fields concatenated into ``"state"`` (``position``, ``velocity``, ``effort``)."""
    cameras: tuple[str, ...] = ()
    """Cameras whose images the observation carries (``image/<camera>``)."""
    image_size: int | None = None
    """Resize images to ``image_size`` squared (an image policy's input size); ``None``: as received."""

    @property
    def state_dim(self) -> int:
        return len(self.joint_names) * len(self.state_fields)


@dataclass
class Observation:
    """Numpy observation of one tick, plus what the gate needs."""

    terms: dict[str, np.ndarray]
    """``"state"`` float32 ``[D]``, ``"image/<camera>"`` uint8 ``[H, W, 3]``."""
    stamps: dict[str, float]
    """Key -> ``header.stamp`` seconds of the message each term came from."""
    position: np.ndarray
    """Measured joint positions float64 ``[J]`` (base of the change cap, and the hold command)."""


def decode_image(msg: Any) -> np.ndarray:
    """``Image`` or ``CompressedImage`` -> uint8 RGB ``[H, W, 3]``."""
    if hasattr(msg, "encoding"):
        return image_to_array(msg)
    return compressed_image_to_array(msg)


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[size, size, 3]`` (antialiased bilinear)."""
    if image.shape[:2] == (size, size):
        return image
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float()
    out = torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def build_observation(cache: Mapping[str, Any], config: ObservationConfig) -> Observation:
    """Observation from the cached messages; ``ConversionError`` (one line) when one is missing or malformed."""
    js = cache.get(JOINT_STATES)
    if js is None:
        raise ConversionError("no joint_states received yet")
    parts = [joint_state_to_array(js, config.joint_names, f) for f in config.state_fields]
    position = joint_state_to_array(js, config.joint_names, "position")
    terms: dict[str, np.ndarray] = {"state": np.concatenate(parts).astype(np.float32)}
    stamps = {JOINT_STATES: stamp_to_sec(js)}
    for cam in config.cameras:
        key = image_key(cam)
        msg = cache.get(key)
        if msg is None:
            raise ConversionError(f"no image from camera '{cam}' received yet")
        image = decode_image(msg)
        terms[key] = resize_image(image, config.image_size) if config.image_size else image
        stamps[key] = stamp_to_sec(msg)
    return Observation(terms, stamps, position)


@dataclass
class TickResult:
    """What one tick produced: a message to publish, or ``None`` and the reason."""

    message: Any | None
    decision: GateDecision
    action: np.ndarray | None = None
    """The policy's normalized action (``None`` when no observation could be built)."""
    observation: Observation | None = None
    latency_s: float = 0.0
    """Time from tick start to the command (observation in -> command out)."""

    @property
    def reason(self) -> str:
        return self.decision.reason


@dataclass
class ControlConfig:
    """Parameters of the policy node (``config/policy.yaml``)."""

    observation: ObservationConfig
    command_kind: CommandKind = "joint_trajectory"
    control_rate_hz: float = 10.0
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    time_from_start_s: float = 0.0
    """Trajectory point time (default: one control period)."""
    frame_id: str = ""
    publish_hold: bool = False
    """While the gate refuses, publish the hold command (current positions / zero twist) instead of nothing."""

    def __post_init__(self) -> None:
        if not 0 < self.control_rate_hz <= 1000:
            raise ValueError(f"control_rate_hz must be in (0, 1000], got {self.control_rate_hz}")


class ControlLoop:
    """Policy + observation builder + safety gate + command builder."""

    def __init__(self, policy: PolicyFn, spec: EnvSpec, config: ControlConfig, types: MessageTypes,
                 clock: Callable[[], float] = time.time, cache: MessageCache | None = None):
        if config.observation.state_dim != spec.state_dim:
            raise ValueError(f"the observation config gives a state of {config.observation.state_dim} values, the "
                             f"policy's env '{spec.name}' expects {spec.state_dim}")
        if config.command_kind == "twist" and spec.action.dim != 6:
            raise ValueError(f"twist commands need a 6-dim action, the policy's is {spec.action.dim}")
        if config.command_kind != "twist" and spec.action.dim != len(config.observation.joint_names):
            raise ValueError(f"{config.command_kind} commands need one action per joint: {spec.action.dim} actions "
                             f"for {len(config.observation.joint_names)} joints")
        self.policy = policy
        self.spec = spec
        self.config = config
        self.types = types
        self.clock = clock
        self.cache = cache or MessageCache()
        self.gate = SafetyGate(spec.action, config.safety, clock)

    def start(self) -> None:
        """Enable motion (the ``~/start`` service)."""
        self.gate.start()

    def stop(self, reason: str = "stop requested") -> None:
        """Latch a stop (the ``~/stop`` service, an e-stop)."""
        self.gate.stop(reason)

    def act(self, obs: Observation) -> np.ndarray:
        """The policy's normalized action ``[A]`` for one observation."""
        batch = {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in obs.terms.items()}
        return self.policy(batch)[0].detach().cpu().numpy().astype(np.float64)

    def tick(self) -> TickResult:
        """One control step. Never raises on bad input: a failure becomes a refused tick with its reason."""
        t0 = time.perf_counter()
        try:
            obs = build_observation(self.cache.snapshot(), self.config.observation)
        except ConversionError as e:
            decision = GateDecision(None, f"holding: {e}")
            self.gate.last_reason = decision.reason
            return self._result(decision, None, None, t0)
        # refuse on stale/NaN observations before running the policy on them
        reason = self.gate.check_observations(obs.terms, obs.stamps)
        if reason:
            self.gate.last_reason = reason
            return self._result(GateDecision(None, reason), None, obs, t0)
        action = self.act(obs)
        decision = self.gate.check(action, obs.terms, obs.stamps, obs.position)
        return self._result(decision, action, obs, t0)

    def _result(self, decision: GateDecision, action: np.ndarray | None, obs: Observation | None,
                t0: float) -> TickResult:
        values = decision.command
        if values is None and self.config.publish_hold:
            values = self.gate.hold_command(obs.position if obs is not None else None)
        message = None
        if values is not None:
            period = 1.0 / self.config.control_rate_hz
            message = make_command(self.types, self.config.command_kind, values, self.config.observation.joint_names,
                                   stamp=max(self.clock(), 0.0), frame_id=self.config.frame_id,
                                   time_from_start=self.config.time_from_start_s or period)
        return TickResult(message, decision, action, obs, time.perf_counter() - t0)
