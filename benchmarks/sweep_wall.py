"""The reward-quality grid as a ``robot-rl sweep``: wall time one job after another vs as Ray tasks.

    python benchmarks/sweep_wall.py [--seeds 0 1] [--mistakes 0.0 0.25] [--workers 2]

The grid is ``benchmarks/reward_quality.py``'s question (does learned-reward IQL keep up when the teacher errs?)
as ``configs/sweep.example.yaml`` writes it: ``robot-rl pipeline`` jobs over seeds x teacher mistake rates on
MetaWorld drawer-open, each job collect -> label (scripted teacher) -> reward model -> relabel -> IQL -> a short
fine-tune -> evaluation, shrunk (``SMALL``) so that the grid runs in minutes on 2 cores. The same sweep config
runs twice into two folders: without an address (one job after another) and with ``--ray-address local`` (a local
Ray of ``--workers`` CPUs, one CPU per job). Each job runs with ``OMP_NUM_THREADS=1`` either way, so the two
give the same numbers: the script checks that every job's results are equal and prints the wall times.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"collect.episodes": 30, "collect.num_envs": 2, "label.pairs": 150, "reward_model.steps": 100,
         "train.steps": 1500, "finetune.env_steps": 600, "finetune.warmup_env_steps": 200,
         "finetune.eval_every": 600, "eval.episodes": 10}
METRICS = ["offline IQL (learned reward) success", "after online fine-tuning (learned reward) success"]


def sweep_config(out: Path, seeds: list[int], mistakes: list[float], workers: int | None) -> dict:
    return {"command": "pipeline", "out": str(out), "args": ["--config", str(ROOT / "configs" / "quickstart.yaml")],
            "set": SMALL, "grid": {"seed": seeds, "label.teacher.mistake": mistakes}, "seed_key": "seed",
            "metrics": METRICS, "resources": {"num_cpus": 1, "num_gpus": 0},
            "ray": {"address": "local" if workers else None, "workers": workers} if workers else {"address": None}}


def run(root: Path, name: str, seeds: list[int], mistakes: list[float], workers: int | None) -> tuple[float, dict]:
    config = root / f"{name}.yaml"
    config.write_text(yaml.safe_dump(sweep_config(root / name, seeds, mistakes, workers)))
    argv = [sys.executable, "-m", "robot_rl.cli.main", "sweep", "--config", str(config)]
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"sweep {name} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    with open(root / name / "results.csv") as f:
        rows = {r["job"]: r for r in csv.DictReader(f)}
    return seconds, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--mistakes", type=float, nargs="+", default=[0.0, 0.25])
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray, loopback only
    os.environ.setdefault("MUJOCO_GL", "egl")
    root = Path(tempfile.mkdtemp(prefix="sweep_wall"))
    try:
        sequential, seq_rows = run(root, "sequential", args.seeds, args.mistakes, None)
        ray, ray_rows = run(root, "ray", args.seeds, args.mistakes, args.workers)
        jobs = len(args.seeds) * len(args.mistakes)
        same = seq_rows.keys() == ray_rows.keys() and all(
            all(seq_rows[j][m] == ray_rows[j][m] for m in METRICS) and seq_rows[j]["status"] == "done"
            and ray_rows[j]["status"] == "done" for j in seq_rows)
        print(f"\n{jobs} pipeline jobs (seeds {args.seeds} x teacher mistake {args.mistakes}), {os.cpu_count()} CPUs\n")
        print("| how | wall time | vs one after another | same results |")
        print("|---|---|---|---|")
        print(f"| one after another | {sequential:.0f} s | 1.00x | - |")
        print(f"| Ray, {args.workers} workers (local) | {ray:.0f} s | {sequential / ray:.2f}x | "
              f"{'yes' if same else 'NO'} |")
        print("\nper job (one after another):")
        for job, row in seq_rows.items():
            ray_row = ray_rows.get(job, {})
            print(f"  {job}: " + ", ".join(f"{m} {row[m]} / {ray_row.get(m)}" for m in METRICS)
                  + f"; {row['seconds']} s / {ray_row.get('seconds')} s (one after another / Ray)")
        print("\nload: " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
