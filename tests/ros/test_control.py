import numpy as np
import pytest
import torch

from robot_rl.apps.robot_nodes import load_control_loop
from robot_rl.core import check_env
from robot_rl.envs.ros_env import RosEnv
from robot_rl.ros import ControlConfig, ControlLoop, ObservationConfig, SafetyConfig, rosbags_types
from tests.ros import JOINTS, SPEC, TS, FakeArm, T, image, joint_state, train_toy_policy

CONFIG = ControlConfig(ObservationConfig(JOINTS, cameras=("wrist",), image_size=4), control_rate_hz=10.0,
                       safety=SafetyConfig(lower=(-1.0, -1.0), upper=(1.0, 1.0), max_delta=(0.3, 0.3),
                                           max_obs_age_s=0.2))


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_toy_policy(tmp_path_factory.mktemp("ros"))


@pytest.fixture
def loop(run_dir):
    clock = Clock()
    loop = load_control_loop(run_dir, CONFIG, rosbags_types(TS), clock=clock)
    return loop, clock


def feed(loop, t, positions=(0.5, -0.5), camera_t=None):
    loop.cache.put("joint_states", joint_state(t, positions))
    loop.cache.put("image/wrist", image(t if camera_t is None else camera_t))


def test_tick_runs_checkpoint_policy(loop):
    loop, clock = loop
    feed(loop, clock.t)
    assert loop.tick().message is None  # not started
    loop.start()
    res = loop.tick()
    assert res.message is not None, res.reason
    want = loop.policy({"state": torch.tensor([[0.5, -0.5]])})[0].numpy()
    assert np.allclose(res.action, want, atol=1e-6)
    assert list(res.message.joint_names) == list(JOINTS)
    TS.serialize_cdr(res.message, res.message.__msgtype__)  # a publishable message
    assert res.observation.terms["image/wrist"].shape == (4, 4, 3)


def test_tick_holds_on_nan_stale_missing(loop):
    loop, clock = loop
    loop.start()
    assert loop.tick().message is None and "no joint_states" in loop.gate.last_reason
    feed(loop, clock.t, camera_t=clock.t - 0.5)
    res = loop.tick()
    assert res.message is None and "stale" in res.reason and res.action is None
    feed(loop, clock.t, positions=(np.nan, 0.0))
    res = loop.tick()
    assert res.message is None and "not finite" in res.reason
    feed(loop, clock.t)
    assert loop.tick().message is None  # latched until an explicit start
    loop.start()
    assert loop.tick().message is not None


def test_policy_emitting_huge_or_nan_action(loop):
    loop, clock = loop
    for bad in (1e6, float("nan")):
        loop.policy = lambda obs, v=bad: torch.full((1, 2), v)
        loop.start()
        feed(loop, clock.t)
        res = loop.tick()
        assert res.message is None and "action" in res.reason and "\n" not in res.reason


def test_publish_hold(run_dir):
    cfg = ControlConfig(CONFIG.observation, safety=CONFIG.safety, publish_hold=True)
    clock = Clock()
    loop = load_control_loop(run_dir, cfg, rosbags_types(TS), clock=clock)
    feed(loop, clock.t, positions=(0.25, 0.5))
    res = loop.tick()  # stopped: the hold command is the measured position
    assert res.decision.command is None and np.allclose(res.message.points[0].positions, [0.25, 0.5])


def test_loop_runs_any_policy_callable():
    """``ControlLoop`` takes a built policy: any ``obs -> action [1, A]`` callable, no run folder."""
    clock = Clock()
    cfg = ControlConfig(ObservationConfig(JOINTS), safety=CONFIG.safety)
    seen = []
    loop = ControlLoop(lambda obs: seen.append(obs) or torch.tensor([[0.1, -0.2]]), SPEC, cfg, rosbags_types(TS),
                       clock=clock)
    loop.cache.put("joint_states", joint_state(clock.t, (0.5, -0.5)))
    loop.start()
    res = loop.tick()
    assert res.message is not None, res.reason
    assert np.allclose(res.action, [0.1, -0.2]) and torch.equal(seen[0]["state"], torch.tensor([[0.5, -0.5]]))


