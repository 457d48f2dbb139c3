"""MetaWorld backend: conformance, seeded layouts, sim-state round trips, rendering, action checks, expert."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from robot_rl.core import SimEnv, check_env
from robot_rl.envs import load_task_card, make_env
from robot_rl.envs.metaworld_env import MetaWorldEnv, metaworld_expert, task_names

TASK = "metaworld/drawer-open-v3"


@pytest.fixture
def env() -> Iterator[MetaWorldEnv]:
    e = make_env(TASK, num_envs=3, episode_length=40)
    assert isinstance(e, MetaWorldEnv)
    yield e
    e.close()


def _random_actions(steps: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(steps, n, 4, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.mark.parametrize("num_envs", [1, 3])
def test_check_env(num_envs: int) -> None:
    e = make_env(TASK, num_envs=num_envs, episode_length=20)
    try:
        assert isinstance(e, SimEnv)
        check_env(e)
    finally:
        e.close()


def test_spec_describes_the_39_dim_state_with_a_visible_goal(env: MetaWorldEnv) -> None:
    obs, _ = env.reset(seed=0)
    spec = env.spec
    assert spec.state_dim == 39 and spec.action.mode == "ee_delta" and spec.action.scale[:3] == (0.01,) * 3
    parts = spec.split_state(obs["state"])
    goal = parts["goal_pos"].numpy()
    assert np.allclose(goal[0], env._instances[0].env._target_pos, atol=1e-6)  # the true goal, not zeros
    assert spec.state_slice("prev_hand_pos") == slice(18, 21)
    assert torch.equal(parts["hand_pos"], parts["prev_hand_pos"])  # at reset the previous frame is the current
    assert spec.sim_state_dim == env.get_sim_state().shape[1]
    assert spec.extras["sim_state_layout"][-1][0] == "episode_step"


_LAYOUT_SCRIPT = """
import json, torch
from robot_rl.envs import make_env
e = make_env('%s', num_envs=2, episode_length=3)
obs, _ = e.reset(seed=%d)
first = obs['state'][:, 4:7].tolist() + obs['state'][:, 36:39].tolist()
for _ in range(3):
    r = e.step(torch.zeros(2, 4))
