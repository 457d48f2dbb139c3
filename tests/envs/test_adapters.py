"""gymnasium and Stable-Baselines3 adapters."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

from robot_rl.envs import make_env
from robot_rl.envs.adapters import to_gymnasium, to_sb3_vec_env


@pytest.mark.parametrize("name", ["metaworld/drawer-open-v3", "gym/Hopper-v5"])
def test_gymnasium_env_checker_passes(name: str) -> None:
    env = to_gymnasium(make_env(name, episode_length=15))
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*infinity.*")  # unbounded object positions
            gymnasium_check_env(env, skip_render_check=True)
        assert isinstance(env.observation_space, spaces.Box)
    finally:
        env.close()


def test_gymnasium_obs_is_a_dict_with_images_and_episode_ends_with_the_final_obs() -> None:
    env = to_gymnasium(make_env("metaworld/drawer-open-v3", episode_length=3, cameras=("corner",),
                                image_size=(16, 16)))
    try:
        assert isinstance(env.observation_space, spaces.Dict)
        assert set(env.observation_space.spaces) == {"state", "image/corner"}
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs) and "privileged" in info and "sim_state" in info
        for _ in range(3):
            obs, reward, terminated, truncated, info = env.step(np.zeros(4, dtype=np.float32))
        assert truncated and not terminated
        final_state = obs["state"]
        first, _ = env.reset()  # the env already reset itself: this is the new episode's first obs
        assert not np.array_equal(first["state"], final_state)
        with pytest.raises(ValueError, match="num_envs == 1"):
            to_gymnasium(make_env("gym/Hopper-v5", num_envs=2))
    finally:
        env.close()


@pytest.mark.parametrize("name, action, truncated", [("gym/HalfCheetah-v5", 0.0, True), ("gym/Hopper-v5", 1.0, False)])
def test_sb3_vec_env_reports_terminal_observation(name: str, action: float, truncated: bool) -> None:
    venv = to_sb3_vec_env(make_env(name, num_envs=2, episode_length=40))
    try:
        venv.seed(0)
        obs: Any = venv.reset()
        dim = 6 if "Cheetah" in name else 3
        for _ in range(40):
            last = obs
            obs, rewards, dones, infos = venv.step(np.full((2, dim), action, dtype=np.float32))
            if dones.any():
                break
        i = int(np.flatnonzero(dones)[0])
        terminal = infos[i]["terminal_observation"]
        assert terminal.shape == obs[i].shape and not np.array_equal(terminal, obs[i])
        assert not np.array_equal(terminal, last[i])
        assert infos[i]["TimeLimit.truncated"] is truncated
    finally:
        venv.close()


def test_sb3_ppo_learns_briefly() -> None:
    from stable_baselines3 import PPO

    venv = to_sb3_vec_env(make_env("gym/Hopper-v5", num_envs=2, episode_length=30))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = PPO("MlpPolicy", venv, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
        model.learn(total_timesteps=200)
        assert model.num_timesteps >= 200
    finally:
        torch.set_num_threads(threads)
        venv.close()
