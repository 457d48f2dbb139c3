"""The reset-free sim harness: two MetaWorld tasks share one world; hand-offs move physics, never teleport."""

from __future__ import annotations

import pytest
import torch

from robot_rl.envs import make_env
from robot_rl.envs.metaworld_env import metaworld_expert
from robot_rl.envs.reset_free import MetaWorldPairBackend, RobotEnvBackend, resolve_pair

PHYS = 38  # mj_getState size of the drawer and door models with the harness's flags (asserted below)


def _run_expert(backend: MetaWorldPairBackend, direction: int, steps: int, stop_on_success: bool = True) -> bool:
    expert = metaworld_expert(backend.tasks[direction])
    obs = backend.observe(direction)
    for _ in range(steps):
        obs, info = backend.step(direction, torch.from_numpy(expert(obs["state"][0].numpy()))[None])
        if stop_on_success and bool(info["success"][0]):
            return True
    return False


@pytest.fixture()
def drawer():
    backend = MetaWorldPairBackend("drawer", seed=3)
    backend.start(0)
    yield backend
    backend.close()


def test_pairs_share_one_model_and_layout():
    assert resolve_pair("drawer") == ("drawer-open-v3", "drawer-close-v3")
    assert resolve_pair("metaworld/door-open-v3:door-close-v3") == ("door-open-v3", "door-close-v3")
    with pytest.raises(ValueError, match="cannot share one world: models differ"):
        MetaWorldPairBackend("drawer-open-v3:door-close-v3")
    with pytest.raises(ValueError, match="expected one of drawer, door or FORWARD_TASK:BACKWARD_TASK"):
        resolve_pair("drawer-open-v3")
    with pytest.raises(ValueError, match="unknown MetaWorld v3 task 'drawer-opne-v3'"):
        MetaWorldPairBackend("drawer-opne-v3:drawer-close-v3")


def test_hand_off_moves_physics_without_teleport(drawer):
    expert = metaworld_expert("drawer-open-v3")
    obs = drawer.observe(0)
    for _ in range(25):  # mid-motion: the hand has velocity when the other task takes over
        obs, _ = drawer.step(0, torch.from_numpy(expert(obs["state"][0].numpy()))[None])
    fwd_row = drawer.envs[0].get_sim_state()[0]
    assert drawer.envs[0]._phys_dim == PHYS
    back = drawer.observe(1)
    bwd_row = drawer.envs[1].get_sim_state()[0]
    assert torch.equal(fwd_row[:PHYS], bwd_row[:PHYS])  # time, qpos, qvel, mocap target, warmstart: identical
    s_f, s_b = obs["state"][0], back["state"][0]
    assert torch.equal(s_f[0:4], s_b[0:4]) and torch.equal(s_f[18:22], s_b[18:22])  # hand now and one step earlier
    assert not torch.equal(s_f[18:21], s_f[0:3])  # the previous frame is a real previous frame, not a copy
    # the two tasks report the handle differently (drawer-close's point is 5 cm higher) and have their own goal
    assert torch.allclose(s_b[4:7] - s_f[4:7], torch.tensor([0.0, 0.0, 0.05]), atol=1e-5)
    assert torch.allclose(s_b[22:25] - s_f[22:25], torch.tensor([0.0, 0.0, 0.05]), atol=1e-5)
    assert not torch.allclose(s_f[36:39], s_b[36:39])
    # stepping on in the other task continues the motion: no jump of the hand or the drawer
    after, _ = drawer.step(1, torch.zeros(1, 4))
    assert float((after["state"][0, 0:3] - s_b[0:3]).norm()) < 0.02
    assert float((after["state"][0, 4:7] - s_b[4:7]).norm()) < 0.01


def test_stepping_in_the_other_task_is_the_same_physics():
    """Hand the world to the backward env for 10 steps and back: the forward env then reports exactly what it
    would have reported had it stepped the same actions itself."""
    actions = torch.linspace(-0.8, 0.8, 40).reshape(10, 4)
    runs = []
    for via_backward in (False, True):
        backend = MetaWorldPairBackend("drawer", seed=5)
        try:
            backend.start(0)
            _run_expert(backend, 0, 30, stop_on_success=False)
            for a in actions:
                backend.step(1 if via_backward else 0, a[None])
            runs.append((backend.observe(0)["state"].clone(), backend.envs[0].get_sim_state()[0, :PHYS].clone()))
        finally:
            backend.close()
    (obs_direct, phys_direct), (obs_via, phys_via) = runs
    assert torch.equal(phys_direct, phys_via)
    assert torch.allclose(obs_direct, obs_via, atol=1e-6)


