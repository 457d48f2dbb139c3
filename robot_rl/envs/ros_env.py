"""``RosEnv``: a real robot behind the ``RobotEnv`` interface (``num_envs = 1``, reward NaN).

It runs the same logic as the policy node (``robot_rl.ros``): observations from cached ROS messages, the action
through the ``SafetyGate``, a command message out. The ROS side is an injected :class:`RosTransport`, so the env
runs with rclpy on a robot (a node that subscribes and publishes) and with fake message sources in tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import numpy as np
import torch

from robot_rl.core.env import Obs, StepResult, validate_action
from robot_rl.core.specs import EnvSpec
from robot_rl.ros.control import ESTOP, ControlConfig, MessageCache, Observation, build_observation
from robot_rl.ros.convert import ConversionError, MessageTypes, make_command, rosbags_types
from robot_rl.ros.safety import SafetyGate


class RosTransport(Protocol):
    """The ROS side of a ``RosEnv``: a clock, incoming messages, and a command publisher."""

    def now(self) -> float:
        """Seconds on the time base of the messages' ``header.stamp``."""
        ...

    def spin(self, duration_s: float) -> Iterable[tuple[str, Any]]:
        """Wait ``duration_s`` (one control period) and return the messages received meanwhile as
        ``(key, msg)``: key ``joint_states``, ``image/<camera>``, or ``estop`` (a ``std_msgs/Bool``: True latches
        the gate until it is False again and the env is reset)."""
        ...

    def publish(self, msg: Any) -> None:
        """Send one command message."""
        ...

    def reset(self, seed: int | None) -> None:
        """Bring the robot to its start pose (a scripted motion, or wait for an operator)."""
        ...


class RosEnv:
    """One real robot as a ``RobotEnv``. ``info["safety"]`` says why the gate refused a step (empty if it did not);
    ``info["commanded"]`` bool ``[1]`` whether a command went out."""

    num_envs = 1

    def __init__(self, spec: EnvSpec, transport: RosTransport, config: ControlConfig,
                 types: MessageTypes | None = None, reset_timeout_s: float = 5.0):
        if config.observation.state_dim != spec.state_dim:
            raise ValueError(f"RosEnv '{spec.name}': the observation config gives {config.observation.state_dim} "
                             f"state values, the spec {spec.state_dim}")
        want = {"state"} | {f"image/{c}" for c in config.observation.cameras}
        if set(spec.observations) != want:
            raise ValueError(f"RosEnv '{spec.name}': spec observations {sorted(spec.observations)} != what the "
                             f"config provides {sorted(want)}")
        self.spec = spec
        self.device = torch.device("cpu")
        self.transport = transport
        self.config = config
        self.types = types or rosbags_types()
        self.reset_timeout_s = reset_timeout_s
        self.cache = MessageCache()
        self.gate = SafetyGate(spec.action, config.safety, transport.now)
        self._steps = 0
        self._last: Observation | None = None
        self.estopped = False
        """An ``estop`` message with ``data`` True came last: the gate stays stopped, ``reset`` refuses."""

    @property
    def period_s(self) -> float:
        return 1.0 / self.config.control_rate_hz

    def _spin(self) -> None:
        for key, msg in self.transport.spin(self.period_s):
            if key == ESTOP:
                self.estopped = bool(msg.data)
                if self.estopped:
                    self.gate.stop("e-stop topic")
            else:
                self.cache.put(key, msg)

    def _observe(self) -> tuple[Obs, Observation]:
        obs = build_observation(self.cache.snapshot(), self.config.observation)
        self._last = obs
        return {k: torch.from_numpy(np.ascontiguousarray(v))[None] for k, v in obs.terms.items()}, obs

    def reset(self, seed: int | None = None) -> tuple[Obs, dict[str, Any]]:
        """Move to the start pose (``transport.reset``), enable the gate, wait for a complete, fresh, finite
        observation; ``RuntimeError`` (one line) if none arrives within ``reset_timeout_s``, or while the e-stop
        is asserted."""
        self.gate.stop("resetting")
        self.transport.reset(seed)
        self.cache.clear()
        self.gate.start()
        waited, reason = 0.0, "no messages"
        while waited <= self.reset_timeout_s:
            self._spin()
            waited += self.period_s
            if self.estopped:
                reason = "the e-stop is asserted"
                self.gate.stop("e-stop topic")
                continue
            if self.gate.stop_reason == "e-stop topic":  # released during the reset
                self.gate.start()
            try:
                obs, raw = self._observe()
            except ConversionError as e:
                reason = str(e)
                continue
            reason = self.gate.check_observations(raw.terms, raw.stamps)
            if not reason:
                self._steps = 0
                return obs, {}
            self.gate.start()  # a NaN reading during reset latches; keep waiting for a good one (e-stop: not here)
        raise RuntimeError(f"RosEnv '{self.spec.name}': no usable observation within {self.reset_timeout_s} s "
                           f"({reason})")

    def step(self, action: torch.Tensor) -> StepResult:
        """Gate and send ``action`` float32 ``[1, A]``, wait one control period, observe. A NaN action raises
        ``ValueError`` naming env 0 (before the gate sees it)."""
        clipped, count = validate_action(action, 1, self.spec.action.dim)
        reason, commanded = "no observation yet: call reset()", False
        if self._last is not None:
            decision = self.gate.check(clipped[0].double().cpu().numpy(), self._last.terms, self._last.stamps,
                                       self._last.position)
            reason = decision.reason
            if decision.command is not None:
                self.transport.publish(make_command(
                    self.types, self.config.command_kind, decision.command, self.config.observation.joint_names,
                    stamp=max(self.transport.now(), 0.0), frame_id=self.config.frame_id,
                    time_from_start=self.config.time_from_start_s or self.period_s))
                commanded = True
        self._spin()
        obs, _ = self._observe()
        self._steps += 1
        truncated = self._steps >= self.spec.max_episode_steps
        info: dict[str, Any] = {"action_clipped": count, "safety": reason,
                                "commanded": torch.tensor([commanded])}
        if truncated:
            info["final_obs"] = obs
            obs, _ = self.reset()
        return StepResult(obs, torch.full((1,), float("nan")), torch.zeros(1, dtype=torch.bool),
                          torch.tensor([truncated]), info)

    def hold_action(self) -> torch.Tensor:
        """The normalized action ``[1, A]`` of the gate's hold command (zeros in velocity/twist/ee_delta modes, the
        measured positions in position mode; zeros when no position is known): what to send to keep still."""
        position = self._last.position if self._last is not None else None
        hold = self.gate.hold_command(position)
        spec = self.spec.action
        if hold is None:
            return torch.zeros(1, spec.dim)
        action = (hold - np.asarray(spec.offset)) / np.asarray(spec.scale)
        return torch.from_numpy(np.clip(action, -1.0, 1.0)).float()[None]

    def close(self) -> None:
        """Latch the gate; the transport stays the caller's to close."""
        self.gate.stop("closed")
