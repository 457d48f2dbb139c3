"""Teleop interventions (robot_rl.ros.teleop): the deadman and nonzero-input rules, staleness, mapping, and that an
override is an ordinary action for the safety gate."""

from __future__ import annotations

import numpy as np
import pytest

from robot_rl.core import ActionSpec
from robot_rl.ros.safety import SafetyConfig, SafetyGate
from robot_rl.ros.teleop import Teleop, TeleopConfig
from tests.ros import T, header


def twist(lx: float = 0.0, ly: float = 0.0, lz: float = 0.0, az: float = 0.0):  # noqa: ANN201
    v = T["geometry_msgs/msg/Vector3"]
    return T["geometry_msgs/msg/Twist"](linear=v(x=lx, y=ly, z=lz), angular=v(x=0.0, y=0.0, z=az))


def joy(t: float, axes: list[float], buttons: list[int]):  # noqa: ANN201
    return T["sensor_msgs/msg/Joy"](header=header(t), axes=np.asarray(axes, np.float32),
                                    buttons=np.asarray(buttons, np.int32))


def test_twist_overrides_while_nonzero_and_hands_back_at_rest() -> None:
    tele = Teleop(TeleopConfig("twist", axes=(0, 1, 2, 5), scale=(1.0, 1.0, 1.0, 2.0)), 4)
    assert tele.action(None, 0.0) is None
    push = twist(0.5, -0.2, 0.0, 0.7)
    np.testing.assert_allclose(tele.action(push, 10.0), [0.5, -0.2, 0.0, 1.0])  # 0.7 * 2 clipped to 1
    assert tele.action(twist(0.01, 0.0, 0.0, 0.02), 10.05) is None  # inside the deadzone: the policy acts
    assert tele.interventions == 1


def test_a_twist_that_stops_coming_is_released() -> None:
    tele = Teleop(TeleopConfig("twist", timeout_s=0.2), 3)
    push = twist(0.5)
    assert tele.action(push, 100.0) is not None
    assert tele.action(push, 100.15) is not None  # the same message, still fresh
    assert tele.action(push, 100.3) is None  # no new message for 0.3 s: the driver died mid-push


def test_joy_deadman_holds_control_with_sticks_at_rest() -> None:
    tele = Teleop(TeleopConfig("joy", axes=(1, 0, -1), deadman_button=4), 3)
    held_still = joy(50.0, [0.0, 0.0], [0, 0, 0, 0, 1])
    np.testing.assert_array_equal(tele.action(held_still, 50.01), [0.0, 0.0, 0.0])  # zero action, not the policy
    np.testing.assert_allclose(tele.action(joy(50.1, [0.3, -0.6], [0, 0, 0, 0, 1]), 50.11), [-0.6, 0.3, 0.0])
    assert tele.action(joy(50.2, [0.3, -0.6], [0, 0, 0, 0, 0]), 50.21) is None  # button released
    assert tele.action(joy(50.3, [0.3, -0.6], [0, 0, 0, 0, 1]), 50.9) is None  # stamped 0.6 s ago: stale
    assert tele.action(joy(51.0, [0.3, -0.6], [1]), 51.0) is None  # the message has no button 4


def test_joy_without_deadman_and_non_finite_input() -> None:
    tele = Teleop(TeleopConfig("joy"), 2)
    assert tele.action(joy(1.0, [0.0, 0.0], []), 1.0) is None
    np.testing.assert_allclose(tele.action(joy(1.0, [0.0, 0.9], []), 1.0), [0.0, 0.9])
    assert tele.action(joy(1.0, [float("nan"), 0.9], []), 1.0) is None  # never sent


@pytest.mark.parametrize(("config", "dim", "match"), [
    (dict(source="mouse"), 2, "source must be 'twist' or 'joy'"),
    (dict(source="twist", deadman_button=0), 2, "deadman_button 0"),
    (dict(source="twist", axes=(0, 6)), 2, "a Twist has inputs 0..5"),
    (dict(source="twist", axes=(0,)), 2, "one entry per action dimension"),
    (dict(source="joy", timeout_s=0.0), 2, "timeout_s must be > 0"),
])
def test_bad_teleop_settings_are_one_line(config: dict, dim: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Teleop(TeleopConfig(**config), dim)


def test_an_override_goes_through_the_gate_like_any_action() -> None:
    spec = ActionSpec(2, "joint_position", scale=(1.0, 1.0), offset=(0.0, 0.0))
    gate = SafetyGate(spec, SafetyConfig(lower=(-0.2, -0.2), upper=(0.2, 0.2)), clock=lambda: 10.0)
    tele = Teleop(TeleopConfig("twist", axes=(0, 1)), 2)
    action = tele.action(twist(0.9, -0.9), 10.0)
    assert action is not None
    obs, stamps = {"state": np.zeros(2, np.float32)}, {"joint_states": 9.99}
    assert gate.check(action, obs, stamps).reason.startswith("holding: stopped")  # not started: refused
    gate.start()
    decision = gate.check(action, obs, stamps)
    np.testing.assert_allclose(decision.command, [0.2, -0.2])
    assert decision.clamped == ["limits"]