def test_renders_agree_across_the_hand_off(drawer):
    _run_expert(drawer, 0, 40, stop_on_success=False)
    drawer.observe(1)
    a = drawer.envs[0].render(drawer.envs[0].get_sim_state(), "corner", 96, 96).int()
    b = drawer.envs[1].render(drawer.envs[1].get_sim_state(), "corner", 96, 96).int()
    differs = ((a - b).abs().sum(-1) > 30).float().mean()
    assert 0.0 < float(differs) < 0.03  # only the goal marker moves (each task draws its own goal)


def test_experts_open_then_close_without_a_reset(drawer):
    assert not drawer.ground_truth_success(0) and drawer.ground_truth_success(1)  # starts closed
    assert _run_expert(drawer, 0, 150)
    assert drawer.ground_truth_success(0) and not drawer.ground_truth_success(1)
    assert _run_expert(drawer, 1, 150)  # the close expert starts from wherever the open expert left the world
    assert drawer.ground_truth_success(1) and not drawer.ground_truth_success(0)
    assert drawer.handoffs >= 2 and drawer.stuck_reason() is None


def test_intervention_restores_a_start_state_of_the_direction(drawer):
    _run_expert(drawer, 0, 30, stop_on_success=False)
    obs = drawer.intervene(1, "test")
    state = obs["state"][0]
    assert torch.equal(state[0:18], state[18:36])  # a reset observation: previous frame = current frame
    ref = make_env("metaworld/drawer-close-v3")
    try:
        ref_obs, _ = ref.reset(seed=0)
        # the close task starts with the drawer pulled out, hand at its start pose (layout may differ in x)
        assert torch.allclose(state[1:3], ref_obs["state"][0, 1:3], atol=1e-3)
        assert torch.allclose(state[5], ref_obs["state"][0, 5], atol=1e-3)
    finally:
        ref.close()
    assert drawer.ground_truth_success(1) is False


def test_door_pair_hands_off():
    backend = MetaWorldPairBackend("door", seed=0)
    try:
        backend.start(1)  # door-close starts with the door open
        assert not backend.ground_truth_success(1)
        _run_expert(backend, 1, 120)
        assert backend.ground_truth_success(1)
        a, b = backend.observe(1), backend.observe(0)
        assert torch.equal(a["state"][0, :11], b["state"][0, :11])  # same handle convention in both door tasks
        assert backend.episode_lengths == (200, 150)
    finally:
        backend.close()


def test_robot_backend_needs_one_env():
    env = make_env("metaworld/drawer-open-v3", num_envs=2)
    try:
        with pytest.raises(ValueError, match="needs num_envs == 1"):
            RobotEnvBackend(env, on_intervention=lambda d, r: None)
    finally:
        env.close()


def test_home_puts_the_arm_back_and_leaves_the_drawer_open(drawer):
    start = drawer.observe(0)["state"][0].clone()
    assert _run_expert(drawer, 0, 150)  # the drawer is open, the hand at the handle, far from its start pose
    obs = drawer.observe(1)["state"][0].clone()
    assert torch.linalg.norm(obs[:3] - start[:3]) > 0.05
    drawer.home()
    after = drawer.observe(1)["state"][0]
    assert torch.allclose(after[:3], start[:3], atol=1e-3) and drawer.homes == 1  # the hand is where it started
    assert torch.equal(after[4:7], obs[4:7])  # the drawer is exactly where the open attempt left it
    assert torch.equal(after[:18], after[18:36])  # at rest: the previous frame is this one
    assert drawer.ground_truth_success(0) and not drawer.ground_truth_success(1)
    obs, _ = drawer.step(1, torch.zeros(1, 4))  # and the world steps on from there
    assert torch.linalg.norm(obs["state"][0, :3] - start[:3]) < 0.01
