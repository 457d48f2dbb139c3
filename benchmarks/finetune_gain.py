"""Does online fine-tuning improve on offline IQL? Success over fine-tuning env steps, learned vs true reward.

    MUJOCO_GL=egl python benchmarks/finetune_gain.py                               # sweep-into, 3 seeds, 20k steps
    MUJOCO_GL=egl python benchmarks/finetune_gain.py --tasks sweep-into-v3 push-v3 --env-steps 50000
    MUJOCO_GL=egl python benchmarks/finetune_gain.py --variants iql-learned iql-learned-labels rlpd-learned

Per task: one ``suboptimal`` dataset (``robot-rl collect --preset suboptimal``, collect seed 0, as
``reward_quality.py``). Per seed: the scripted teacher labels ``--pairs`` segment pairs of a copy, a Bradley-Terry
ensemble is trained and the copy relabeled with it (``relabel --activate``), then offline IQL trains on the learned
reward and on the true reward (``--reward-key ground_truth``). Each offline policy is evaluated, then fine-tuned
with ``robot-rl finetune`` (same seed, one env) and evaluated every ``--eval-every`` env steps, always on the same
``--eval-episodes`` layouts (one env, seed 10000, deterministic actions). Variants (``--variants``):

- ``iql-true`` / ``iql-learned``: IQL continues, new transitions rewarded by the true / the learned reward;
- ``iql-learned-labels``: as ``iql-learned``, plus ``--online-labels`` queries to the scripted teacher on fresh
  rollouts every ``--label-every`` steps (reward ensemble retrained, buffer relabeled);
- ``rlpd-learned``: ``finetune --algo rlpd`` from the learned-reward IQL run;
- ``calql-learned``: offline Cal-QL (``train --algo calql``, same updates) on the learned reward, fine-tuned as
  Cal-QL.

Prints a markdown table (success before and at every evaluation; mean over seeds) and writes
``summary-n<env steps>.json`` under ``--root``; paste the table into benchmarks/finetune_gain.md with the
command and the machine.
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

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("iql-true", "iql-learned", "iql-learned-labels", "rlpd-learned", "calql-learned")


def _offline(task: str, seed: int, args: argparse.Namespace) -> dict[str, Any]:
    """Label, reward model, relabel, and the two offline IQL runs of one (task, seed); their success."""
    import torch

    torch.set_num_threads(args.threads)
    from robot_rl.cli.main import main as cli
    from robot_rl.rewards.jobs import label_dataset, make_labeler, train_reward
    from robot_rl.rewards.model import RewardModelConfig
    from robot_rl.rewards.relabel import active_label

    root = Path(args.root)
    data, copy = root / f"{task}.h5", root / f"{task}-s{seed}.h5"
    if not copy.exists():
        shutil.copy(data, copy)
    store = root / f"{task}-s{seed}.labels.sqlite"
    reward_run = root / f"{task}-reward-s{seed}"
    if active_label(str(copy)) != "reward_model":
        teacher = make_labeler("scripted", teacher={"seed": seed})
        label_dataset(str(copy), teacher, args.pairs, 50, seed=seed, store=str(store))
        train_reward(str(copy), reward_run, store=str(store), config=RewardModelConfig(steps=200, seed=seed),
                     device="cpu", overwrite=True)
        assert cli(["relabel", str(copy), "--source", f"reward-model:{reward_run}", "--activate"]) == 0
    out = {}
    runs = [("iql-learned", copy, []), ("iql-true", data, ["--reward-key", "ground_truth"])]
    if "calql-learned" in args.variants:
        runs.append(("calql-learned", copy, ["--algo", "calql"]))
    for name, dataset, extra in runs:
        run = root / f"{task}-{name}-s{seed}"
        if not (run / "eval.json").exists():
            assert cli(["train", "--dataset", str(dataset), "--steps", str(args.pretrain_steps), "--seed", str(seed),
                        "--out", str(run), "--eval-episodes", str(args.eval_episodes), "--device", "cpu",
                        "--set", f"threads={args.threads}", *extra]) == 0
        out[name] = _offline_eval(run, task, args.eval_episodes)
    return out


def _offline_key(variant: str) -> str:
    """The offline run a variant starts from: Cal-QL's own, else IQL's on the variant's reward."""
    algo, reward = variant.split("-")[:2]
    return f"{'calql' if algo == 'calql' else 'iql'}-{reward}"


def _offline_eval(run: Path, task: str, episodes: int) -> dict[str, float]:
    """The offline policy's success and return on the layouts fine-tuning evaluates on: one env, seed 10000
    (``train``'s own ``eval.json`` uses 4 envs, whose layouts differ)."""
    saved = run / "eval-finetune-layouts.json"
    if not saved.exists():
        from robot_rl.envs import make_env
        from robot_rl.rl.evaluate import evaluate
        from robot_rl.rl.policy import load_policy

        env = make_env(f"metaworld/{task}", num_envs=1)
        try:
            res = evaluate(load_policy(run), env, episodes, seed=10_000)
        finally:
            env.close()
        saved.write_text(json.dumps(res.as_metrics()))
    return json.loads(saved.read_text())


def _curve(run: Path) -> dict[int, dict[str, float]]:
    """Success and return at every evaluation of fine-tuning itself (one env, seed 10000). ``robot-rl finetune``
    then logs its own final evaluation (4 envs, other layouts) at the last step too: the first row of a step is
    fine-tuning's."""
    from robot_rl.rl.logger import read_metrics

    curve: dict[int, dict[str, float]] = {}
    for row in read_metrics(run):
        if "eval/success_rate" in row:
            curve.setdefault(int(row["step"]), {k: row[k] for k in ("eval/success_rate", "eval/return_mean")})
    return curve


