"""Offline IQL on a learned reward, then fine-tuning with that reward frozen vs with online preference labels
(``finetune --online-labels``): success before and after, on one MetaWorld task.

    MUJOCO_GL=egl python benchmarks/finetune_online_labels.py                  # short default: minutes on 2 cores
    MUJOCO_GL=egl python benchmarks/finetune_online_labels.py --env-steps 20000 --online-labels 500 \\
        --label-every 2000 --seeds 0 1 2                                      # longer

Steps: collect one ``suboptimal`` dataset (``robot-rl collect --preset suboptimal``), label ``--pairs`` uniform pairs
with the scripted teacher (``robot-rl label``), train a reward ensemble on them (``robot-rl train-reward``), relabel
the dataset with it (``robot-rl relabel --activate``), train offline IQL on the learned rewards and evaluate it; then
fine-tune a copy per variant from that checkpoint, with the same env steps and seed:

- ``frozen``: ``finetune --reward dataset``: new transitions rewarded by the offline reward model, never updated;
- ``online``: the same plus ``--online-labels N --label-every K``: every K env steps, pairs of recent rollouts
  picked by ensemble disagreement are labeled by the same scripted teacher through the same label store, the
  ensemble is retrained from where it was on all labels so far, and the replay buffer (and the offline data, which
  that model labeled) is relabeled;
- ``online-new-only``: the same, but only the new transitions are relabeled (the offline data keeps the offline
  model's rewards; not a CLI option, an ablation).

Every policy is evaluated on the same ``--eval-episodes`` layouts (seed 10000, one env). Each variant's final reward
model is also scored against the simulator's reward: Pearson correlation along episodes (mean over episodes) on the
offline dataset and on the ``online`` run's rollouts (``online_rollouts.h5``, what the fine-tuned policies
visited). Prints a markdown table (paste it into benchmarks/finetune_online_labels.md with the command and the
machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("frozen", "online", "online-new-only")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sweep-into-v3", help="MetaWorld task (iql_quality.md: offline IQL leaves "
                                                          "headroom here)")
    p.add_argument("--episodes", type=int, default=20, help="episodes in the suboptimal dataset")
    p.add_argument("--pairs", type=int, default=200, help="offline preference labels")
    p.add_argument("--segment-length", type=int, default=25)
    p.add_argument("--reward-steps", type=int, default=200, help="reward-model training steps (offline)")
    p.add_argument("--retrain-steps", type=int, default=100, help="reward-model steps per online round")
    p.add_argument("--pretrain-steps", type=int, default=1000, help="offline IQL updates")
    p.add_argument("--env-steps", type=int, default=1500, help="fine-tuning env steps per variant")
    p.add_argument("--warmup", type=int, default=300, help="env steps collected before updates start")
    p.add_argument("--online-labels", type=int, default=100, help="query budget of the online variant")
    p.add_argument("--label-every", type=int, default=300, help="env steps between online rounds")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    p.add_argument("--root", type=Path, default=Path("runs/finetune_online_labels"))
    args = p.parse_args()
    import torch

    from robot_rl.cli.main import main as cli
    from robot_rl.envs import make_env
    from robot_rl.rewards.labelers import make_labeler
    from robot_rl.rewards.online import OnlineLabelsConfig, OnlinePreferences
    from robot_rl.rewards.sources import LearnedReward, resolve_reward_source
    from robot_rl.rl.evaluate import evaluate
    from robot_rl.rl.finetune import FinetuneConfig, finetune
    from robot_rl.rl.policy import load_policy

    torch.set_num_threads(args.threads)
    task = f"metaworld/{args.task}"
    args.root.mkdir(parents=True, exist_ok=True)
    start = time.time()
    rows: list[dict[str, object]] = []
    for seed in args.seeds:
        base = args.root / f"{args.task}-s{seed}"
        data = base / "data.h5"
        if not (base / "iql" / "checkpoints").exists():
            base.mkdir(parents=True, exist_ok=True)
            if not data.exists():
                assert cli(["collect", "--task", task, "--preset", "suboptimal", "--episodes", str(args.episodes),
                            "--num-envs", "4", "--seed", str(seed), "--out", str(data)]) == 0
            assert cli(["label", str(data), "--pairs", str(args.pairs), "--segment-length",
                        str(args.segment_length), "--seed", str(seed)]) == 0
            assert cli(["train-reward", str(data), "--out", str(base / "reward"), "--steps", str(args.reward_steps),
                        "--set", "hidden=[64,64]", "--set", f"seed={seed}", "--device", "cpu", "--overwrite"]) == 0
            assert cli(["relabel", str(data), "--source", f"reward-model:{base / 'reward'}", "--activate"]) == 0
            assert cli(["train", "--dataset", str(data), "--steps", str(args.pretrain_steps), "--seed", str(seed),
                        "--out", str(base / "iql"), "--eval-episodes", "0", "--device", "cpu",
                        "--set", f"threads={args.threads}"]) == 0
        env = make_env(task, num_envs=1)
        try:
            offline_eval = evaluate(load_policy(base / "iql"), env, args.eval_episodes, seed=10_000)
        finally:
            env.close()
        before, before_return = offline_eval.success_rate, offline_eval.return_mean
        print(f"seed {seed}: offline IQL (learned reward) success {before:.0%}, return {before_return:.0f}",
              flush=True)
        for variant in args.variants:
            tag = "" if variant == "frozen" else f"-q{args.online_labels}-k{args.label_every}"
            run = base / f"{variant}-n{args.env_steps}{tag}"
            result = run / "result.json"
            if not result.exists():
                budget = 0 if variant == "frozen" else args.online_labels
                cfg = FinetuneConfig(env_steps=args.env_steps, warmup_env_steps=args.warmup,
                                     log_every=max(args.env_steps // 4, 1), eval_every=args.env_steps,
                                     eval_episodes=args.eval_episodes, seed=seed, threads=args.threads,
                                     online_labels=budget, label_every=args.label_every)
                env = make_env(task, num_envs=1)
                reward = resolve_reward_source("dataset", str(data))
                learner = None
                if budget:
                    assert isinstance(reward, LearnedReward)
                    learner = OnlinePreferences(reward, make_labeler("scripted", teacher={"seed": seed}),
                                                OnlineLabelsConfig(budget=budget, label_every=args.label_every,
                                                                   env_steps=args.env_steps, seed=seed,
                                                                   reward_steps=args.retrain_steps),
                                                run, env.spec, relabels_offline=variant == "online")
                t0 = time.time()
                try:
                    _, last = finetune(base / "iql", env, learner or reward, cfg, run, learner=learner)
                finally:
                    env.close()
                    if learner is not None:
                        learner.close()
                counts = learner.counts if learner is not None else {}
                result.write_text(json.dumps({"after": last["eval/success_rate"], "seconds": time.time() - t0,
                                              "return": last.get("eval/return_mean"), "labels": counts}))
            after = json.loads(result.read_text())
            after["model"] = base / "reward" if variant == "frozen" else run / "reward"
            rows.append({"seed": seed, "variant": variant, "before": before, "before_return": before_return, **after})
            print(f"seed {seed}: {variant} {before:.0%} -> {after['after']:.0%} ({after['seconds']:.0f} s)",
                  flush=True)
    print(f"\n{task}; {args.episodes}-episode suboptimal dataset; {args.pairs} offline scripted labels of "
          f"{args.segment_length}-step segments; reward ensemble {args.reward_steps} steps; offline IQL "
          f"{args.pretrain_steps} updates on the learned reward; {args.env_steps} fine-tuning env steps "
          f"({args.warmup} before updates); online: {args.online_labels} queries, a round every {args.label_every} "
          f"env steps, {args.retrain_steps} retraining steps; {args.eval_episodes} eval episodes; "
          f"total {time.time() - start:.0f} s\n")
    print("| seed | variant | success before → after | eval return before → after | labels asked / reused | "
          "reward corr. offline data / online rollouts | fine-tuning time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        labels = r.get("labels") or {}
        asked = f"{labels['asked']} / {labels['reused']}" if labels else "—"  # type: ignore[index]
        base = args.root / f"{args.task}-s{r['seed']}"
        rollouts = base / f"online-n{args.env_steps}-q{args.online_labels}-k{args.label_every}" / "online_rollouts.h5"
        corr = " / ".join(f"{c:.2f}" for c in correlations(Path(str(r["model"])), [base / "data.h5", rollouts]))
        print(f"| {r['seed']} | {r['variant']} | {r['before']:.0%} → {r['after']:.0%} | {r['before_return']:.0f} → "
              f"{r['return']:.0f} | {asked} | {corr} | {r['seconds']:.0f} s |")


def correlations(run: Path, datasets: list[Path]) -> list[float]:
    """Mean per-episode correlation of the reward model in ``run`` with the ground truth, per dataset (NaN: absent)."""
    from robot_rl.data import GROUND_TRUTH, Dataset
    from robot_rl.rewards.model import RewardModel, reward_correlation

    model = RewardModel.load(run / "reward_model.pt")
    out = []
    for path in datasets:
        if not path.exists():
            out.append(float("nan"))
            continue
        with Dataset(path) as ds:
            episodes = [(e.states, e.actions, e.reward_labels[GROUND_TRUTH][0])
                        for e in (ds.load_episode(n) for n in ds.episode_names)]
        out.append(reward_correlation(model, episodes)["mean_episode"])
    return out


if __name__ == "__main__":
    main()
