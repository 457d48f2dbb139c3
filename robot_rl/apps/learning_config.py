"""The settings of ``robot-rl actor`` and ``robot-rl learner``, apart from the processes themselves: the CLI builds
its flags from them without importing the DDS binding (``cyclonedds`` is an extra; every other command must work
without it)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from robot_rl.core.config_check import bounded, check_fields
from robot_rl.rl.algorithms import ALGORITHMS
from robot_rl.ros.dds import SUCCESS_TOPIC
from robot_rl.ros.teleop import TeleopConfig


@dataclass(frozen=True)
class ActorConfig:
    """The actor's settings (``robot-rl actor`` flags)."""

    rate_hz: float = bounded(10.0, gt=0, le=1000)
    """Control rate."""
    episode_steps: int = bounded(50, ge=1)
    """Steps per episode, then the robot's reset."""
    episodes: int = bounded(0, ge=0)
    """Stop after this many episodes (0: run until stopped)."""
    seed: int = bounded(0, ge=0)
    batch_rows: int = bounded(32, ge=1)
    """Transitions per batch sent to the learner (a batch is also sealed at an episode's end)."""
    resend_s: float = bounded(2.0, gt=0)
    """Re-send a batch not acked after this long."""
    max_obs_age_s: float = bounded(0.5, gt=0)
    """Watchdog of the safety gate."""
    deterministic: bool = False
    """Act with the policy's mean (default: sample, to explore)."""
    teleop: Literal["none", "twist", "joy"] = "none"
    """Teleop input type (see robot_rl/ros/teleop.py for the deadman / nonzero-input rule)."""
    teleop_topic: str = "teleop"
    teleop_axes: tuple[int, ...] = ()
    """Per action dimension, the teleop input index it follows (-1: none); empty: input i -> action i."""
    teleop_scale: tuple[float, ...] = ()
    deadman_button: int = bounded(-1, ge=-1)
    """Joy button that must be held to intervene (-1: the nonzero-input rule)."""
    teleop_deadzone: float = bounded(0.05, ge=0)
    teleop_timeout_s: float = bounded(0.25, gt=0)
    success_topic: str = SUCCESS_TOPIC
    """``std_msgs/Bool`` success signal, the reward of each step."""

    def __post_init__(self) -> None:
        check_fields(self)

    def teleop_config(self) -> TeleopConfig | None:
        if self.teleop == "none":
            return None
        return TeleopConfig(self.teleop, self.teleop_topic, self.teleop_axes, self.teleop_scale,
                            None if self.deadman_button < 0 else self.deadman_button, self.teleop_deadzone,
                            self.teleop_timeout_s)


@dataclass(frozen=True)
class LearnerConfig:
    """The learner's settings (``robot-rl learner`` flags)."""

    algo: str | None = None
    """Learner: the checkpoint's own (default), or rlpd (from an IQL or BC checkpoint)."""
    updates_per_transition: float = bounded(1.0, ge=0)
    """Gradient updates per trainable transition received."""
    warmup_transitions: int = bounded(32, ge=1)
    """Trainable transitions received before the first update."""
    offline_ratio: float | None = bounded(None, ge=0, le=1)
    """Share of each batch from the offline data plus interventions (default: the learner's, as finetune)."""
    push_every_s: float = bounded(1.0, gt=0)
    """Seconds between weight pushes (only when there were updates since the last one)."""
    checkpoint_every_s: float = bounded(10.0, gt=0)
    schedule_updates: int = bounded(1_000_000, ge=1)
    """Length of the learning-rate schedule (the run is open-ended)."""
    capacity: int = bounded(1_000_000, ge=1)
    seed: int = bounded(0, ge=0)
    max_updates: int = bounded(0, ge=0)
    """Stop after this many updates (0: run until stopped)."""
    train_overrides: dict[str, Any] = field(default_factory=dict)
    """Changes to the checkpoint's training config, nested by section (``robot-rl learner --set rlpd.utd=4``)."""

    def __post_init__(self) -> None:
        check_fields(self)
        if self.algo is not None and self.algo not in ALGORITHMS:
            raise ValueError(f"unknown algo '{self.algo}'; choose one of: {', '.join(ALGORITHMS)}")
