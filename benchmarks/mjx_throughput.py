"""Env-steps/s of ``mjx/drawer-open`` (MJX, JAX) against ``metaworld/drawer-open-v3`` (CPU MuJoCo), same run.

    MUJOCO_GL=egl python benchmarks/mjx_throughput.py [--batches 1 64 1024] [--device cpu] [--seconds 5]

Both through ``robot_rl.envs.make_env`` (the ``RobotEnv`` interface, torch tensors out), random actions in
``[-1, 1]`` drawn before timing, episode length 100 with same-step autoresets included. Per row: the time to
make the env plus its first reset and step (for MJX that is JIT compilation; the persistent compilation
cache is turned off here so that it is measured), then steps/s over at least ``--seconds`` (best of
``--repeats``). "Data/env" is one env's ``mjx.Data`` (rebuilt inside each step call) plus its carried
float32 sim row: the device memory an env needs beyond XLA's temporaries. The last lines give
each MJX row's ratio to MetaWorld N=1.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("MUJOCO_GL", "egl")
os.environ["ROBOT_RL_JAX_CACHE"] = ""  # measure compilation, not the cache

import torch

from robot_rl.envs import make_env

LENGTH = 100


def measure(name: str, num_envs: int, device: str, seconds: float, repeats: int) -> dict[str, float]:
    t0 = time.perf_counter()
    env = make_env(name, num_envs=num_envs, device=device, episode_length=LENGTH)
    env.reset(seed=0)
    gen = torch.Generator().manual_seed(0)
    actions = [(torch.rand(num_envs, env.spec.action.dim, generator=gen) * 2 - 1).to(device) for _ in range(16)]
    res = env.step(actions[0])
    res.obs["state"].cpu()
    first = time.perf_counter() - t0
    best = 0.0
    for _ in range(repeats):
        steps, t1 = 0, time.perf_counter()
        while True:
            for a in actions:
                res = env.step(a)
            steps += len(actions) * num_envs
            elapsed = time.perf_counter() - t1
            if elapsed >= seconds:
                break
        res.obs["state"].cpu()  # wait for the device
        best = max(best, steps / (time.perf_counter() - t1))
    row = {"first": first, "rate": best, "bytes": 0.0}
    if name.startswith("mjx/"):
        import jax
        from mujoco import mjx

        data = mjx.make_data(mjx.put_model(env._fns.model))  # one env's mjx.Data (lives inside a step call)
        row["bytes"] = sum(x.nbytes for x in jax.tree_util.tree_leaves(data)) + 4 * env.spec.sim_state_dim
    env.close()
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 64, 1024])
    p.add_argument("--metaworld-batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--device", default="cpu")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    rows = []
    for n in args.metaworld_batches:
        rows.append((f"metaworld/drawer-open-v3 N={n}", measure("metaworld/drawer-open-v3", n, "cpu", args.seconds,
                                                                args.repeats)))
        print(rows[-1], flush=True)
    for n in args.batches:
        rows.append((f"mjx/drawer-open N={n} ({args.device})", measure("mjx/drawer-open", n, args.device,
                                                                        args.seconds, args.repeats)))
        print(rows[-1], flush=True)
    import jax

    print(f"\njax {jax.__version__} on {jax.devices()[0].platform}; torch {torch.__version__}; "
          f"{os.cpu_count()} CPU cores; load average {os.getloadavg()[0]:.1f}")
    print(f"{'what':<40} {'make+reset+1st step s':>22} {'env-steps/s':>12} {'Data/env kB':>12}")
    for what, r in rows:
        kb = f"{r['bytes'] / 1024:.1f}" if r["bytes"] else "-"
        print(f"{what:<40} {r['first']:>22.1f} {r['rate']:>12.0f} {kb:>12}")
    base = rows[0][1]["rate"]
    for what, r in rows[len(args.metaworld_batches):]:
        print(f"ratio {what} / {rows[0][0]}: {r['rate'] / base:.2f}x")


if __name__ == "__main__":
    main()
