"""Learned rewards against true rewards: IQL on preference-learned rewards vs IQL on the simulator's reward vs BC.

For each task: one `suboptimal` dataset (as benchmarks/iql_quality.py). For each seed: the scripted teacher
(perfectly rational B-Pref teacher) labels `--pairs` uniformly drawn pairs of `--segment-length`-step segments; a
Bradley-Terry ensemble is trained on them; a copy of the dataset is relabeled with it (made active); then IQL on
the learned reward, IQL on the true reward and BC train with the same updates and are evaluated on the same
layouts. Goal (issue 4): learned-reward IQL >= 0.9 x true-reward IQL success, and above BC.

    python benchmarks/reward_quality.py                      # 2 tasks x 3 seeds; --jobs N runs N at once
    python benchmarks/reward_quality.py --tasks drawer-open-v3 --seeds 0 --jobs 1
    python benchmarks/reward_quality.py --tasks mjx/drawer-open mjx/push --root runs/reward_quality_mjx
    python benchmarks/reward_quality.py --mistake 0.25 --label-noise 0.25   # a teacher wrong on 25% of pairs

Prints a markdown table (copy it into benchmarks/reward_quality.md) and writes summary-m<mistake>-n<noise>.json
under --root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "egl")


def _task_id(task: str) -> str:
    """``drawer-open-v3`` means MetaWorld's task; a full id (``mjx/drawer-open``) is taken as it is."""
    return task if "/" in task else f"metaworld/{task}"


def _stem(task: str) -> str:
    return task.replace("/", "-")


def _one(task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    import torch

    torch.set_num_threads(args.threads)
    from robot_rl.cli.main import main as cli
    from robot_rl.rewards.jobs import label_dataset, make_labeler, train_reward
    from robot_rl.rewards.model import RewardModelConfig

    root = Path(args.root)
    task = _stem(task)
    data = root / f"{task}.h5"
    tag = (f"-m{args.mistake:g}" if args.mistake else "") + (f"-n{args.label_noise:g}" if args.label_noise else "")
    copy = root / f"{task}-s{seed}{tag}.h5"
    if not copy.exists():
        shutil.copy(data, copy)
    store = str(root / f"{task}-s{seed}{tag}.labels.sqlite")
    t0 = time.time()
    teacher = make_labeler("scripted", teacher={"seed": seed, "mistake": args.mistake})
    job = label_dataset(str(copy), teacher, args.pairs, args.segment_length, seed=seed, store=store)
    reward_run = root / f"{task}-reward-s{seed}{tag}"
    metrics = train_reward(str(copy), reward_run, store=store,
                           config=RewardModelConfig(steps=args.reward_steps, seed=seed, label_noise=args.label_noise),
                           device=args.device, overwrite=True)
    t_reward = time.time() - t0
    from robot_rl.rewards.relabel import active_label

    if active_label(str(copy)) != "reward_model":
        assert cli(["relabel", str(copy), "--source", f"reward-model:{reward_run}", "--activate"]) == 0
    out: dict[str, Any] = {"task": task, "seed": seed, "label_accuracy": job.accuracy,
                           "valid_accuracy": metrics.get("valid_accuracy"),
                           "valid_true_agreement": metrics.get("valid_true_agreement"),
                           "correlation": metrics.get("correlation", {}).get("mean_episode"),
                           "reward_seconds": t_reward}
    for name, algo, dataset, extra in (("iql_learned", "iql", copy, []),
                                       ("iql_true", "iql", data, ["--reward-key", "ground_truth"]),
                                       ("bc", "bc", data, [])):
        run = root / f"{task}-{name}-s{seed}{tag if name == 'iql_learned' else ''}"
        if not (run / "eval.json").exists():
            assert cli(["train", "--dataset", str(dataset), "--algo", algo, "--steps", str(args.steps), "--seed",
                        str(seed), "--out", str(run), "--eval-episodes", str(args.eval_episodes),
                        "--device", args.device, *extra]) == 0
        out[name] = json.loads((run / "eval.json").read_text())["eval/success_rate"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["drawer-open-v3", "sweep-into-v3"])
    p.add_argument("--episodes", type=int, default=60)
    p.add_argument("--pairs", type=int, default=500)
    p.add_argument("--segment-length", type=int, default=50)
    p.add_argument("--reward-steps", type=int, default=200, help="reward-model gradient steps")
    p.add_argument("--steps", type=int, default=5000, help="IQL / BC updates")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--jobs", type=int, default=1, help="(task, seed) runs at once")
    p.add_argument("--threads", type=int, default=0, help="torch threads per run (0: cores / jobs)")
    p.add_argument("--mistake", type=float, default=0.0, help="teacher mistake rate (B-Pref's epsilon)")
    p.add_argument("--label-noise", type=float, default=0.0,
                   help="reward model's assumed label noise (noise-aware loss; 0: plain Bradley-Terry)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--root", type=Path, default=Path("runs/reward_quality"))
    args = p.parse_args()
    args.threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    args.root.mkdir(parents=True, exist_ok=True)

    from robot_rl.cli.main import main as cli

    start = time.time()
    for task in args.tasks:
        data = args.root / f"{_stem(task)}.h5"
        if not data.exists():
            assert cli(["collect", "--task", _task_id(task), "--preset", "suboptimal", "--episodes",
                        str(args.episodes), "--num-envs", "4", "--seed", "0", "--out", str(data)]) == 0
    work = [(t, s) for t in args.tasks for s in args.seeds]
    if args.jobs > 1:
        # spawn, not fork: the parent has made an env (collect), and an mjx task's JAX threads make a forked child
        # deadlock (seen: both workers stopped after training, at the evaluation's env)
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            results = list(pool.map(_one, *zip(*work, strict=True), [args] * len(work)))
    else:
        results = [_one(t, s, args) for t, s in work]
    (args.root / f"summary-m{args.mistake:g}-n{args.label_noise:g}.json").write_text(json.dumps(results, indent=1))
    print(f"\nteacher mistake rate {args.mistake:g}, reward-model label_noise {args.label_noise:g}; "
          f"{args.pairs} scripted pairs of {args.segment_length} steps, reward model {args.reward_steps} steps, "
          f"IQL/BC {args.steps} updates, {args.eval_episodes} eval episodes, seeds {args.seeds}, device "
          f"{args.device}; {time.time() - start:.0f} s\n")
    print("| task | reward held-out acc. | agreement w/ truth | reward corr. | IQL learned | IQL true | BC | "
          "learned / true |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for task in args.tasks:
        rs = [r for r in results if r["task"] == _stem(task)]

        def col(key: str, pct: bool = True, rows: list[dict[str, Any]] = rs) -> str:
            vals = [r[key] for r in rows if r[key] is not None]
            per = ", ".join(f"{v:.0%}" if pct else f"{v:.2f}" for v in vals)
            mean = np.mean(vals) if vals else float("nan")
            return f"{per} (mean {mean:.0%})" if pct else f"{mean:.2f}"

        learned, true = np.mean([r["iql_learned"] for r in rs]), np.mean([r["iql_true"] for r in rs])
        ratio = learned / true if true > 0 else float("nan")
        print(f"| {task} | {col('valid_accuracy')} | {col('valid_true_agreement')} | {col('correlation', False)} | "
              f"{col('iql_learned')} | {col('iql_true')} | {col('bc')} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
