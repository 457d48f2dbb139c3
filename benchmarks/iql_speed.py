"""IQL updates per second: robot_rl against d3rlpy's IQL, same settings, same synthetic data, one invocation.

Settings: obs 17, act 6, 2x256 MLPs, batch 256, expectile 0.7, temperature 3, synthetic 1M transitions
(numpy seed 0, generated identically in both processes). d3rlpy runs in its own virtual environment
(``bash benchmarks/setup_d3rlpy.sh``), or, where ``D3RLPY_PYTHONPATH`` is set (``benchmarks/gpu_env.sh`` on a GPU
machine), in this interpreter with ``PYTHONPATH`` replaced by it; through its ``fit`` loop with logging off, so its
replay sampling counts, as ours (device-resident ``TransitionSampler``) does.

    python benchmarks/iql_speed.py                 # CPU, one thread, both sides; ratio printed last
    python benchmarks/iql_speed.py --threads 2
    python benchmarks/iql_speed.py --device cuda --batches 256,1024 --k-sweep 1,4,64   # adds d3rlpy compile_graph

On CUDA the product path is ``graphed``: K whole updates per CUDA-graph replay (``rl/graphed.py``, the default of
``train`` / ``finetune`` there); ``graphed+compiled`` adds torch.compile'd losses inside the graph
(``--set compile=true``). "compiled" on the CPU is inductor (``--set compile=true``); its first updates compile.
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


def ours(device: str, threads: int, steps: int, warmup: int, mode: str, batch: int = 256, k: int = 16) -> float:
    """Updates/s of robot_rl's IQL through the product's ``UpdateRunner``.

    ``mode``: ``eager`` (one ``update`` per call), ``graphed`` (K whole updates per CUDA-graph replay, the CUDA
    default), ``graphed+compiled`` (the same with torch.compile'd losses inside the graph), ``compiled`` (the eager
    path with ``--set compile=true``: inductor on the CPU, torch.compile's CUDA graphs around the losses on CUDA).
    ``+tf32``: TF32 matrix products; ``+combo``: inductor's combo kernels (horizontal fusion) — experiments.
    """
    import torch
    import torch._inductor.config as inductor_config

    from robot_rl.data import TransitionSampler
    from robot_rl.rl.compiled import compile_losses
    from robot_rl.rl.graphed import UpdateRunner
    from robot_rl.rl.iql import IQL, IQLConfig

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    dev = torch.device(device)
    torch.backends.cuda.matmul.allow_tf32 = "tf32" in mode  # TF32 GEMMs (only the rows that say so)
    inductor_config.combo_kernels = "combo" in mode  # inductor's horizontal fusion of independent kernels
    data = synthetic()
    sampler = TransitionSampler(data, device, seed=0)
    agent = IQL(OBS, ACT, IQLConfig(steps=steps + warmup, batch_size=batch)).to(device)
    graphed = mode.startswith("graphed")
    if "compiled" in mode:
        compile_losses(agent, dev, inside_graph=graphed)
    runner = UpdateRunner(agent, lambda: sampler.sample(batch), [sampler.generator], k if graphed else 1,
                          "cuda-graph" if graphed else "eager", steps + warmup + 1,
                          mark_step=mode == "compiled" and dev.type == "cuda")
    per_call = runner.k
    done = 0
    while done < warmup:
        runner.run(per_call)
        done += per_call
    _sync(device)
    t = time.perf_counter()
    done = 0
    while done < steps:
        runner.run(per_call)
        done += per_call
    _sync(device)
    return done / (time.perf_counter() - t)


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
    p.add_argument("--d3rlpy-steps", type=int, default=None, help="timed d3rlpy updates (default: --steps)")
    p.add_argument("--d3rlpy-modes", default="eager,graph", help="d3rlpy rows: eager and/or graph (compile_graph, "
                                                                   "CUDA only); empty: none")
    p.add_argument("--batches", default="256", help="comma-separated batch sizes (CUDA rows)")
    p.add_argument("--modes", default="graphed,graphed+compiled",
                   help="CUDA rows of robot_rl at each batch size (graphed, graphed+compiled, graphed+tf32, "
                        "graphed+compiled+combo)")
    p.add_argument("--k-sweep", default="", help="CUDA: comma-separated K (updates per replay) to time at batch 256")
    args = p.parse_args()
    rows: list[tuple[str, float | None]] = []

    def row(name: str, rate: float | None) -> None:  # printed as it comes: a run cut short keeps its rows
        rows.append((name, rate))
        print(f"{name:<50} {rate:9.1f}" if rate is not None else f"{name:<50} {'n/a':>9}", flush=True)

    where = f"{args.device}, {args.threads} thread"
    d_steps = args.d3rlpy_steps or args.steps
    cuda = args.device.startswith("cuda")
    d_modes = [m for m in args.d3rlpy_modes.split(",") if m]
    print(f"{'run':<50} updates/s", flush=True)
    if "eager" in d_modes:
        row(f"d3rlpy IQL ({where})", d3rlpy_rate(args.device, args.threads, d_steps, args.warmup, False))
    if cuda and "graph" in d_modes:
        row("d3rlpy IQL compile_graph", d3rlpy_rate(args.device, args.threads, d_steps, args.warmup, True))
    row(f"robot_rl IQL eager ({where})", ours(args.device, args.threads, args.steps, args.warmup, "eager"))
    if not cuda:
        row(f"robot_rl IQL compiled ({where})", ours(args.device, args.threads, args.steps, args.warmup * 3,
                                                     "compiled"))
    else:
        for batch in (int(b) for b in args.batches.split(",")):
            for mode in (m for m in args.modes.split(",") if m):
                row(f"robot_rl IQL {mode} K=16 batch {batch}",
                    ours(args.device, args.threads, args.steps * 5, args.warmup, mode, batch=batch))
        for k in (int(x) for x in args.k_sweep.split(",") if x):
            row(f"robot_rl IQL graphed K={k} batch 256",
                ours(args.device, args.threads, args.steps * 5, args.warmup, "graphed", k=k))
    rates = dict(rows)
    for base_name in [n for n in rates if n.startswith("d3rlpy")]:
        base = rates[base_name]
        if not base:
            continue
        for name, rate in rows:
            if name.startswith("robot_rl") and rate:
                print(f"ratio {name} / {base_name}: {rate / base:.2f}x")


if __name__ == "__main__":
    main()
