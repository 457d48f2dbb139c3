"""``isaaclab/<gym id>`` tasks against the real Isaac Lab 3.0 (Cartpole on the CPU, Newton + MuJoCo-Warp).

Where Isaac Lab is not installed (the project's own environment), only the set-up hint and the asset mapping are
tested; the rest skips with the reason. ``bash scripts/test_isaaclab.sh`` runs all of it in ``.venv-isaaclab``.
One env serves the whole module (Isaac Lab runs one per process; the first creation compiles Warp's kernels).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from robot_rl.envs import isaaclab as isaaclab_pkg
from robot_rl.envs.isaaclab.assets import LOOKS_ONLY, localize

TASK = "isaaclab/Isaac-Cartpole-Direct"
LENGTH = 20  # episode length of the shared env (steps)
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")  # Isaac Lab 3.0's own
needs_isaaclab = pytest.mark.skipif(not isaaclab_pkg.installed(),
                                    reason="isaaclab not installed (bash scripts/setup_isaaclab.sh; "
                                           "bash scripts/test_isaaclab.sh runs these tests)")


# ------------------------------------------------------------------------------ without Isaac Lab (and with)
@pytest.mark.skipif(isaaclab_pkg.installed(), reason="Isaac Lab is installed here: no set-up hint to give")
def test_missing_isaaclab_is_a_one_line_error_naming_the_package_and_the_setup() -> None:
    from robot_rl.envs import list_tasks, make_env

    with pytest.raises(ValueError) as e:
        make_env(TASK, num_envs=4)
    msg = str(e.value)
    assert "\n" not in msg
    assert "'isaaclab' is not installed" in msg and "bash scripts/setup_isaaclab.sh" in msg and TASK in msg
    assert not [t for t in list_tasks() if t.startswith("isaaclab/")]


@dataclasses.dataclass
class _Spawn:
    usd_path: str


@dataclasses.dataclass
class _Entity:
    spawn: _Spawn | None


@dataclasses.dataclass
class _Scene:
    robot: _Entity
    ground: _Entity | None


@dataclasses.dataclass
class _Cfg:
    scene: _Scene


def _cfg() -> _Cfg:
    return _Cfg(_Scene(_Entity(_Spawn("https://example.invalid/Isaac/Robots/Cartpole/cartpole.usd")),
                       _Entity(_Spawn("https://example.invalid/Isaac/Environments/ground.usda"))))


def test_local_assets_replace_remote_usds_and_drop_only_looks(tmp_path: Path) -> None:
    (tmp_path / "cartpole.usda").write_text("#usda 1.0\n")
    cfg = _cfg()
    done = localize(cfg, tmp_path, "Isaac-Cartpole-Direct")
    assert cfg.scene.robot.spawn is not None
    assert cfg.scene.robot.spawn.usd_path == str((tmp_path / "cartpole.usda").resolve())  # same stem, .usda
    assert cfg.scene.ground is None and "scene.ground" in LOOKS_ONLY["Isaac-Cartpole-Direct"]
    assert "dropped scene.ground" in done.values()
    (tmp_path / "ground.usda").write_text("#usda 1.0\n")
    cfg = _cfg()
    localize(cfg, tmp_path, "Isaac-Cartpole-Direct")
    assert cfg.scene.ground is not None and cfg.scene.ground.spawn is not None
    assert cfg.scene.ground.spawn.usd_path.endswith("ground.usda")  # a local ground is kept


def test_a_missing_asset_is_a_one_line_error_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as e:
        localize(_cfg(), tmp_path, "Isaac-Lift-Cube-Franka")  # nothing is looks-only there
    msg = str(e.value)
    assert "\n" not in msg and "cartpole.usd (for scene.robot.spawn)" in msg and "ground.usda" in msg
    with pytest.raises(ValueError, match="does not exist"):
        localize(_cfg(), tmp_path / "nope", "Isaac-Cartpole-Direct")


# ------------------------------------------------------------------------------------ the real Isaac Lab
@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from robot_rl.envs.isaaclab.assets import write_newton_cartpole

    folder = tmp_path_factory.mktemp("isaaclab-assets")
    write_newton_cartpole(folder)
    return folder


@pytest.fixture(scope="module")
def env(assets: Path) -> Iterator:
    from robot_rl.envs import make_env

    before = os.environ.get(isaaclab_pkg.ASSETS_ENV)
    os.environ[isaaclab_pkg.ASSETS_ENV] = str(assets)
    try:
        e = make_env(TASK, num_envs=4, episode_length=LENGTH)
    finally:
        if before is None:
            os.environ.pop(isaaclab_pkg.ASSETS_ENV)
        else:
            os.environ[isaaclab_pkg.ASSETS_ENV] = before
    yield e
    e.close()


def _zeros(env) -> torch.Tensor:
    return torch.zeros(env.num_envs, env.spec.action.dim)


@needs_isaaclab
def test_passes_check_env(env) -> None:
    from robot_rl.core.check_env import check_env

    assert TASK in __import__("robot_rl.envs", fromlist=["list_tasks"]).list_tasks()
    check_env(env)
    spec = env.spec
    assert spec.state_dim == 4 and spec.action.dim == 1 and spec.max_episode_steps == LENGTH
    assert spec.action.mode == "joint_torque" and spec.action.scale == (100.0,)  # Cartpole's action_scale [N]
    assert spec.extras["workflow"] == "direct" and spec.extras["sim_state_layout"][-1][0] == "episode_step"
    assert any(v == "dropped scene.ground" for v in spec.extras["assets"].values())


@needs_isaaclab
def test_returned_buffers_are_copies_isaaclab_overwrites(env) -> None:
    """Isaac Lab's terminated/truncated are one buffer each, overwritten every step: a kept result must not change."""
    env.reset(seed=1)
    for _ in range(LENGTH - 1):
        res = env.step(_zeros(env))
    assert not bool(res.truncated.any())
    last = env.step(_zeros(env))  # the time limit: every env truncates (zero force keeps the cart on the rail)
    assert bool(last.truncated.all()) and not bool(last.terminated.any())
    kept = {k: v.clone() for k, v in (("truncated", last.truncated), ("reward", last.reward),
                                      ("state", last.obs["state"]), ("success", last.info["success"]))}
    after = env.step(_zeros(env))
    assert not bool(after.truncated.any())
    assert bool(env._env.reset_time_outs.eq(after.truncated).all())  # Isaac Lab's buffer holds the new value...
    assert torch.equal(last.truncated, kept["truncated"])  # ...and the result handed out before kept the old one
    assert torch.equal(last.reward, kept["reward"]) and torch.equal(last.obs["state"], kept["state"])
    assert bool(kept["success"].all()) and not bool(after.info["success"].any())  # success: time out, not off the rail
    assert last.truncated.data_ptr() != env._env.reset_time_outs.data_ptr()


