"""Human interventions: a teleop input (gamepad, SpaceMouse) that overrides the policy while held.

The input is the newest message of one topic: ``geometry_msgs/Twist`` (e.g. ``spacenav``'s ``spacenav/twist``, or
``teleop_twist_joy``) or ``sensor_msgs/Joy`` (``joy``, ``spacenav/joy``). Each tick, :meth:`Teleop.action` says
whether a person is intervening and, if so, with which normalized action. The rule:

- **Deadman** (``deadman_button`` set, Joy only): the person intervenes exactly while that button is held in the
  newest message; a held button with the sticks at rest commands the zero action (an ``ee_delta``/velocity robot
  then holds still), so releasing the sticks does not hand control back, releasing the button does.
- **Nonzero input** (no deadman; Twist, or Joy without one): the person intervenes while any mapped input is beyond
  ``deadzone``; input at rest hands control back to the policy at the next tick.
- **Staleness**: input older than ``timeout_s`` (by its ``header.stamp`` for Joy, by when it was first seen for a
  Twist, which has no stamp) counts as released: a driver that died mid-push does not keep control.

The override action is ``clip(input[axes[i]] * scale[i], -1, 1)`` per action dimension ``i`` (``axes[i] = -1``:
always 0). It is a normalized action like the policy's and goes through the same ``SafetyGate`` (limits, change
cap, watchdog, e-stop): an intervention can be refused or clamped like any other tick, never bypasses the gate.
Twist inputs are ``(linear.x, linear.y, linear.z, angular.x, angular.y, angular.z)``, indices 0..5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from robot_rl.ros.convert import stamp_to_sec

TeleopSource = Literal["twist", "joy"]
TELEOP = "teleop"
"""Cache key of the teleop message (a transport delivers it under this key; ``build_observation`` ignores it)."""


@dataclass(frozen=True)
class TeleopConfig:
    """How a teleop input maps onto the action, and when it counts as held (see the module docstring)."""

    source: TeleopSource = "twist"
    topic: str = "teleop"
    """ROS 2 topic of the input (relative names go under the robot's namespace)."""
    axes: tuple[int, ...] = ()
    """Per action dimension, the input index it follows (-1: none, always 0); empty: input i -> action i."""
    scale: tuple[float, ...] = ()
    """Per action dimension, the factor from input to normalized action; empty: 1."""
    deadman_button: int | None = None
    """Joy button that must be held to intervene (then the sticks at rest command zero); ``None``: nonzero rule."""
    deadzone: float = 0.05
    """Inputs with magnitude up to this count as at rest."""
    timeout_s: float = 0.25
    """Input older than this counts as released."""

    def __post_init__(self) -> None:
        if self.source not in ("twist", "joy"):
            raise ValueError(f"teleop source must be 'twist' or 'joy', got '{self.source}'")
        if self.deadman_button is not None and (self.source != "joy" or self.deadman_button < 0):
            raise ValueError(f"deadman_button {self.deadman_button}: a non-negative Joy button index (source 'joy')")
        if not (math.isfinite(self.deadzone) and self.deadzone >= 0):
            raise ValueError(f"teleop deadzone must be >= 0, got {self.deadzone}")
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"teleop timeout_s must be > 0, got {self.timeout_s}")
        if any(a < -1 for a in self.axes) or not all(math.isfinite(s) for s in self.scale):
            raise ValueError(f"teleop axes must be >= -1 and scale finite, got axes {self.axes}, scale {self.scale}")


def twist_vector(msg: Any) -> np.ndarray:
    """``geometry_msgs/Twist`` (or the ``twist`` of a TwistStamped) -> float64 ``[6]``."""
    t = getattr(msg, "twist", msg)
    return np.array([t.linear.x, t.linear.y, t.linear.z, t.angular.x, t.angular.y, t.angular.z], dtype=np.float64)


class Teleop:
    """Decides, tick by tick, whether a person intervenes, from the newest teleop message."""

    def __init__(self, config: TeleopConfig, action_dim: int):
        axes = config.axes or tuple(range(action_dim))
        scale = config.scale or (1.0,) * action_dim
        if len(axes) != action_dim or len(scale) != action_dim:
            raise ValueError(f"teleop axes {list(axes)} / scale {list(scale)} need one entry per action dimension "
                             f"({action_dim})")
        width = 6 if config.source == "twist" else None
        if width is not None and max(axes) >= width:
            raise ValueError(f"teleop axes {list(axes)}: a Twist has inputs 0..5")
        self.config = config
        self.axes = np.asarray(axes)
        self.scale = np.asarray(scale, dtype=np.float64)
        self._msg: Any = None
        self._seen_at = -math.inf
        self.interventions = 0
        """Ticks that returned an override so far."""

    def _inputs(self, msg: Any) -> np.ndarray:
        if self.config.source == "twist":
            return twist_vector(msg)
        return np.asarray(msg.axes, dtype=np.float64).reshape(-1)

    def held(self, msg: Any, now: float) -> bool:
        """Whether ``msg`` (the newest input) means a person is intervening at time ``now``."""
        if msg is None:
            return False
        if msg is not self._msg:  # a new message: remember when it was first seen (a Twist carries no stamp)
            self._msg, self._seen_at = msg, now
        sent = stamp_to_sec(msg) if hasattr(msg, "header") else self._seen_at
        if now - sent > self.config.timeout_s:
            return False
        if self.config.deadman_button is not None:
            buttons = list(msg.buttons)
            return self.config.deadman_button < len(buttons) and bool(buttons[self.config.deadman_button])
        values = self._inputs(msg)
        used = values[self.axes[(self.axes >= 0) & (self.axes < values.size)]]
        return bool(np.any(np.abs(used) > self.config.deadzone))

    def action(self, msg: Any, now: float) -> np.ndarray | None:
        """The override: normalized float32 ``[A]`` while a person intervenes, else ``None`` (the policy acts).
        Non-finite input counts as released (and is never sent)."""
        if not self.held(msg, now):
            return None
        values = self._inputs(msg)
        if not np.all(np.isfinite(values)):
            return None
        picked = np.array([values[a] if 0 <= a < values.size else 0.0 for a in self.axes])
        picked[np.abs(picked) <= self.config.deadzone] = 0.0
        self.interventions += 1
        return np.clip(picked * self.scale, -1.0, 1.0).astype(np.float32)
