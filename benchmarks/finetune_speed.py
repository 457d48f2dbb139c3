"""Env steps/s of online fine-tuning on metaworld/drawer-open-v3: envs in this process vs in worker processes.

    MUJOCO_GL=egl python benchmarks/finetune_speed.py [--device cpu|cuda] [--steps 800] [--num-envs 1 4 8]
                                                      [--workers 1] [--threads 0] [--updates-per-step 1]

Makes its own tiny offline IQL run first (4 collected episodes, 50 updates, the default 256x256 networks,
on the CPU), then fine-tunes it once per row (same seed, same settings, the learner on ``--device``).
A row's rate is env steps/s between the first and the third of four logs (after the warm-up; the final
evaluation is not counted). Rows: for each N in ``--num-envs``, "in-process" (``workers=0``, as before)
and "W workers" for each W in ``--workers`` (W <= N). The last lines are the ratios workers / in-process.
``--threads`` sets ``FinetuneConfig.threads`` (0: fine-tuning's own choice, printed by it).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")


def make_offline_run(root: Path) -> Path:
    from robot_rl.cli.main import main

    data = root / "d.h5"
    if main(["collect", "--task", "metaworld/drawer-open-v3", "--episodes", "4", "--episode-length", "50",
             "--out", str(data)]) != 0:
        raise SystemExit("collect failed")
    if main(["train", "--dataset", str(data), "--steps", "50", "--out", str(root / "iql"), "--device", "cpu",
             "--set", "log_every=50", "--eval-episodes", "1"]) != 0:
        raise SystemExit("train failed")
    return root / "iql"


def measure(checkpoint: Path, run_dir: Path, num_envs: int, workers: int, args: argparse.Namespace) -> float:
    from robot_rl.envs import make_env
    from robot_rl.rl.finetune import FinetuneConfig, finetune
    from robot_rl.rl.rewards import GroundTruthReward

    steps = max(args.steps // num_envs, 8) * num_envs
    log_every = steps // 4
    cfg = FinetuneConfig(env_steps=steps, warmup_env_steps=min(log_every, 10 * num_envs),
                         updates_per_env_step=args.updates_per_step, log_every=log_every, eval_every=10 * steps,
                         eval_episodes=1, threads=args.threads)
    times: dict[int, float] = {}

    def on_log(step: int, _: dict[str, float]) -> None:
        times[step] = time.perf_counter()

    env = make_env("metaworld/drawer-open-v3", num_envs=num_envs, workers=workers,
                   episode_length=args.episode_length)
    try:
        finetune(checkpoint, env, GroundTruthReward(), cfg, run_dir, on_log=on_log)
    finally:
        env.close()
    logged = sorted(times)
    first, third = logged[0], logged[2]
    return (third - first) / (times[third] - times[first])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the learner runs")
    p.add_argument("--steps", type=int, default=800, help="env steps per row (summed over the envs)")
    p.add_argument("--num-envs", type=int, nargs="+", default=[1, 4, 8])
    p.add_argument("--workers", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads of the learner (0: finetune's choice)")
    p.add_argument("--updates-per-step", type=float, default=1.0)
    p.add_argument("--episode-length", type=int, default=100)
    args = p.parse_args()
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""  # fine-tuning picks CUDA whenever it sees one
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    start = time.perf_counter()
    rows: list[tuple[int, str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        checkpoint = make_offline_run(root)
        for n in args.num_envs:
            for w in [0, *[w for w in args.workers if w <= n]]:
                rate = measure(checkpoint, root / f"ft-{n}-{w}", n, w, args)
                label = "in-process" if w == 0 else f"{w} worker{'s' if w > 1 else ''}"
                rows.append((n, label, rate))
                print(f"N={n} {label}: {rate:.0f} env steps/s", file=sys.stderr, flush=True)
    cpu = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"\nlearner on {cpu}; {os.cpu_count()} CPU cores; torch {torch.__version__}; "
          f"updates/env step {args.updates_per_step}; {args.steps} env steps per row; "
          f"total {time.perf_counter() - start:.0f} s")
    print(f"{'num_envs':>8}  {'env stepping':<14}{'env steps/s':>12}")
    for n, label, rate in rows:
        print(f"{n:>8}  {label:<14}{rate:>12.0f}")
    base = {n: rate for n, label, rate in rows if label == "in-process"}
    for n, label, rate in rows:
        if label != "in-process":
            print(f"ratio N={n} {label} / in-process: {rate / base[n]:.2f}")


if __name__ == "__main__":
    main()