@needs_isaaclab
def test_final_obs_is_the_pre_reset_observation_of_the_rows_that_reset_only(env) -> None:
    env.reset(seed=2)
    push = torch.tensor([[0.3], [-0.2], [0.1], [0.0]])
    for _ in range(3):
        env.step(push)
    start = env.get_sim_state()
    one_left = start.clone()
    one_left[0, -1] = LENGTH - 1  # env 0 at its last step, the others mid-episode
    env.set_sim_state(one_left)
    res = env.step(push)
    assert res.truncated.tolist() == [True, False, False, False]
    final, final_state = res.info["final_obs"]["state"], res.info["final_sim_state"]
    # The same step without the time limit: what env 0 saw before Isaac Lab reset it.
    env.set_sim_state(start)
    ref = env.step(push)
    assert not bool(ref.truncated.any())
    torch.testing.assert_close(final[0], ref.obs["state"][0], atol=1e-5, rtol=0)
    assert not torch.allclose(final[0], res.obs["state"][0], atol=1e-3)  # the returned obs starts a new episode
    torch.testing.assert_close(final_state[0, :-1], ref.info["sim_state"][0, :-1], atol=1e-5, rtol=0)
    assert final_state[0, -1] == LENGTH and res.info["sim_state"][0, -1] == 0
    assert torch.equal(final[1:], res.obs["state"][1:])  # rows that did not reset: their current obs
    assert torch.equal(final_state[1:], res.info["sim_state"][1:])
    # Isaac Lab keeps the last final_obs in extras on later steps; with no reset there is none to read.
    quiet = env.step(push)
    assert "final_obs" in env._env.extras and "final_obs" not in quiet.info and "final_sim_state" not in quiet.info


