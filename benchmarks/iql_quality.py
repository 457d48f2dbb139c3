"""IQL against BC on the `suboptimal` preset datasets (ground-truth rewards), several seeds.

For each task: collect one `suboptimal` dataset, then for each seed train IQL and BC with the same networks,
data and number of updates, and evaluate each policy on the same evaluation layouts. Also IQL with reward
normalization turned off, and with the reference's fixed 1000 / (max - min return) scale instead of the
episode length (MetaWorld's raw rewards reach ~10 per step on 150-step episodes).

    python benchmarks/iql_quality.py                       # defaults below; ~25 min on 2 CPU cores
    python benchmarks/iql_quality.py --steps 20000 --tasks drawer-open-v3

Writes runs under --root and prints a markdown table (append it to benchmarks/iql_quality.md).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["drawer-open-v3", "sweep-into-v3"])
    p.add_argument("--episodes", type=int, default=60, help="episodes per dataset")
    p.add_argument("--steps", type=int, default=5000, help="updates per training run")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--no-raw", action="store_true", help="skip the IQL-without-reward-normalization rows")
    p.add_argument("--root", type=Path, default=Path("runs/iql_quality"))
    args = p.parse_args()

    from robot_rl.cli.main import main as cli
    from robot_rl.data import Dataset

    rows = []
    start = time.time()
    for task in args.tasks:
        data = args.root / f"{task}.h5"
        if not data.exists():
            assert cli(["collect", "--task", f"metaworld/{task}", "--preset", "suboptimal", "--episodes",
                        str(args.episodes), "--num-envs", "4", "--seed", "0", "--out", str(data)]) == 0
        with Dataset(data) as ds:
            data_success = float(np.mean([s[3] for s in ds.episode_summaries()]))
        variants = [("IQL", "iql", []), ("BC", "bc", [])]
        if not args.no_raw:
            variants.append(("IQL, raw rewards", "iql", ["--set", "normalize_rewards=false"]))
            variants.append(("IQL, scale 1000", "iql", ["--set", "reward_scale_numerator=1000"]))
        for label, algo, extra in variants:
            rates = []
            for seed in args.seeds:
                run = args.root / f"{task}-{label.replace(', ', '-').replace(' ', '_')}-s{seed}"
                if not (run / "eval.json").exists():
                    assert cli(["train", "--dataset", str(data), "--algo", algo, "--steps", str(args.steps),
                                "--seed", str(seed), "--out", str(run), "--eval-episodes", str(args.eval_episodes),
                                *extra]) == 0
                rates.append(json.loads((run / "eval.json").read_text())["eval/success_rate"])
            rows.append((task, label, data_success, rates))
    print(f"\n{args.steps} updates, {args.episodes}-episode suboptimal datasets, {args.eval_episodes} eval episodes, "
          f"seeds {args.seeds}; {time.time() - start:.0f} s\n")
    print("| task | method | dataset success | eval success per seed | mean |")
    print("| --- | --- | --- | --- | --- |")
    for task, label, ds_rate, rates in rows:
        per_seed = ", ".join(f"{r:.0%}" for r in rates)
        print(f"| {task} | {label} | {ds_rate:.0%} | {per_seed} | {np.mean(rates):.0%} |")


if __name__ == "__main__":
    main()
