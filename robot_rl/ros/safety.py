"""``SafetyGate``: the last check between a policy's action and the robot's command topic.

Order of checks on every tick (the first failure refuses the tick, says why in one line, and nothing is
published):

1. the gate is running (after construction and after any stop, motion resumes only on an explicit ``start``);
2. every observation the policy reads is present and fresh (``header.stamp`` age by the injected clock, the
   watchdog) and finite;
3. the normalized action is finite (checked *before* any clamp: ``np.clip(nan, ...)`` is NaN) and inside
   ``[-1, 1]`` (plus a small tolerance): a policy emitting 1e6 is broken, not merely eager;
4. then the physical command is clamped to the joint limits and the per-tick change cap.

Non-finite observations or actions and out-of-range actions latch the e-stop (``latch_on_fault``): a broken
sensor or policy does not come back by itself. A stale observation only holds the tick; motion continues once
fresh data arrives. ``hold_command`` gives the safe command for a node that must publish something while
holding (current joint positions, or a zero twist).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from robot_rl.core.specs import ActionSpec

Clock = Callable[[], float]
"""Seconds on the same time base as the observation stamps (ROS time on a robot)."""


@dataclass(frozen=True)
class SafetyConfig:
    """Limits the gate enforces; arrays are per action dimension (physical units)."""

    lower: tuple[float, ...] = ()
    """Lower joint limits (position mode) or command limits (velocity/twist); empty: unlimited."""
    upper: tuple[float, ...] = ()
    max_delta: tuple[float, ...] = ()
    """Largest change of the command per tick: from the measured position (position mode), else from the last
    command; empty: no cap."""
    max_obs_age_s: float = 0.25
    """Watchdog: refuse when an observation's ``header.stamp`` is older than this."""
    action_tolerance: float = 1e-3
    """Normalized actions up to ``1 + tolerance`` in magnitude are clipped; beyond it they are refused."""
    latch_on_fault: bool = True
    """Non-finite or out-of-range input latches the e-stop (needs an explicit start)."""

    def __post_init__(self) -> None:
        if not math.isfinite(self.max_obs_age_s) or self.max_obs_age_s <= 0:
            raise ValueError(f"max_obs_age_s must be a positive number, got {self.max_obs_age_s}")
        for name in ("lower", "upper", "max_delta"):
            values = getattr(self, name)
            if not all(math.isfinite(v) for v in values):
                raise ValueError(f"SafetyConfig.{name} must be finite, got {list(values)}")
        if self.lower and self.upper and any(lo > hi for lo, hi in zip(self.lower, self.upper, strict=False)):
            raise ValueError(f"SafetyConfig: lower {list(self.lower)} exceeds upper {list(self.upper)}")
        if any(d <= 0 for d in self.max_delta):
            raise ValueError(f"SafetyConfig.max_delta must be > 0, got {list(self.max_delta)}")


@dataclass
class GateDecision:
    """The outcome of one tick: ``command`` (physical, float64) or ``None`` with ``reason``."""

    command: np.ndarray | None
    reason: str = ""
    """One line saying why the tick was refused (empty when allowed)."""
    clamped: list[str] = field(default_factory=list)
    """What was clamped on an allowed tick (joint limits, change cap)."""

    @property
    def allowed(self) -> bool:
        return self.command is not None


