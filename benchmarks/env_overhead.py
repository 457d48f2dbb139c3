"""Per-step overhead of the batched ``RobotEnv`` backends against raw MetaWorld / gymnasium loops.

    MUJOCO_GL=egl python benchmarks/env_overhead.py [--steps 4000] [--repeats 5]

Same process, same task, same pre-drawn random actions, same episode length (reset on truncation) for
every row; runs are interleaved and each row is the best of ``--repeats`` (less noise from other
processes). Steps/s counts env steps (N per batched call). "bare" render is a plain ``mujoco.Renderer``
on live data, the floor for ``render()``. The last line is the ratio RobotEnv N=1 / raw MetaWorld.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("MUJOCO_GL", "egl")

import gymnasium
import mujoco
import numpy as np
import torch
from metaworld.env_dict import ALL_V3_ENVIRONMENTS

from robot_rl.envs import make_env

MW_TASK, MW_LEN = "drawer-open-v3", 200
GYM_TASK, GYM_LEN = "HalfCheetah-v5", 1000


def rate(run: Callable[[], int]) -> float:
    """Steps/s of one call of ``run`` (which returns the number of env steps it took)."""
    t0 = time.perf_counter()
    n = run()
    return n / (time.perf_counter() - t0)


def raw_metaworld(actions: np.ndarray) -> Callable[[], int]:
    env = ALL_V3_ENVIRONMENTS[MW_TASK]()
    env._partially_observable = False
    del env.sawyer_observation_space
    env._set_task_called = True
    env._freeze_rand_vec = False  # a new random layout at every reset, MetaWorld's own sampler
    env.max_path_length = MW_LEN
    env.reset()

    rows = list(actions)

    def run() -> int:
        env.reset()
        for action in rows:
            _, _, _, truncated, _ = env.step(action)
            if truncated:
                env.reset()
        return len(rows)

    return run


def raw_gymnasium(actions: np.ndarray, unwrapped: bool) -> Callable[[], int]:
    env = gymnasium.make(GYM_TASK, max_episode_steps=GYM_LEN)
    if unwrapped:
        env = env.unwrapped
    env.reset(seed=0)

    rows = list(actions)

    def run() -> int:
        env.reset()
        elapsed = 0
        for action in rows:
            _, _, terminated, truncated, _ = env.step(action)
            elapsed += 1
            if terminated or truncated or elapsed >= GYM_LEN:  # the unwrapped env never truncates itself
                env.reset()
                elapsed = 0
        return len(rows)

    return run


def robot_env(name: str, num_envs: int, length: int, actions: np.ndarray) -> Callable[[], int]:
    env = make_env(name, num_envs=num_envs, episode_length=length)
    steps = len(actions) // num_envs
    # One tensor per step made beforehand, as a policy would hand over: indexing a big tensor inside the
    # timed loop would add a torch call (~10 us after a MuJoCo step) that the raw numpy loop does not pay.
    batched = list(torch.from_numpy(actions[: steps * num_envs].reshape(steps, num_envs, -1).copy()).unbind(0))
    env.reset(seed=0)

    def run() -> int:
        env.reset()
        for action in batched:
            env.step(action)
        return steps * num_envs

    return run


def render_rate(name: str, camera: str, frames: int) -> tuple[float, float]:
    """Frames/s at 128x128: ``render`` from ``frames`` stored states of one episode, and a bare
    ``mujoco.Renderer`` drawing the live env's data the same number of times (the floor)."""
    env = make_env(name, episode_length=frames + 1)
    _, info = env.reset(seed=0)
    states = [info["sim_state"]]
    gen = torch.Generator().manual_seed(0)
    for _ in range(frames - 1):
        states.append(env.step(torch.rand(1, env.spec.action.dim, generator=gen) * 2 - 1).info["sim_state"])
    batch = torch.cat(states)
    env.render(batch[:1], camera, 128, 128)  # renderer creation and the layout's reset are not per frame
    t0 = time.perf_counter()
    env.render(batch, camera, 128, 128)
    ours = frames / (time.perf_counter() - t0)
    inst: Any = env._instances[0]  # type: ignore[attr-defined]
    bare = mujoco.Renderer(inst.model, 128, 128)
    t0 = time.perf_counter()
    for _ in range(frames):
        bare.update_scene(inst.data, camera=camera)
        bare.render()
    floor = frames / (time.perf_counter() - t0)
    bare.close()
    env.close()
    return ours, floor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=4000, help="env steps per timed run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (best is reported)")
    parser.add_argument("--frames", type=int, default=60, help="stored states rendered per render row")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    mw_actions = rng.uniform(-1, 1, (args.steps, 4)).astype(np.float32)
    gym_actions = rng.uniform(-1, 1, (args.steps, 6)).astype(np.float32)

    rows: list[tuple[str, float]] = []
    mw_runs = {
        f"raw MetaWorld {MW_TASK} (env.step loop)": raw_metaworld(mw_actions),
        "RobotEnv metaworld N=1": robot_env(f"metaworld/{MW_TASK}", 1, MW_LEN, mw_actions),
        "RobotEnv metaworld N=8": robot_env(f"metaworld/{MW_TASK}", 8, MW_LEN, mw_actions),
    }
    gym_runs = {
        f"raw gymnasium.make('{GYM_TASK}')": raw_gymnasium(gym_actions, unwrapped=False),
        f"raw gymnasium {GYM_TASK} .unwrapped": raw_gymnasium(gym_actions, unwrapped=True),
        "RobotEnv gym N=1": robot_env(f"gym/{GYM_TASK}", 1, GYM_LEN, gym_actions),
        "RobotEnv gym N=8": robot_env(f"gym/{GYM_TASK}", 8, GYM_LEN, gym_actions),
    }
    for runs in (mw_runs, gym_runs):
        rates = {k: 0.0 for k in runs}
        for _ in range(args.repeats):  # interleaved, so that machine load hits every row alike
            for k, run in runs.items():
                rates[k] = max(rates[k], rate(run))
        rows += rates.items()
    mw_ratio = rates_of(rows, "RobotEnv metaworld N=1") / rates_of(rows, f"raw MetaWorld {MW_TASK} (env.step loop)")
    gym_ratio = rates_of(rows, "RobotEnv gym N=1") / rates_of(rows, f"raw gymnasium.make('{GYM_TASK}')")
    gym_ratio_unwrapped = rates_of(rows, "RobotEnv gym N=1") / rates_of(rows, f"raw gymnasium {GYM_TASK} .unwrapped")

    print(f"{'what':<48} {'steps/s':>10} {'us/step':>9}")
    print("-" * 69)
    for k, v in rows:
        print(f"{k:<48} {v:>10.0f} {1e6 / v:>9.1f}")
    print("-" * 69)
    print(f"{'render 128x128 (stored states of one episode)':<48} {'frames/s':>10} {'bare':>9}")
    for name, camera in ((f"metaworld/{MW_TASK}", "corner"), (f"gym/{GYM_TASK}", "track")):
        ours, floor = render_rate(name, camera, args.frames)
        print(f"{f'render() {name} {camera}':<48} {ours:>10.1f} {floor:>9.1f}")
    print("-" * 69)
    print(f"ratio gym RobotEnv N=1 / raw gymnasium.make: {gym_ratio:.3f} (/ raw .unwrapped: {gym_ratio_unwrapped:.3f})")
    print(f"ratio RobotEnv N=1 / raw MetaWorld: {mw_ratio:.3f}")


def rates_of(rows: list[tuple[str, float]], key: str) -> float:
    return dict(rows)[key]


if __name__ == "__main__":
    main()
