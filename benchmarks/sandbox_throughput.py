"""Sandboxed reward code against the same function in-process: calls per second on a 4,096-transition batch.

The reward is a realistic drawer-open function of the kind an LLM writes (reach the handle, grasp, pull the handle
towards the goal, action penalty; distances, tanh and exp shaping, five components) over MetaWorld's 39-dim state
and 4-dim action. In-process: the function is compiled into this process and called on torch tensors made from the
same numpy arrays (the obs dict of slices built per call, as the worker does). Sandboxed: ``Sandbox(...)(states,
actions)``, every layer on (gate, namespace, rlimits, nobody, seccomp, deadline, result checks), numpy in and out.
Both sides use 1 torch thread (``torch.set_num_threads(1)`` here, ``SandboxLimits(threads=1)`` in the worker), so the
comparison is not one process's thread pool against another's. The worker is started (and warmed up) before timing;
rounds alternate between the two; the best and the median round of each are printed, then the ratios.

    nice python benchmarks/sandbox_throughput.py [--batch 4096] [--rounds 7] [--calls 50]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from robot_rl.core.specs import ActionSpec, ArraySpec, EnvSpec
from robot_rl.envs.metaworld_env import STATE_SLICES
from robot_rl.rewards.codegen.sandbox import Sandbox, SandboxLimits

DRAWER_OPEN = '''"""Drawer-open: reach the handle, close the gripper on it, pull it to the goal."""
def compute_reward(obs, action):
    hand = obs["hand_pos"]
    handle = obs["obj_pos"]
    goal = obs["goal_pos"]
    reach_dist = torch.linalg.norm(hand - handle, dim=-1)
    reach = 1.0 - torch.tanh(10.0 * reach_dist)
    grip = obs["gripper_distance"][:, 0]
    grasp = torch.where(reach_dist < 0.05, 1.0 - grip, torch.zeros_like(grip))
    pull_dist = torch.abs(handle[:, 1] - goal[:, 1])
    pull = torch.exp(-pull_dist / 0.1)
    moved = torch.linalg.norm(handle - obs["prev_obj_pos"], dim=-1)
    progress = torch.clamp(moved / 0.01, 0.0, 1.0) * (reach_dist < 0.05).float()
    effort = 0.01 * action.square().sum(dim=-1)
    reward = 2.0 * reach + grasp + 5.0 * pull + progress - effort
    return reward, {"reach": reach, "grasp": grasp, "pull": pull, "progress": progress, "effort": effort}
'''

SPEC = EnvSpec(name="metaworld/drawer-open-v3", observations={"state": ArraySpec((39,))},
               action=ActionSpec(4, "ee_delta", scale=(1.0,) * 4, offset=(0.0,) * 4), state_slices=STATE_SLICES)


def in_process() -> Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]:
    scope: dict[str, Any] = {"torch": torch, "math": math}
    exec(compile(DRAWER_OPEN, "<drawer-open>", "exec"), scope)  # the baseline is the unsandboxed call, on purpose
    fn = scope["compute_reward"]

    def call(states: np.ndarray, actions: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        state = torch.from_numpy(states)
        obs = {"state": state, **{s.name: state[:, s.start:s.stop] for s in SPEC.state_slices}}
        reward, components = fn(obs, torch.from_numpy(actions))
        return reward.numpy(), {k: v.numpy() for k, v in components.items()}

    return call


def rate(call: Callable[[np.ndarray, np.ndarray], Any], states: np.ndarray, actions: np.ndarray, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        call(states, actions)
    return calls / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    states = rng.uniform(-0.5, 0.5, (args.batch, 39)).astype(np.float32)
    actions = rng.uniform(-1, 1, (args.batch, 4)).astype(np.float32)
    local = in_process()
    with Sandbox(DRAWER_OPEN, SPEC, SandboxLimits(threads=1)) as box:
        start = time.perf_counter()
        box.start()
        startup = time.perf_counter() - start
        a, b = local(states, actions), box(states, actions)
        np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
        assert set(a[1]) == set(b[1])
        for _ in range(5):
            local(states, actions)
            box(states, actions)
        inproc, boxed = [], []
        for _ in range(args.rounds):
            inproc.append(rate(local, states, actions, args.calls))
            boxed.append(rate(box, states, actions, args.calls))
        active = [x.name for x in box.layers() if x.active]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 torch thread both sides, "
          f"batch {args.batch} x 39 state + 4 action, {args.rounds} rounds x {args.calls} calls")
    print(f"sandbox start (spawn, import torch, layers, load): {startup:.2f} s; active layers: {', '.join(active)}")
    print(f"{'':<12} {'best':>10} {'median':>10}   calls/s")
    print(f"{'in-process':<12} {max(inproc):>10.1f} {statistics.median(inproc):>10.1f}")
    print(f"{'sandboxed':<12} {max(boxed):>10.1f} {statistics.median(boxed):>10.1f}")
    print(f"ratio sandboxed / in-process: best {max(boxed) / max(inproc):.2f}x, median "
          f"{statistics.median(boxed) / statistics.median(inproc):.2f}x (goal >= 0.5x)")


if __name__ == "__main__":
    main()
