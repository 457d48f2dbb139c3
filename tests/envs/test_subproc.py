"""SubprocEnv: conformance, the same transitions as the in-process backend, worker death, errors, cleanup."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from multiprocessing.shared_memory import SharedMemory

import pytest
import torch

from robot_rl.core import SimEnv, check_env
from robot_rl.envs import make_env
from robot_rl.envs.subproc import EnvWorkerError, SubprocEnv

TASK = "metaworld/drawer-open-v3"


@pytest.fixture(scope="module")
def env() -> Iterator[SubprocEnv]:
    e = make_env(TASK, num_envs=2, workers=2, episode_length=20)
    assert isinstance(e, SubprocEnv)
    yield e
    e.close()


def test_check_env(env: SubprocEnv) -> None:
    assert isinstance(env, SimEnv)
    check_env(env)


def test_same_seed_same_transitions_as_in_process(env: SubprocEnv) -> None:
    local = make_env(TASK, num_envs=2, episode_length=20)
    try:
        a, info_a = local.reset(seed=4)
        b, info_b = env.reset(seed=4)
        assert torch.equal(a["state"], b["state"]) and torch.equal(info_a["sim_state"], info_b["sim_state"])
        actions = torch.rand(45, 2, 4, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2  # some clipped
        finished = 0
        for t, action in enumerate(actions):
            ra = local.step(action)
            env.step_async(action)
            rb = env.step_wait()
            for k in ra.obs:
                assert torch.equal(ra.obs[k], rb.obs[k]), f"step {t}: obs '{k}'"
            for name in ("reward", "terminated", "truncated"):
                assert torch.equal(getattr(ra, name), getattr(rb, name)), f"step {t}: {name}"
            assert set(ra.info) == set(rb.info), f"step {t}"
            for k in ("success", "action_clipped", "sim_state", "final_sim_state"):
                if k in ra.info:
                    assert torch.equal(ra.info[k], rb.info[k]), f"step {t}: info['{k}']"
            if "final_obs" in ra.info:
                finished += 1
                assert torch.equal(ra.info["final_obs"]["state"], rb.info["final_obs"]["state"])
        assert finished == 2  # episodes of 20 steps: autoresets at steps 20 and 40
        state = local.get_sim_state()
        assert torch.equal(state, env.get_sim_state())
        restored = env.set_sim_state(state)
        assert torch.equal(restored["state"], local.set_sim_state(state)["state"])
        frames = env.render(state, "corner", 32, 24)
        assert torch.equal(frames, local.render(state, "corner", 32, 24))
    finally:
        local.close()


def test_errors_from_a_worker_name_it_and_leave_the_env_usable(env: SubprocEnv) -> None:
    env.reset(seed=0)
    bad = env.get_sim_state()
    bad[1, -1] = 10_000  # episode step out of range: the backend of worker 1 refuses it
    with pytest.raises(ValueError, match=r"env worker 1 \(pid \d+, env 1\): ValueError: sim_state row 0"):
        env.set_sim_state(bad)
    with pytest.raises(ValueError, match="action for env 1 is not finite"):
        env.step(torch.tensor([[0.0] * 4, [float("nan")] * 4]))
    env.reset(seed=0)
    assert env.step(torch.zeros(2, 4)).obs["state"].shape == (2, 39)


def test_a_killed_worker_gives_one_line_naming_it_and_close_cleans_up() -> None:
    e = SubprocEnv(TASK, num_envs=3, workers=2, episode_length=20, timeout=30.0)
    shm_name = e._shm.name if e._shm is not None else ""
    e.reset(seed=0)
    assert [list(e.envs_of(w)) for w in range(2)] == [[0, 1], [2]]
    pids = e.worker_pids
    os.kill(pids[1], signal.SIGKILL)
    with pytest.raises(EnvWorkerError) as info:
        e.step(torch.zeros(3, 4))
    msg = str(info.value)
    assert "\n" not in msg and f"env worker 1 (pid {pids[1]}, " in msg and "died" in msg
    assert msg.endswith("env 2) died (exit code -9); close this env and make a new one")
    with pytest.raises(EnvWorkerError, match="unusable"):
        e.reset(seed=0)
    e.close()
    e.close()
    for pid in pids:  # both workers are gone (reaped), the shared block is unlinked
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=shm_name)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="workers must be between 1 and num_envs=2"):
        SubprocEnv(TASK, num_envs=2, workers=3)
    with pytest.raises(ValueError, match=r"env worker 0 .* could not build its envs: ValueError: unknown task"):
        SubprocEnv("metaworld/no-such-task-v3", num_envs=1, workers=1)


@pytest.mark.slow
def test_a_stuck_worker_times_out_instead_of_hanging() -> None:
    e = SubprocEnv(TASK, num_envs=2, workers=2, episode_length=20, timeout=1.0)
    try:
        e.reset(seed=0)
        os.kill(e.worker_pids[0], signal.SIGSTOP)
        with pytest.raises(EnvWorkerError, match=r"env worker 0 \(pid \d+, env 0\) did not answer within 1 s"):
            e.step(torch.zeros(2, 4))
    finally:
        e.close()  # kills the stopped worker
