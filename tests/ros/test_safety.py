import numpy as np
import pytest

from robot_rl.core import ActionSpec
from robot_rl.ros import SafetyConfig, SafetyGate


class Clock:
    def __init__(self, t: float = 10.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


SPEC = ActionSpec(2, "joint_position", scale=(1.0, 1.0), offset=(0.0, 0.0))
CFG = SafetyConfig(lower=(-0.5, -0.5), upper=(0.5, 0.5), max_delta=(0.2, 0.2), max_obs_age_s=0.2)
OBS = {"state": np.zeros(2, np.float32)}


def gate(clock: Clock | None = None, **kw) -> SafetyGate:
    g = SafetyGate(SPEC, SafetyConfig(**{**CFG.__dict__, **kw}), clock or Clock())
    g.start()
    return g


def test_needs_explicit_start():
    g = SafetyGate(SPEC, CFG, Clock())
    d = g.check(np.zeros(2), OBS, {"joint_states": 10.0})
    assert d.command is None and "not started" in d.reason
    g.start()
    assert g.check(np.zeros(2), OBS, {"joint_states": 10.0}).allowed


@pytest.mark.parametrize("action", [[1e6, 0.0], [np.nan, 0.0], [0.0, -np.inf]])
def test_bad_action_refused_and_latched(action):
    g = gate()
    d = g.check(np.array(action), OBS, {"joint_states": 10.0}, np.zeros(2))
    assert d.command is None and "action" in d.reason and "\n" not in d.reason
    assert not g.running  # latched: the next good action is refused too
    assert g.check(np.zeros(2), OBS, {"joint_states": 10.0}).command is None
    g.start()
    assert g.check(np.zeros(2), OBS, {"joint_states": 10.0}).allowed


def test_nan_joint_state_refused_before_clamp():
    g = gate()
    d = g.check(np.zeros(2), {"state": np.array([np.nan, 0.0], np.float32)}, {"joint_states": 10.0}, np.zeros(2))
    assert d.command is None and "'state' is not finite" in d.reason


def test_watchdog_uses_injected_clock_and_recovers():
    clock = Clock(10.0)
    g = gate(clock)
    stamps = {"joint_states": 10.0, "image/wrist": 9.85}
    assert g.check(np.zeros(2), OBS, stamps, np.zeros(2)).allowed
    clock.t = 10.1  # camera now 0.25 s old
    d = g.check(np.zeros(2), OBS, stamps, np.zeros(2))
    assert d.command is None and "'image/wrist' is stale" in d.reason
    assert g.running  # stale data holds, does not latch
    stamps["image/wrist"] = 10.1
    assert g.check(np.zeros(2), OBS, stamps, np.zeros(2)).allowed


def test_limits_and_change_cap():
    g = gate()
    d = g.check(np.array([1.0, -0.1]), OBS, {}, position=np.array([0.0, 0.0]))
    assert d.allowed and np.allclose(d.command, [0.2, -0.1]) and "change cap" in d.clamped
    d = g.check(np.array([1.0, 0.0]), OBS, {}, position=np.array([0.45, 0.0]))
    assert np.allclose(d.command, [0.5, 0.0]) and "limits" in d.clamped


def test_estop_latch_and_restart():
    g = gate()
    g.stop("e-stop pressed")
    d = g.check(np.zeros(2), OBS, {})
    assert d.command is None and "e-stop pressed" in d.reason
    assert g.check(np.zeros(2), OBS, {}).command is None
    g.start()
    assert g.check(np.zeros(2), OBS, {}).allowed


def test_hold_command_and_config_errors():
    g = gate()
    assert np.allclose(g.hold_command(np.array([0.1, 0.2])), [0.1, 0.2])
    assert g.hold_command(np.array([np.nan, 0.0])) is None
    twist = SafetyGate(ActionSpec(6, "twist", scale=(0.1,) * 6, offset=(0.0,) * 6))
    assert np.array_equal(twist.hold_command(None), np.zeros(6))
    with pytest.raises(ValueError, match="max_obs_age_s"):
        SafetyConfig(max_obs_age_s=float("nan"))
    with pytest.raises(ValueError, match="lower"):
        SafetyGate(SPEC, SafetyConfig(lower=(0.0,), upper=(1.0,)))
