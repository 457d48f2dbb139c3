"""The MJX backend on the CPU (JAX CPU): protocol, autoreset, restore, rendering, experts, collect.

Compiling a task's step takes 10-20 s on a CPU, so every test shares one env per task (batch 2, the task
card's episode length) from a module fixture; JAX caches the compiled functions per task and batch size.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("mujoco.mjx")

from robot_rl.cli.main import main  # noqa: E402
from robot_rl.core.check_env import check_env  # noqa: E402
from robot_rl.data import Dataset  # noqa: E402
from robot_rl.envs import load_task_card, make_env, task_expert  # noqa: E402
from robot_rl.envs.mjx import TASK_NAMES  # noqa: E402

N = 2


@pytest.fixture(scope="module")
def envs():
    made = {}
    yield made
    for env in made.values():
        env.close()


def _env(envs, task: str):
    if task not in envs:
        envs[task] = make_env(f"mjx/{task}", num_envs=N)
    return envs[task]


def _run_expert(env, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """One episode per row with the task's expert; returns (success ever, step infos)."""
    expert = task_expert(env.spec.name)
    obs, _ = env.reset(seed=seed)
    ever = torch.zeros(env.num_envs, dtype=torch.bool)
    for _ in range(env.spec.max_episode_steps):
        act = torch.from_numpy(np.stack([expert(s) for s in obs["state"].numpy()]))
        res = env.step(act)
        ever |= res.info["success"]
        obs = res.obs
    return ever, res