@needs_isaaclab
def test_sim_state_round_trip_replays_and_moves_rows_between_envs(env) -> None:
    env.reset(seed=3)
    gen = torch.Generator().manual_seed(0)
    env.step(torch.rand(4, 1, generator=gen) * 2 - 1)
    state = env.get_sim_state()
    assert state.dtype == torch.float64 and state.shape == (4, env.spec.sim_state_dim)
    actions = [torch.rand(4, 1, generator=gen) * 2 - 1 for _ in range(5)]
    first = [env.step(a).obs["state"] for a in actions]
    restored = env.set_sim_state(state)
    torch.testing.assert_close(env.get_sim_state(), state, atol=1e-6, rtol=0)
    again = [env.step(a).obs["state"] for a in actions]
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # Rows are relative to each env's origin: env 0's state restored into env 3 gives env 0's observation there.
    perm = torch.tensor([3, 2, 1, 0])
    swapped = env.set_sim_state(state[perm])
    torch.testing.assert_close(swapped["state"], restored["state"][perm], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"sim state must be \[4, "):
        env.set_sim_state(state[:2])


@needs_isaaclab
def test_one_env_per_process_is_a_one_line_error(env) -> None:
    from robot_rl.envs import make_env

    with pytest.raises(ValueError) as e:
        make_env(TASK, num_envs=2)
    assert "\n" not in str(e.value) and "one per process" in str(e.value)


@needs_isaaclab
def test_collect_train_eval_on_cartpole(env, tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The commands as a user runs them; in this process, after the shared env is closed (a second Isaac Lab env
    in one process is made in under a second: Warp's kernels are loaded)."""
    from robot_rl.cli.main import main
    from robot_rl.data import Dataset

    env.close()
    monkeypatch.setenv(isaaclab_pkg.ASSETS_ENV, str(assets))
    # Isaac Lab's own override for the episode length (eval has no flag for it): ceil(0.33 s / (1/60 s)) = 20 steps.
    monkeypatch.setenv(isaaclab_pkg.OVERRIDES_ENV, "presets=newton_mjwarp env.episode_length_s=0.33")
    data, run = tmp_path / "cartpole.h5", tmp_path / "run"
    assert main(["collect", "--task", TASK, "--preset", "random", "--num-envs", "4", "--episodes", "4",
                 "--out", str(data)]) == 0
    with Dataset(data) as ds:
        assert ds.num_episodes == 4 and ds.spec.name == TASK and ds.spec.max_episode_steps == LENGTH
        ep = ds.load_episode(ds.episode_names[0])
        assert ep.length <= LENGTH and ep.sim_states.shape == (ep.length, ds.spec.sim_state_dim)
        assert ep.successes is not None
    assert main(["train", "--dataset", str(data), "--steps", "50", "--device", "cpu", "--eval-episodes", "0",
                 "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["eval", "--checkpoint", str(run), "--episodes", "4", "--num-envs", "4"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 0.0 <= metrics["eval/success_rate"] <= 1.0 and 0 < metrics["eval/length_mean"] <= LENGTH
    assert json.loads((run / "eval.json").read_text())["task"] == TASK


@needs_isaaclab
def test_the_manager_based_cartpole_passes_check_env_too(env, assets: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``Isaac-Cartpole``: the manager-based workflow (termination manager, reset_to, observation manager)."""
    from robot_rl.core.check_env import check_env
    from robot_rl.envs import make_env

    env.close()  # one Isaac Lab env per process
    monkeypatch.setenv(isaaclab_pkg.ASSETS_ENV, str(assets))
    managed = make_env("isaaclab/Isaac-Cartpole", num_envs=4, episode_length=LENGTH)
    try:
        assert managed.spec.extras["workflow"] == "manager-based"
        assert [s.name for s in managed.spec.state_slices] == ["joint_pos_rel", "joint_vel_rel"]
        check_env(managed)
        managed.reset(seed=4)
        res = [managed.step(_zeros(managed)) for _ in range(LENGTH)]
        assert bool(res[-1].truncated.all()) and bool(res[-1].info["success"].all())  # the time_out term
        assert not bool(res[-2].truncated.any()) and not bool(res[-2].info["success"].any())  # kept, not overwritten
        assert not torch.equal(res[-2].obs["state"], res[-1].obs["state"])
    finally:
        managed.close()
