"""gymnasium MuJoCo backend: conformance, no success, termination, sim-state round trips, rendering."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from robot_rl.core import check_env
from robot_rl.envs import make_env

TASKS = ("gym/HalfCheetah-v5", "gym/Hopper-v5", "gym/Walker2d-v5")


@pytest.mark.parametrize("name", TASKS)
def test_check_env(name: str) -> None:
    env = make_env(name, num_envs=2, episode_length=20)
    try:
        check_env(env)
        assert env.spec.cameras == ("track",)
        assert "success" not in env.step(torch.zeros(2, env.spec.action.dim)).info
        assert "unknown" in env.spec.extras["success"]
    finally:
        env.close()


def test_spec_matches_gymnasium() -> None:
    import gymnasium

    ref = gymnasium.make("Hopper-v5")
    env = make_env("gym/Hopper-v5")
    try:
        assert env.spec.state_dim == 11 and ref.observation_space.shape == (11,)
        assert env.spec.action.dim == 3 and env.spec.action.mode == "joint_torque"
        unwrapped: Any = ref.unwrapped
        gear = unwrapped.model.actuator_gear[:, 0]
        assert env.spec.action.scale == tuple(float(g) for g in gear)  # ctrl range [-1, 1], torque = ctrl * gear
        assert env.spec.max_episode_steps == 1000
        assert [s.name for s in env.spec.state_slices][:2] == ["root_z", "root_angle"]
        assert env.spec.state_slices[-1].stop == 11
    finally:
        env.close()
        ref.close()


def test_same_seed_matches_gymnasium_reset() -> None:
    import gymnasium

    ref = gymnasium.make("HalfCheetah-v5")
    env = make_env("gym/HalfCheetah-v5", num_envs=2)
    try:
        obs, _ = env.reset(seed=10)
        for i in range(2):
            ref_obs, _ = ref.reset(seed=10 + i)
            assert torch.equal(obs["state"][i], torch.from_numpy(ref_obs).float())
    finally:
        env.close()
        ref.close()


def test_hopper_terminates_when_it_falls_and_autoresets() -> None:
    env = make_env("gym/Hopper-v5", num_envs=1)
    try:
        env.reset(seed=0)
        steps = 0
        for _ in range(300):
            res = env.step(torch.ones(1, 3))  # full torque: falls quickly
            steps += 1
            if bool(res.terminated[0]):
                break
        else:
            pytest.fail("the hopper did not fall in 300 steps of full torque")
        assert not bool(res.truncated[0])
        final, first = res.info["final_obs"]["state"][0], res.obs["state"][0]
        assert not torch.equal(final, first)
        assert res.info["sim_state"][0, -1] == 0 and res.info["final_sim_state"][0, -1] == steps
    finally:
        env.close()


def test_sim_state_round_trip_and_render() -> None:
    env = make_env("gym/Walker2d-v5", num_envs=2, cameras=("track",), image_size=(24, 24))
    try:
        env.reset(seed=0)
        actions = torch.rand(20, 2, 6, generator=torch.Generator().manual_seed(0)) * 0.2 - 0.1  # gentle: no fall
        for t in range(5):
            res = env.step(actions[t])
        saved, images = res.info["sim_state"], res.obs["image/track"]
        later = [env.step(actions[t]) for t in range(5, 20)]
        assert not any(bool((r.terminated | r.truncated).any()) for r in later), "an autoreset draws new noise"
        assert torch.equal(env.set_sim_state(saved)["state"], res.obs["state"])
        for t, ref in zip(range(5, 20), later, strict=True):
            again = env.step(actions[t])
            assert torch.equal(again.obs["state"], ref.obs["state"]) and torch.equal(again.reward, ref.reward)
            assert torch.equal(again.obs["image/track"], ref.obs["image/track"])
        assert torch.equal(env.render(saved, "track", 24, 24), images)
        assert images.float().std() > 5, "the frame should show something"
    finally:
        env.close()