def test_config_mismatch_is_one_line(run_dir):
    with pytest.raises(ValueError, match="state of 4 values"):
        load_control_loop(run_dir, ControlConfig(ObservationConfig(JOINTS, ("position", "velocity"))),
                          rosbags_types(TS))


def test_ros_env_passes_check_env():
    env = RosEnv(SPEC, FakeArm(), ControlConfig(ObservationConfig(JOINTS), safety=CONFIG.safety), rosbags_types(TS))
    check_env(env)
    obs, _ = env.reset(seed=0)
    res = env.step(torch.tensor([[0.1, -0.1]]))
    assert torch.isnan(res.reward).all() and res.info["safety"] == "" and bool(res.info["commanded"][0])
    assert torch.allclose(res.obs["state"], torch.tensor([[0.2, -0.2]]))  # change cap 0.3 from (0.5, -0.5)


def test_ros_env_holds_on_stale_camera_and_nan_joints():
    arm = FakeArm(cameras=("wrist",))
    spec = SPEC.__class__(**{**SPEC.__dict__, "observations": {**SPEC.observations, "image/wrist": image_spec()}})
    cfg = ControlConfig(ObservationConfig(JOINTS, cameras=("wrist",)), safety=CONFIG.safety)
    env = RosEnv(spec, arm, cfg, rosbags_types(TS))
    env.reset()
    arm.camera_delay = 1.0
    env.step(torch.zeros(1, 2))  # the observation it gated on was fresh; the new one is stale
    res = env.step(torch.zeros(1, 2))
    assert "stale" in res.info["safety"] and not bool(res.info["commanded"][0])
    n = len(arm.published)
    arm.camera_delay, arm.nan_joints = 0.0, True
    env.step(torch.zeros(1, 2))
    res = env.step(torch.zeros(1, 2))
    assert "not finite" in res.info["safety"] and len(arm.published) == n


def image_spec():
    from robot_rl.core import ArraySpec

    return ArraySpec((8, 8, 3), "uint8")


class EstopArm(FakeArm):
    """A FakeArm whose transport also delivers an ``estop`` Bool once, when ``estop`` is set."""

    estop: bool | None = None

    def spin(self, duration_s: float) -> list:
        out = super().spin(duration_s)
        if self.estop is not None:
            out.append(("estop", T["std_msgs/msg/Bool"](data=self.estop)))
            self.estop = None
        return out


def test_ros_env_latches_on_the_estop_key_and_refuses_reset_while_asserted():
    arm = EstopArm()
    env = RosEnv(SPEC, arm, ControlConfig(ObservationConfig(JOINTS), safety=CONFIG.safety), rosbags_types(TS),
                 reset_timeout_s=0.3)
    env.reset()
    arm.estop = True
    env.step(torch.tensor([[0.1, -0.1]]))  # the e-stop arrives during this step's spin
    n = len(arm.published)
    res = env.step(torch.tensor([[0.1, -0.1]]))
    assert "e-stop" in res.info["safety"] and not bool(res.info["commanded"][0]) and len(arm.published) == n
    arm.estop = True  # still asserted (a latched topic delivers it again after a reconnect)
    with pytest.raises(RuntimeError, match="e-stop is asserted"):
        env.reset()
    arm.estop = False  # released: a reset brings motion back
    env.reset()
    assert bool(env.step(torch.tensor([[0.1, -0.1]])).info["commanded"][0])


def test_ros_env_hold_action_keeps_the_arm_where_it_is():
    arm = FakeArm(start=(0.3, -0.2))
    env = RosEnv(SPEC, arm, ControlConfig(ObservationConfig(JOINTS), safety=CONFIG.safety), rosbags_types(TS))
    assert torch.equal(env.hold_action(), torch.zeros(1, 2))  # nothing measured yet: zeros
    env.reset()
    hold = env.hold_action()
    assert torch.allclose(hold, torch.tensor([[0.3, -0.2]]))  # position mode: the measured joints, normalized
    res = env.step(hold)
    assert res.info["safety"] == "" and np.allclose(arm.position, [0.3, -0.2])  # through the gate, it stays
