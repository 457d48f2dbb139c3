"""IQL updates per second: robot_rl against d3rlpy's IQL, same settings, same synthetic data, one invocation.

Settings: obs 17, act 6, 2x256 MLPs, batch 256, expectile 0.7, temperature 3, synthetic 1M transitions
(numpy seed 0, generated identically in both processes). d3rlpy runs in its own virtual environment
(``bash benchmarks/setup_d3rlpy.sh``), or, where ``D3RLPY_PYTHONPATH`` is set (``benchmarks/gpu_env.sh`` on a GPU
machine), in this interpreter with ``PYTHONPATH`` replaced by it; through its ``fit`` loop with logging off, so its
replay sampling counts, as ours (device-resident ``TransitionSampler``) does.

    python benchmarks/iql_speed.py                 # CPU, one thread, both sides; ratio printed last
    python benchmarks/iql_speed.py --threads 2
    python benchmarks/iql_speed.py --device cuda   # compiled = CUDA graphs; adds d3rlpy with compile_graph

"compiled" is ``TrainConfig.compile`` (``--set compile=true``): torch.compile of the loss computation
(inductor on the CPU, CUDA graphs on a GPU); its first updates compile (tens of seconds, cached afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
D3RLPY_PY = HERE / ".venv-d3rlpy" / "bin" / "python"
N, OBS, ACT = 1_000_000, 17, 6


def synthetic(n: int = N) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, OBS)).astype(np.float32)
    terminals = np.zeros(n, dtype=np.float32)
    terminals[999::1000] = 1.0  # 1,000-step episodes
    return {"obs": obs[:-1], "next_obs": obs[1:], "actions": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": terminals}


def ours(device: str, threads: int, steps: int, warmup: int, compiled: bool) -> float:
    import torch

    from robot_rl.data import TransitionSampler
    from robot_rl.rl.compiled import compile_losses, step_begin
    from robot_rl.rl.iql import IQL, IQLConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    data = synthetic()
    sampler = TransitionSampler(data, device, seed=0)
    agent = IQL(OBS, ACT, IQLConfig(steps=steps + warmup)).to(device)
    if compiled:  # the product path: TrainConfig.compile (CUDA graphs on a GPU, inductor on the CPU)
        compile_losses(agent, torch.device(device))
    for _ in range(warmup):
        step_begin(torch.device(device))
        agent.update(sampler.sample(256))
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step_begin(torch.device(device))
        agent.update(sampler.sample(256))
    _sync(device)
    return steps / (time.perf_counter() - t)


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


D3RLPY_SCRIPT = r"""
import json, sys, time, numpy as np, torch, d3rlpy
sys.path.insert(0, sys.argv[1])
from iql_speed import synthetic
device, threads, steps, warmup = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
graph = sys.argv[6] == "1"
torch.set_num_threads(threads)
d = synthetic()
timeouts = np.zeros_like(d["terminals"])
dataset = d3rlpy.dataset.MDPDataset(d["obs"], d["actions"], d["rewards"], d["terminals"], timeouts)
enc = d3rlpy.models.encoders.VectorEncoderFactory([256, 256])
cfg = d3rlpy.algos.IQLConfig(batch_size=256, actor_learning_rate=3e-4, critic_learning_rate=3e-4, gamma=0.99,
                             tau=0.005, expectile=0.7, weight_temp=3.0, max_weight=100.0, n_critics=2,
                             actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc,
                             compile_graph=graph)
algo = cfg.create(device="cuda:0" if device.startswith("cuda") else "cpu:0")
quiet = dict(show_progress=False, logger_adapter=d3rlpy.logging.NoopAdapterFactory(), save_interval=10**9)
algo.fit(dataset, n_steps=warmup, n_steps_per_epoch=warmup, **quiet)
t = time.perf_counter()
algo.fit(dataset, n_steps=steps, n_steps_per_epoch=steps, **quiet)
if device.startswith("cuda"):
    torch.cuda.synchronize()
print(json.dumps({"updates_per_s": steps / (time.perf_counter() - t), "d3rlpy": d3rlpy.__version__}))
"""


def d3rlpy_python() -> tuple[str, dict[str, str] | None] | None:
    """The interpreter and environment d3rlpy runs in: D3RLPY_PYTHONPATH with this Python, else its venv."""
    path = os.environ.get("D3RLPY_PYTHONPATH")
    if path:  # d3rlpy's own site folder only: the project's PYTHONPATH (gymnasium 1.4) must not be seen
        return sys.executable, {**os.environ, "PYTHONPATH": path}
    if D3RLPY_PY.exists():
        return str(D3RLPY_PY), None
    print(f"(d3rlpy venv missing: run bash {HERE / 'setup_d3rlpy.sh'}, or set D3RLPY_PYTHONPATH)", file=sys.stderr)
    return None


def d3rlpy_rate(device: str, threads: int, steps: int, warmup: int, graph: bool) -> float | None:
    launch = d3rlpy_python()
    if launch is None:
        return None
    python, env = launch
    out = subprocess.run([python, "-c", D3RLPY_SCRIPT, str(HERE), device, str(threads), str(steps),
                          str(warmup), "1" if graph else "0"], capture_output=True, text=True, check=False, env=env)
    if out.returncode != 0:
        print(f"d3rlpy run failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return float(json.loads(out.stdout.strip().splitlines()[-1])["updates_per_s"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=100)
    args = p.parse_args()
    rows: list[tuple[str, float | None]] = []
    where = f"{args.device}, {args.threads} thread"
    rows.append((f"d3rlpy IQL ({where})", d3rlpy_rate(args.device, args.threads, args.steps, args.warmup, False)))
    if args.device.startswith("cuda"):
        rows.append(("d3rlpy IQL compile_graph", d3rlpy_rate(args.device, args.threads, args.steps, args.warmup,
                                                              True)))
    rows.append((f"robot_rl IQL eager ({where})", ours(args.device, args.threads, args.steps, args.warmup, False)))
    rows.append((f"robot_rl IQL compiled ({where})",
                 ours(args.device, args.threads, args.steps, args.warmup * 3, True)))
    width = max(len(name) for name, _ in rows)
    print(f"{'run':<{width}}  updates/s")
    for name, rate in rows:
        print(f"{name:<{width}}  {rate:9.1f}" if rate is not None else f"{name:<{width}}  {'n/a':>9}")
    base = rows[0][1]
    if base:
        for name, rate in rows[1:]:
            if name.startswith("robot_rl") and rate:
                print(f"ratio {name} / d3rlpy IQL eager: {rate / base:.2f}x")


if __name__ == "__main__":
    main()