class SafetyGate:
    """Checks observations and actions, clamps commands, latches stops. Not thread-safe: call from one thread."""

    def __init__(self, action_spec: ActionSpec, config: SafetyConfig | None = None, clock: Clock = time.time):
        self.action_spec = action_spec
        self.config = config or SafetyConfig()
        self.clock = clock
        dim = action_spec.dim
        for name in ("lower", "upper", "max_delta"):
            values = getattr(self.config, name)
            if values and len(values) != dim:
                raise ValueError(f"SafetyConfig.{name} has {len(values)} entries, the action has {dim}")
        self._running = False
        self._stop_reason = "not started: call start()"
        self._last_command: np.ndarray | None = None
        self.last_reason = ""
        """The reason of the most recent refusal (empty after an allowed tick)."""

    # --- state ---------------------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._running

    @property
    def stop_reason(self) -> str:
        return "" if self._running else self._stop_reason

    def start(self) -> None:
        """Explicitly (re)enable motion; clears a latched stop."""
        self._running = True
        self._stop_reason = ""
        self._last_command = None

    def stop(self, reason: str = "stop requested") -> None:
        """Latch a stop (e-stop, ``~/stop`` service, or a fault); nothing moves until ``start``."""
        self._running = False
        self._stop_reason = reason.splitlines()[0] if reason else "stopped"

    # --- checks --------------------------------------------------------------------------------------------------
    def check(self, action: np.ndarray, observations: Mapping[str, np.ndarray],
              stamps: Mapping[str, float], position: np.ndarray | None = None) -> GateDecision:
        """One tick: ``action`` normalized ``[A]``; ``observations`` name -> array (checked for finiteness);
        ``stamps`` name -> ``header.stamp`` seconds (checked for age); ``position`` the measured joint positions
        (position mode: base of the change cap). Returns the physical command or the reason for refusing."""
        reason = self._refusal(np.asarray(action, dtype=np.float64).reshape(-1), observations, stamps)
        if reason:
            self.last_reason = reason
            return GateDecision(None, reason)
        self.last_reason = ""
        return self._clamp(np.asarray(action, dtype=np.float64).reshape(-1), position)

    def _refusal(self, action: np.ndarray, observations: Mapping[str, np.ndarray],
                 stamps: Mapping[str, float]) -> str:
        reason = self.check_observations(observations, stamps)
        if reason:
            return reason
        if action.shape != (self.action_spec.dim,):
            return self._fault(f"action has shape {list(action.shape)}, expected [{self.action_spec.dim}]")
        if not bool(np.all(np.isfinite(action))):
            return self._fault(f"action is not finite: {action.tolist()}")
        worst = float(np.max(np.abs(action)))
        if worst > 1.0 + self.config.action_tolerance:
            return self._fault(f"action out of [-1, 1] (max |a| = {worst:.6g})")
        return ""

    def check_observations(self, observations: Mapping[str, np.ndarray], stamps: Mapping[str, float]) -> str:
        """The reason to refuse a tick on these observations alone (stopped, stale, non-finite); empty if none."""
        if not self._running:
            return f"holding: stopped ({self._stop_reason})"
        now = self.clock()
        for name, stamp in stamps.items():
            age = now - stamp
            if not math.isfinite(age):
                return self._fault(f"observation '{name}' has a non-finite stamp")
            if age > self.config.max_obs_age_s:
                return f"holding: observation '{name}' is stale ({age:.3f} s old > {self.config.max_obs_age_s} s)"
        for name, value in observations.items():
            if value.dtype.kind == "f" and not bool(np.all(np.isfinite(value))):
                return self._fault(f"observation '{name}' is not finite")
        return ""

    def _fault(self, what: str) -> str:
        if self.config.latch_on_fault:
            self.stop(f"fault: {what}")
            return f"stopped: {what}; call start() after fixing it"
        return f"holding: {what}"

    def _clamp(self, action: np.ndarray, position: np.ndarray | None) -> GateDecision:
        cfg, clamped = self.config, []
        spec = self.action_spec  # finiteness was checked above, so clipping here cannot hide a NaN
        command = np.clip(action, -1.0, 1.0) * np.asarray(spec.scale) + np.asarray(spec.offset)
        if cfg.max_delta:
            base = position if self.action_spec.mode == "joint_position" else self._last_command
            if base is not None and np.all(np.isfinite(base)) and base.shape == command.shape:
                delta = np.asarray(cfg.max_delta)
                capped = np.clip(command, base - delta, base + delta)
                if not np.array_equal(capped, command):
                    clamped.append("change cap")
                command = capped
        if cfg.lower and cfg.upper:
            limited = np.clip(command, np.asarray(cfg.lower), np.asarray(cfg.upper))
            if not np.array_equal(limited, command):
                clamped.append("limits")
            command = limited
        self._last_command = command
        return GateDecision(command, "", clamped)

    def hold_command(self, position: np.ndarray | None) -> np.ndarray | None:
        """The command that holds the robot still: the measured positions (position mode, if finite), zeros
        (velocity/twist modes), or ``None`` when no safe command is known."""
        if self.action_spec.mode in ("joint_velocity", "twist", "ee_delta"):
            return np.zeros(self.action_spec.dim)
        if position is not None and position.shape == (self.action_spec.dim,) and np.all(np.isfinite(position)):
            return np.asarray(position, dtype=np.float64).copy()
        return None
