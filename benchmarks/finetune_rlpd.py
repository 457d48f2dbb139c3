"""Offline IQL, then online fine-tuning with IQL vs RLPD on one MetaWorld task: success before and after.

    MUJOCO_GL=egl python benchmarks/finetune_rlpd.py                       # short default: minutes on 2 cores
    MUJOCO_GL=egl python benchmarks/finetune_rlpd.py --episodes 60 --pretrain-steps 5000 --env-steps 20000 \\
        --seeds 0 1 2 --utd 20                                             # longer (GPU-sized UTD)

Steps: collect one ``suboptimal`` dataset (``robot-rl collect --preset suboptimal``), train offline IQL on it
(ground-truth rewards), evaluate that policy, then fine-tune a copy per learner from the same checkpoint, with the
same env steps, seed and reward (the dataset's: ground truth in sim):

- ``iql``: ``finetune`` continuing IQL (its defaults: 75% offline batches, 1 update per env step);
- ``rlpd``: ``finetune --algo rlpd``: RLPD started from the IQL actor and the same offline data, new critics
  (``--critic-warmup`` critic-only updates on the offline data first), 50/50 batches, ``--utd`` critic steps per
  env step;
- ``rlpd-cold``: the same without the critic warm-up (add it with ``--variants``).

Every policy is evaluated on the same ``--eval-episodes`` layouts (seed 10000, one env). Prints a markdown table
(paste it into benchmarks/finetune_rlpd.md with the command and the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("MUJOCO_GL", "egl")

VARIANTS = ("iql", "rlpd", "rlpd-cold")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sweep-into-v3", help="MetaWorld task (iql_quality.md: offline IQL leaves "
                                                          "headroom here)")
    p.add_argument("--episodes", type=int, default=20, help="episodes in the suboptimal dataset")
    p.add_argument("--pretrain-steps", type=int, default=1000, help="offline IQL updates")
    p.add_argument("--env-steps", type=int, default=1500, help="fine-tuning env steps per learner")
    p.add_argument("--warmup", type=int, default=300, help="env steps collected before updates start")
    p.add_argument("--utd", type=int, default=2, help="RLPD critic steps per env step (rlpd.utd)")
    p.add_argument("--critics", type=int, default=10, help="RLPD critic ensemble size (rlpd.critics)")
    p.add_argument("--critic-warmup", type=int, default=500, help="RLPD critic-only updates before acting")
    p.add_argument("--init-temperature", type=float, default=1.0, help="RLPD's initial entropy temperature "
                                                                        "(rlpd.init_temperature)")
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--variants", nargs="+", default=["iql", "rlpd"], choices=VARIANTS)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on a shared 2-core machine)")
    p.add_argument("--root", type=Path, default=Path("runs/finetune_rlpd"))
    args = p.parse_args()
    import torch

    from robot_rl.cli.main import main as cli
    from robot_rl.envs import make_env
    from robot_rl.rewards.sources import GroundTruthReward
    from robot_rl.rl.evaluate import evaluate
    from robot_rl.rl.finetune import FinetuneConfig, finetune
    from robot_rl.rl.policy import load_policy

    torch.set_num_threads(args.threads)
    task = f"metaworld/{args.task}"
    args.root.mkdir(parents=True, exist_ok=True)
    start = time.time()
    data = args.root / f"{args.task}-{args.episodes}.h5"
    if not data.exists():
        assert cli(["collect", "--task", task, "--preset", "suboptimal", "--episodes", str(args.episodes),
                    "--num-envs", "4", "--seed", "0", "--out", str(data)]) == 0
    rows: list[dict[str, object]] = []
    for seed in args.seeds:
        offline = args.root / f"{args.task}-iql-{args.pretrain_steps}-s{seed}"
        if not (offline / "checkpoints").exists():
            assert cli(["train", "--dataset", str(data), "--steps", str(args.pretrain_steps), "--seed", str(seed),
                        "--out", str(offline), "--eval-episodes", "0", "--device", "cpu",
                        "--set", f"threads={args.threads}"]) == 0
        env = make_env(task, num_envs=1)
        try:
            offline_eval = evaluate(load_policy(offline), env, args.eval_episodes, seed=10_000)
        finally:
            env.close()
        before, before_return = offline_eval.success_rate, offline_eval.return_mean
        print(f"seed {seed}: offline IQL success {before:.0%}, return {before_return:.0f}", flush=True)
        for variant in args.variants:
            tag = f"-t{args.init_temperature:g}" if variant != "iql" and args.init_temperature != 1.0 else ""
            run = args.root / f"{args.task}-{variant}{tag}-s{seed}-n{args.env_steps}"
            result = run / "result.json"
            if not result.exists():
                algo = None if variant == "iql" else "rlpd"
                cfg = FinetuneConfig(env_steps=args.env_steps, warmup_env_steps=args.warmup,
                                     log_every=max(args.env_steps // 4, 1), eval_every=args.env_steps,
                                     eval_episodes=args.eval_episodes, seed=seed, threads=args.threads, algo=algo,
                                     critic_warmup=args.critic_warmup if variant == "rlpd" else 0,
                                     train_overrides={"rlpd": {"utd": args.utd, "critics": args.critics,
                                                               "init_temperature": args.init_temperature}})
                env = make_env(task, num_envs=1)
                t0 = time.time()
                try:
                    _, last = finetune(offline, env, GroundTruthReward(), cfg, run)
                finally:
                    env.close()
                result.write_text(json.dumps({"after": last["eval/success_rate"], "seconds": time.time() - t0,
                                              "return": last.get("eval/return_mean")}))
            after = json.loads(result.read_text())
            rows.append({"seed": seed, "variant": variant, "before": before, "before_return": before_return, **after})
            print(f"seed {seed}: {variant} {before:.0%} -> {after['after']:.0%} ({after['seconds']:.0f} s)",
                  flush=True)
    print(f"\n{task}; {args.episodes}-episode suboptimal dataset; offline IQL {args.pretrain_steps} updates; "
          f"{args.env_steps} fine-tuning env steps ({args.warmup} before updates); RLPD utd {args.utd}, "
          f"{args.critics} critics, critic warm-up {args.critic_warmup}, initial temperature "
          f"{args.init_temperature:g}; "
          f"{args.eval_episodes} eval episodes; "
          f"total {time.time() - start:.0f} s\n")
    print("| seed | learner | success before → after | eval return before → after | fine-tuning time |")
    print("| --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['seed']} | {r['variant']} | {r['before']:.0%} → {r['after']:.0%} | {r['before_return']:.0f} → "
              f"{r['return']:.0f} | {r['seconds']:.0f} s |")


if __name__ == "__main__":
    main()