print(json.dumps(first + r.obs['state'][:, 4:7].tolist()))  # after the autoreset: the next layouts
"""


def _layouts_in_subprocess(seed: int) -> list[list[float]]:
    out = subprocess.run([sys.executable, "-c", _LAYOUT_SCRIPT % (TASK, seed)], capture_output=True, text=True,
                         check=True, env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_same_seed_same_layout_across_processes_different_seed_different_layout(env: MetaWorldEnv) -> None:
    a, b = _layouts_in_subprocess(5), _layouts_in_subprocess(5)
    assert a == b
    assert a[0] != a[1], "env 0 and env 1 (seeds 5 and 6) should get different layouts"
    assert a[4] != a[0], "the autoreset should draw a new layout"
    obs, _ = env.reset(seed=5)  # this process agrees, and seed 6 for env 0 is env 1's layout with seed 5
    assert np.allclose(obs["state"][:2, 4:7].tolist(), a[:2], atol=1e-7)
    obs, _ = env.reset(seed=6)
    assert np.allclose(obs["state"][0, 4:7].tolist(), a[1], atol=1e-7)
    assert obs["state"][0, 4:7].tolist() != a[0]


def test_rendering_then_torch_dynamo_does_not_crash() -> None:
    """Mesa's LLVM (EGL on the CPU) and triton's clash unless triton loads first (see mujoco_batch)."""
    code = ("from robot_rl.envs import make_env\n"
            f"e = make_env('{TASK}', episode_length=3, cameras=('corner',), image_size=(8, 8)); e.reset(seed=0)\n"
            "import torch, torch._dynamo\n"
            "torch.optim.Adam([torch.zeros(1, requires_grad=True)])\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")})
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_seed_none_continues_the_layout_generator(env: MetaWorldEnv) -> None:
    obs0, _ = env.reset(seed=1)
    obs1, _ = env.reset()
    assert not torch.equal(obs0["state"][:, 4:7], obs1["state"][:, 4:7])
    again, _ = env.reset(seed=1)
    assert torch.equal(obs0["state"], again["state"])


def test_sim_state_restores_into_another_instance_exactly(env: MetaWorldEnv) -> None:
    acts = _random_actions(30, 3)
    env.reset(seed=3)
    for t in range(10):
        res = env.step(acts[t])
    saved = res.info["sim_state"]
    other = make_env(TASK, num_envs=3, episode_length=40)
    try:
        other.reset(seed=100)  # other layouts: restoring must rebuild the saved ones
        restored = other.set_sim_state(saved)
        assert torch.equal(restored["state"], res.obs["state"])
        assert torch.equal(other.get_sim_state(), saved)
        for t in range(10, 30):
            a, b = env.step(acts[t]), other.step(acts[t])
            assert torch.equal(a.obs["state"], b.obs["state"]) and torch.equal(a.reward, b.reward)
            assert torch.equal(a.info["sim_state"], b.info["sim_state"])
    finally:
        other.close()


def test_reset_observation_matches_its_restored_state(env: MetaWorldEnv) -> None:
    # MetaWorld's own reset obs reads object positions before mj_forward; ours must describe the state.
    env.reset(seed=0)
    obs, info = env.reset(seed=1)
    restored = env.set_sim_state(info["sim_state"])
    assert torch.equal(restored["state"], obs["state"])
    assert torch.allclose(restored["privileged"], obs["privileged"])


def test_final_state_can_be_restored_but_not_stepped() -> None:
    e = make_env(TASK, num_envs=1, episode_length=3)
    try:
        e.reset(seed=0)
        for _ in range(3):
            res = e.step(torch.zeros(1, 4))
        assert bool(res.truncated[0]) and res.info["final_sim_state"][0, -1] == 3
        obs = e.set_sim_state(res.info["final_sim_state"])
        assert torch.equal(obs["state"], res.info["final_obs"]["state"])
        with pytest.raises(RuntimeError, match="reset"):
            e.step(torch.zeros(1, 4))
        bad = res.info["final_sim_state"].clone()
        bad[0, -1] = 4
        with pytest.raises(ValueError, match="episode step 4"):
            e.set_sim_state(bad)
    finally:
        e.close()


def test_render_of_stored_states_equals_live_images_and_is_deterministic() -> None:
    e = make_env(TASK, num_envs=2, episode_length=40, cameras=("corner",), image_size=(24, 32))
    try:
        obs, info = e.reset(seed=0)
        res = e.step(_random_actions(1, 2)[0])
        assert res.obs["image/corner"].shape == (2, 24, 32, 3) and res.obs["image/corner"].dtype == torch.uint8
        before = e.get_sim_state()
        states = torch.cat([info["sim_state"], res.info["sim_state"]])  # two layouts, interleaved below
        frames = e.render(states[[0, 2, 1, 3]], "corner", 32, 24)
        assert torch.equal(frames[0], obs["image/corner"][0]) and torch.equal(frames[2], obs["image/corner"][1])
        assert torch.equal(frames[1], res.obs["image/corner"][0]) and torch.equal(frames[3], res.obs["image/corner"][1])
        assert torch.equal(e.render(states[[0, 2, 1, 3]], "corner", 32, 24), frames)
        assert torch.equal(e.get_sim_state(), before)
        assert not torch.equal(frames[0], frames[1]), "the step should change the picture"
        assert e.render(states[:1], "topview", 16, 8).shape == (1, 8, 16, 3)
        with pytest.raises(ValueError, match="corner2"):
            e.render(states, "nope", 8, 8)
    finally:
        e.close()


def test_nan_action_names_env_and_out_of_range_is_clipped_and_counted(env: MetaWorldEnv) -> None:
    env.reset(seed=0)
    bad = torch.zeros(3, 4)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="env 1"):
        env.step(bad)
    twin = make_env(TASK, num_envs=3, episode_length=40)
    try:
        env.reset(seed=0)
        twin.reset(seed=0)
        big = torch.tensor([[0.5, 0.5, 0.5, 0.5], [3.0, -2.0, 0.5, 0.5], [0.0, 0.0, 0.0, 1.5]])
        res = env.step(big)
        assert res.info["action_clipped"].tolist() == [0, 2, 1]
        ref = twin.step(big.clamp(-1, 1))
        assert ref.info["action_clipped"].tolist() == [0, 0, 0]
        assert torch.equal(res.obs["state"], ref.obs["state"])
        res = env.step(torch.zeros(3, 4, dtype=torch.float64))  # other dtypes are converted
        assert res.info["action_clipped"].tolist() == [0, 0, 0]
        with pytest.raises(ValueError, match="shape"):
            env.step(torch.zeros(3, 5))
    finally:
        twin.close()


def test_returned_tensors_are_not_overwritten_by_later_steps(env: MetaWorldEnv) -> None:
    env.reset(seed=0)
    first = env.step(_random_actions(1, 3)[0])
    kept = first.obs["state"].clone()
    for a in _random_actions(100, 3, seed=1):  # past several output blocks and an autoreset
        env.step(a)
    assert torch.equal(first.obs["state"], kept)


def test_privileged_terms_follow_metaworld_info(env: MetaWorldEnv) -> None:
    env.reset(seed=0)
    res = env.step(torch.zeros(3, 4))
    names = [row[0] for row in env.spec.extras["privileged"]]
    priv = res.obs["privileged"]
    assert priv.shape == (3, env.spec.observations["privileged"].shape[0]) == (3, len(names) + 2)  # tcp_pos: 3
    assert torch.equal(priv[:, names.index("success")].bool(), res.info["success"])
    hand = res.obs["state"][:, 0:3]
    assert ((priv[:, -3:] - hand).norm(dim=1) < 0.15).all(), "tcp_pos is the finger midpoint, near the hand"


def test_expert_opens_the_drawer_within_the_card_episode_length() -> None:
    card = load_task_card(TASK)
    assert card is not None
    e = make_env(TASK, num_envs=5)
    expert = metaworld_expert("drawer-open-v3")
    try:
        obs, _ = e.reset(seed=0)  # envs use seeds 0..4
        succeeded = torch.zeros(5, dtype=torch.bool)
        for _ in range(card.episode_length):
            action = torch.from_numpy(np.stack([expert(s) for s in obs["state"].numpy()]))
            res = e.step(action)
            assert int(res.info["action_clipped"].sum()) == 0, "the expert's actions come clipped to [-1, 1]"
            succeeded |= res.info["success"]
            if bool(res.truncated.any()):
                break
            obs = res.obs
        assert succeeded.all(), f"expert failed on env seeds {torch.nonzero(~succeeded).flatten().tolist()}"
    finally:
        e.close()


def test_unknown_expert_and_camera_are_rejected() -> None:
    with pytest.raises(ValueError, match="drawer-open-v3"):
        metaworld_expert("drawer-opne-v3")
    with pytest.raises(ValueError, match="gripperPOV"):
        make_env(TASK, cameras=("side",))


@pytest.mark.slow
def test_every_task_restores_exactly_into_a_fresh_instance() -> None:
    """All 50 tasks: layouts seeded, sim state restored across instances, stepping identical (~15 s)."""
    acts = _random_actions(30, 1, seed=2)
    for task in task_names():
        a, b = make_env(f"metaworld/{task}", episode_length=60), make_env(f"metaworld/{task}", episode_length=60)
        try:
            obs, info = a.reset(seed=3)
            for t in range(15):
                res = a.step(acts[t])
            b.reset(seed=4)
            assert torch.equal(b.set_sim_state(res.info["sim_state"])["state"], res.obs["state"]), task
            for t in range(15, 30):
                ra, rb = a.step(acts[t]), b.step(acts[t])
                assert torch.equal(ra.obs["state"], rb.obs["state"]) and torch.equal(ra.reward, rb.reward), task
            assert torch.equal(b.set_sim_state(info["sim_state"])["state"], obs["state"]), task
        finally:
            a.close()
            b.close()