def test_importing_the_registry_does_not_import_jax() -> None:
    code = ("import sys; from robot_rl.envs import list_tasks; names = list_tasks(); "
            "assert 'mjx/drawer-open' in names; assert 'jax' not in sys.modules, 'jax imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]


@pytest.mark.parametrize("task", TASK_NAMES)
def test_check_env_passes_and_the_expert_succeeds(envs, task: str) -> None:
    env = _env(envs, task)
    card = load_task_card(f"mjx/{task}")
    assert card is not None and env.spec.task_text == card.task_text
    assert env.spec.max_episode_steps == card.episode_length
    check_env(env)
    ever, last = _run_expert(env, seed=11)
    assert bool(ever.all()), f"mjx/{task}: the expert failed in rows {(~ever).nonzero().flatten().tolist()}"
    # the last step of the episode truncates every row and autoresets it (same step)
    assert bool(last.truncated.all()) and not bool(last.terminated.any())
    assert "final_obs" in last.info and not torch.equal(last.info["final_obs"]["state"], last.obs["state"])


def test_random_actions_rarely_succeed_and_the_reward_is_dense(envs) -> None:
    env = _env(envs, "drawer-open")
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    rewards, success = [], torch.zeros(N, dtype=torch.bool)
    for _ in range(40):
        res = env.step(torch.rand(N, 3, generator=gen) * 2 - 1)
        rewards.append(res.reward)
        success |= res.info["success"]
    r = torch.stack(rewards)
    assert not bool(success.any())
    assert float(r.std()) > 0 and 0 < float(r.max()) < 10  # shaped, not a sparse 0/10


def test_reset_and_step_share_one_compiled_step(envs) -> None:
    """Batches built by reset and by step have the same types: stepping after a reset does not re-trace."""
    env = _env(envs, "drawer-open")
    env.reset(seed=1)
    env.step(torch.zeros(N, 3))
    size = env._fns.step._cache_size()  # noqa: SLF001
    env.reset(seed=2)
    env.step(torch.zeros(N, 3))
    env.set_sim_state(env.get_sim_state())
    env.step(torch.zeros(N, 3))
    assert env._fns.step._cache_size() == size


def test_seeds_give_layouts_and_restore_is_exact(envs) -> None:
    env = _env(envs, "push")
    a, _ = env.reset(seed=5)
    b, _ = env.reset(seed=5)
    c, _ = env.reset(seed=6)
    assert torch.equal(a["state"], b["state"]) and not torch.equal(a["state"], c["state"])
    assert not torch.equal(a["state"][0], a["state"][1])  # env i is seeded with seed + i
    gen = torch.Generator().manual_seed(1)
    actions = [torch.rand(N, 3, generator=gen) * 2 - 1 for _ in range(6)]
    for act in actions[:3]:
        env.step(act)
    saved = env.get_sim_state()
    first = [env.step(act).obs["state"] for act in actions[3:]]
    restored = env.set_sim_state(saved)
    assert torch.equal(restored["state"], env.set_sim_state(saved)["state"])
    again = [env.step(act).obs["state"] for act in actions[3:]]
    for x, y in zip(first, again, strict=True):
        assert torch.equal(x, y)


def test_final_obs_is_the_finished_episode_and_renders(envs) -> None:
    env = _env(envs, "reach")
    obs, _ = env.reset(seed=3)
    length = env.spec.max_episode_steps
    for _ in range(length - 1):
        res = env.step(torch.zeros(N, 3))
        assert "final_obs" not in res.info
    prev = res.obs["state"]
    res = env.step(torch.zeros(N, 3))
    final = res.info["final_obs"]["state"]
    assert torch.allclose(final[:, 12:15], prev[:, 12:15])  # the old goal
    assert not torch.equal(res.obs["state"][:, 12:15], prev[:, 12:15])  # a new layout
    assert res.info["final_sim_state"][:, -1].tolist() == [length] * N
    assert res.info["sim_state"][:, -1].tolist() == [0] * N
    # restoring the final row gives back its observation; it cannot be stepped without a reset
    assert torch.equal(env.set_sim_state(res.info["final_sim_state"])["state"], final)
    with pytest.raises(RuntimeError, match="reset"):
        env.step(torch.zeros(N, 3))
    frames = env.render(torch.cat([res.info["final_sim_state"], res.info["sim_state"]]), "topview", 48, 32)
    assert frames.shape == (2 * N, 32, 48, 3) and frames.dtype == torch.uint8
    assert not torch.equal(frames[0], frames[N])  # the goal moved


def test_camera_observations_render_the_live_and_the_final_state(envs) -> None:
    _env(envs, "reach")  # same task and batch size: no new compilation
    env = make_env("mjx/reach", num_envs=N, cameras=("topview",), image_size=(24, 32), episode_length=2)
    try:
        obs, info = env.reset(seed=4)
        assert obs["image/topview"].shape == (N, 24, 32, 3) and obs["image/topview"].dtype == torch.uint8
        assert torch.equal(obs["image/topview"], env.render(info["sim_state"], "topview", 32, 24))
        env.step(torch.ones(N, 3))
        res = env.step(torch.ones(N, 3))  # the episode ends: final_obs has the finished episode's frame
        final = res.info["final_obs"]["image/topview"]
        assert torch.equal(final, env.render(res.info["final_sim_state"], "topview", 32, 24))
        assert not torch.equal(final, res.obs["image/topview"])
    finally:
        env.close()


def test_bad_input_gives_one_line_errors(envs) -> None:
    env = _env(envs, "reach")
    env.reset(seed=0)
    for bad, match in ((torch.zeros(N, 5, dtype=torch.float64), "float64"),
                       (torch.zeros(N, env.spec.sim_state_dim, dtype=torch.float32), "float64"),
                       (torch.full((N, env.spec.sim_state_dim), -1.0, dtype=torch.float64), "episode step")):
        with pytest.raises(ValueError, match=match) as e:
            env.set_sim_state(bad)
        assert "\n" not in str(e.value) and "mjx/reach" in str(e.value)
    with pytest.raises(ValueError, match="unknown camera 'nope'"):
        env.render(env.get_sim_state(), "nope", 8, 8)
    with pytest.raises(ValueError, match="unknown MJX task|unknown task"):
        make_env("mjx/reach-v9")
    with pytest.raises(ValueError, match="no scripted expert"):
        task_expert("gym/Hopper-v5")


def test_collect_with_the_expert_preset_writes_successful_episodes(tmp_path: Path, envs) -> None:
    _env(envs, "reach")  # compiled already for this batch size
    out = tmp_path / "reach.h5"
    assert main(["collect", "--task", "mjx/reach", "--episodes", "2", "--num-envs", str(N), "--preset", "expert",
                 "--seed", "0", "--out", str(out), "--image-every", "10", "--image-size", "32"]) == 0
    with Dataset(out) as ds:
        assert ds.num_episodes == 2 and ds.spec.name == "mjx/reach" and ds.task_text
        for name in ds.episode_names:
            ep = ds.load_episode(name, images=True)
            assert ep.successes is not None and ep.successes.any() and ep.length == ds.spec.max_episode_steps
            camera, frames = next(iter(ep.images.items()))
            assert camera == "corner" and frames.shape == (5, 32, 32, 3) and frames.std() > 0


@pytest.mark.slow
def test_the_tiny_pipeline_runs_on_mjx_drawer_open(tmp_path: Path, envs) -> None:
    """The quickstart pipeline (collect, label, reward model, relabel, IQL, fine-tuning, eval) unchanged on MJX."""
    import json

    import yaml

    from robot_rl.rewards.relabel import active_label

    _env(envs, "drawer-open")  # batch 2 compiled once for this module
    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs" / "quickstart.yaml").read_text())
    cfg.update(task="mjx/drawer-open", collect={"episodes": 6, "num_envs": N},
               reward_model={"steps": 30, "hidden": [32, 32]}, train={"steps": 200},
               finetune={"env_steps": 200, "warmup_env_steps": 80, "eval_every": 200}, eval={"episodes": 2})
    cfg["label"].update(pairs=40, segment_length=20)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(config), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["pairs labeled"] == 40 and summary["label agreement with ground truth"] == 1.0
    assert 0 <= summary["after online fine-tuning (learned reward) success"] <= 1
    assert active_label(str(out / "drawer-open.h5")) == "reward_model"
    assert "reward_vs_truth.png" in (out / "report.md").read_text()


def test_reset_free_pair_hands_the_drawer_between_open_and_close() -> None:
    from robot_rl.envs.reset_free import MjxPairBackend, make_pair_backend

    backend = make_pair_backend("mjx-drawer", seed=0)
    assert isinstance(backend, MjxPairBackend)
    try:
        experts = [task_expert(n) for n in backend.names]
        obs = backend.start(0, seed=3)
        for direction in (0, 1):  # open with the open expert, then close (after a hand-off) with the close expert
            assert not backend.ground_truth_success(direction)
            for _ in range(backend.episode_lengths[direction]):
                act = torch.from_numpy(experts[direction](obs["state"][0].numpy()))[None]
                obs, info = backend.step(direction, act)
                if backend.ground_truth_success(direction):
                    break
            assert backend.ground_truth_success(direction), backend.names[direction]
            other = backend.observe(1 - direction)  # hand-off: same world, the other task's goal
            assert torch.equal(other["state"][0, :12], obs["state"][0, :12])
            assert not torch.equal(other["state"][0, 12:15], obs["state"][0, 12:15])
            obs = other
        assert backend.handoffs == 2 and backend.stuck_reason() is None
        fresh = backend.intervene(1, "test")
        assert fresh["state"][0, 7] < 0.6  # drawer-close starts with the drawer open (handle toward the robot)
    finally:
        backend.close()


@pytest.mark.slow
def test_reset_free_finetune_cli_on_the_mjx_drawer_pair(tmp_path: Path, capsys) -> None:
    import json

    for task in ("drawer-open", "drawer-close"):
        data = tmp_path / f"{task}.h5"
        assert main(["collect", "--task", f"mjx/{task}", "--episodes", "2", "--episode-length", "20",
                     "--out", str(data)]) == 0
        assert main(["train", "--dataset", str(data), "--steps", "40", "--out", str(tmp_path / task), "--device",
                     "cpu", "--set", "iql.hidden=[32,32]", "--set", "log_every=20", "--eval-episodes", "0"]) == 0
    out = tmp_path / "rf"
    assert main(["finetune", "--reset-free", "--forward", str(tmp_path / "drawer-open"), "--backward",
                 str(tmp_path / "drawer-close"), "--task-pair", "mjx-drawer", "--steps", "60", "--warmup", "20",
                 "--eval-episodes", "1", "--attempt-steps", "20", "--critic-warmup", "0", "--success",
                 "ground_truth", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 60 and (out / "report.md").exists()
    assert "interventions" in capsys.readouterr().err


def test_reset_free_pair_home_puts_the_hand_back_and_leaves_the_drawer() -> None:
    from robot_rl.envs.reset_free import make_pair_backend

    backend = make_pair_backend("mjx-drawer", seed=0)
    try:
        expert = task_expert(backend.names[0])
        obs = backend.start(0, seed=3)
        start = obs["state"][0, :3].clone()
        for _ in range(backend.episode_lengths[0]):
            obs, _ = backend.step(0, torch.from_numpy(expert(obs["state"][0].numpy()))[None])
            if backend.ground_truth_success(0):
                break
        assert backend.ground_truth_success(0) and torch.linalg.norm(obs["state"][0, :3] - start) > 0.05
        backend.home()
        after = backend.observe(1)["state"][0]
        assert torch.allclose(after[:3], start, atol=1e-4) and backend.homes == 1
        assert torch.allclose(after[3:6], torch.zeros(3))  # at rest
        assert torch.equal(after[6:9], obs["state"][0, 6:9])  # the drawer stays open
        assert backend.ground_truth_success(0)
    finally:
        backend.close()
