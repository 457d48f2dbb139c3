"""``robot-rl finetune``: continue an offline IQL run online in a sim task, mixing offline and new data."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.help_text import command_help


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder of an offline IQL run")
    p.add_argument("--task", default=None, help="sim task (default: the dataset's)")
    p.add_argument("--steps", type=int, default=10_000, help="environment steps")
    p.add_argument("--out", type=Path, default=None, help="run folder (default: CHECKPOINT-finetune)")
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--offline-ratio", type=float, default=0.75,
                   help="share of each batch from the offline data (default 0.75)")
    p.add_argument("--updates-per-step", type=float, default=1.0)
    p.add_argument("--warmup", type=int, default=1000, help="env steps before updates start")
    p.add_argument("--reward", default="dataset",
                   help="reward of new transitions: 'dataset' (the source of the dataset's active reward, e.g. "
                        "the reward model it was relabeled with), 'ground_truth' (the simulator's), "
                        "reward-model:RUN_DIR or code:FILE.py")
    p.add_argument("--eval-every", type=int, default=5000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    from robot_rl.cli.eval_cmd import evaluate_run
    from robot_rl.envs import make_env
    from robot_rl.rl.checkpoint import load_checkpoint
    from robot_rl.rl.finetune import FinetuneConfig, finetune
    from robot_rl.rl.rewards import resolve_reward_source

    console = Console(stderr=True)
    payload, _ = load_checkpoint(args.checkpoint)
    dataset = payload["config"]["dataset"]
    from robot_rl.core import EnvSpec

    task = args.task or EnvSpec.from_json(payload["env_spec"]).name
    out = args.out or Path(f"{args.checkpoint}-finetune")
    cfg = FinetuneConfig(env_steps=args.steps, updates_per_env_step=args.updates_per_step,
                         offline_ratio=args.offline_ratio, warmup_env_steps=args.warmup,
                         eval_every=args.eval_every, eval_episodes=args.eval_episodes, seed=args.seed,
                         log_every=min(1000, args.steps))
    reward = resolve_reward_source(args.reward, dataset)
    console.print(f"fine-tuning {args.checkpoint} on {task}; new transitions rewarded by '{reward.name}'")
    env = make_env(task, num_envs=args.num_envs)
    start = time.time()
    columns = (TextColumn("[bold]finetune"), BarColumn(), MofNCompleteColumn(), TextColumn("env steps"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    try:
        with Progress(*columns, console=console) as progress:
            bar = progress.add_task("finetune", total=args.steps, info="")

            def on_log(step: int, m: dict[str, float]) -> None:
                info = f"return {m.get('train/return_mean', float('nan')):.0f}"
                if "eval/success_rate" in m:
                    info += f", eval success {m['eval/success_rate']:.0%}"
                progress.update(bar, completed=step, info=info)

            finetune(args.checkpoint, env, reward, cfg, out, on_log=on_log)
    finally:
        env.close()
    console.print(f"fine-tuned for {args.steps} env steps in {time.time() - start:.0f} s -> {out}")
    evaluate_run(out, task, args.eval_episodes, console, title=f"IQL fine-tuned online from {args.checkpoint}",
                 extra={"checkpoint": str(args.checkpoint), "reward": reward.name, "env steps": args.steps})
    return 0