def _finetune(task: str, seed: int, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    """One fine-tuning run; success at every evaluation (env step -> rate) and its wall time."""
    import torch

    torch.set_num_threads(args.threads)
    from robot_rl.cli.main import main as cli

    root = Path(args.root)
    algo, reward = variant.split("-")[:2]
    offline = root / f"{task}-{_offline_key(variant)}-s{seed}"
    run = root / f"{task}-{variant}-s{seed}-n{args.env_steps}"
    result = run / "result.json"
    if not result.exists():
        if run.exists():
            shutil.rmtree(run)  # an interrupted run of this script: start that one over
        flags = ["finetune", "--checkpoint", str(offline), "--out", str(run), "--steps", str(args.env_steps),
                 "--eval-every", str(args.eval_every), "--eval-episodes", str(args.eval_episodes), "--seed",
                 str(seed), "--threads", str(args.threads), "--reward", "ground_truth" if reward == "true" else
                 "dataset"]
        if algo == "rlpd":
            flags += ["--algo", "rlpd", "--critic-warmup", str(args.critic_warmup)]
        if variant.endswith("-labels"):
            flags += ["--online-labels", str(args.online_labels), "--label-every", str(args.label_every),
                      "--labeler", "scripted"]
        t0 = time.time()
        assert cli(flags) == 0
        result.write_text(json.dumps({"seconds": time.time() - t0}))
    saved = json.loads(result.read_text())
    return {"task": task, "seed": seed, "variant": variant, "seconds": saved["seconds"], "curve": _curve(run)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["sweep-into-v3"])
    p.add_argument("--episodes", type=int, default=20, help="episodes in each suboptimal dataset")
    p.add_argument("--pairs", type=int, default=500, help="scripted preference pairs for the offline reward model")
    p.add_argument("--pretrain-steps", type=int, default=5000, help="offline IQL updates")
    p.add_argument("--env-steps", type=int, default=20_000, help="fine-tuning env steps per run")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=20)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=["iql-true", "iql-learned"], choices=VARIANTS)
    p.add_argument("--online-labels", type=int, default=200, help="queries of iql-learned-labels, in total")
    p.add_argument("--label-every", type=int, default=5000, help="env steps between online labeling rounds")
    p.add_argument("--critic-warmup", type=int, default=2000, help="rlpd-learned: critic-only updates first")
    p.add_argument("--jobs", type=int, default=2, help="runs at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--root", type=Path, default=Path("runs/finetune_gain"))
    args = p.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    from robot_rl.cli.main import main as cli

    start = time.time()
    for task in args.tasks:
        data = args.root / f"{task}.h5"
        if not data.exists():
            assert cli(["collect", "--task", f"metaworld/{task}", "--preset", "suboptimal", "--episodes",
                        str(args.episodes), "--num-envs", "4", "--seed", "0", "--out", str(data)]) == 0
    pairs = [(t, s) for t in args.tasks for s in args.seeds]
    runs = [(t, s, v) for t, s in pairs for v in args.variants]
    with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:  # spawn: see reward_quality.py
        offline = dict(zip(pairs, pool.map(_offline, *zip(*pairs, strict=True), [args] * len(pairs)), strict=True))
        results = list(pool.map(_finetune, *zip(*runs, strict=True), [args] * len(runs)))
    for r in results:
        r["before"] = offline[(r["task"], r["seed"])][_offline_key(r["variant"])]
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": results}
    (args.root / f"summary-n{args.env_steps}.json").write_text(json.dumps(summary, indent=1))
    steps = sorted({s for r in results for s in r["curve"]})
    print(f"\n{args.episodes}-episode suboptimal datasets; {args.pairs} scripted pairs; offline IQL "
          f"{args.pretrain_steps} updates; {args.env_steps} fine-tuning env steps (1 env, 1 update per step); "
          f"{args.eval_episodes} eval episodes; seeds {args.seeds}; {time.time() - start:.0f} s in all\n")
    print("| task | variant | offline | " + " | ".join(f"{s / 1000:g}k steps" for s in steps) + " | gain at "
          f"{steps[-1] / 1000:g}k | eval return, offline → {steps[-1] / 1000:g}k | fine-tuning time |")
    print("| --- | --- | --- | " + " | ".join("---" for _ in steps) + " | --- | --- | --- |")
    for task in args.tasks:
        for variant in args.variants:
            rows = [r for r in results if r["task"] == task and r["variant"] == variant]

            def cell(values: list[float]) -> str:
                return f"{', '.join(f'{v:.0%}' for v in values)} (mean {sum(values) / len(values):.0%})"

            before = [r["before"]["eval/success_rate"] for r in rows]
            at = {s: [r["curve"][s]["eval/success_rate"] for r in rows if s in r["curve"]] for s in steps}
            gain = 100 * (sum(at[steps[-1]]) / len(at[steps[-1]]) - sum(before) / len(before))
            ret0 = sum(r["before"]["eval/return_mean"] for r in rows) / len(rows)
            ret1 = sum(r["curve"][steps[-1]]["eval/return_mean"] for r in rows) / len(rows)
            print(f"| {task} | {variant} | {cell(before)} | " + " | ".join(cell(at[s]) for s in steps) +
                  f" | {gain:+.0f} points | {ret0:.0f} → {ret1:.0f} | "
                  f"{sum(r['seconds'] for r in rows) / len(rows):.0f} s per run |")


if __name__ == "__main__":
    main()
