"""``robot-rl eval``: success rate and return of a trained policy in a sim task, with a GIF of one episode."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.help_text import command_help


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder")
    p.add_argument("--task", default=None, help="sim task (default: the one the policy was trained on)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--seed", type=int, default=10_000)


def run(args: argparse.Namespace) -> int:
    console = Console(stderr=True)
    result = evaluate_run(args.checkpoint, args.task, args.episodes, console, num_envs=args.num_envs, seed=args.seed)
    print(json.dumps(result))
    return 0


def evaluate_run(run_dir: Path, task: str | None, episodes: int, console: Console, num_envs: int = 4,
                 seed: int = 10_000, title: str | None = None, extra: dict[str, Any] | None = None) -> dict[str, float]:
    """Evaluate the run's newest policy (when ``episodes`` > 0 and the task is a sim task), then write
    ``eval.json``, ``curves.png`` and ``report.md``. Returns the eval metrics."""
    from robot_rl.envs import list_tasks, make_env
    from robot_rl.nn.checkpoint import load_checkpoint
    from robot_rl.rl.evaluate import evaluate
    from robot_rl.rl.logger import MetricsLogger
    from robot_rl.rl.policy import policy_from_payload
    from robot_rl.rl.report import plot_curves, write_report

    payload, _ = load_checkpoint(run_dir)  # read once: the policy and the step it was saved at
    policy = policy_from_payload(payload)
    task = task or policy.spec.name
    metrics: dict[str, float] = {}
    if episodes > 0 and task in list_tasks():
        size = policy.image_size or 128  # an image policy gets its camera's images at its training size
        env = make_env(task, num_envs=min(num_envs, episodes), cameras=(policy.camera,) if policy.camera else (),
                       image_size=(size, size))
        try:
            policy.check_spec(env.spec)
            columns = (TextColumn(f"[bold]eval {task}"), BarColumn(), MofNCompleteColumn(), TextColumn("episodes"),
                       TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
            with Progress(*columns, console=console) as progress:
                bar = progress.add_task("eval", total=episodes)
                res = evaluate(policy, env, episodes, seed=seed, gif=Path(run_dir) / "episode.gif",
                               on_episode=lambda done, _total: progress.update(bar, completed=done))
        finally:
            env.close()
        metrics = res.as_metrics()
        (Path(run_dir) / "eval.json").write_text(json.dumps({"task": task, **metrics}, indent=1))
        step = int(payload["step"])
        logger = MetricsLogger(run_dir, tensorboard=False)
        logger.log(step, metrics)
        logger.close()
        console.print(f"{task}: success {res.success_rate:.0%}, return {res.return_mean:.1f} ± {res.return_std:.1f} "
                      f"over {episodes} episodes")
    elif episodes > 0:
        console.print(f"no sim backend for '{task}': skipping evaluation")
    plot_curves(run_dir)
    write_report(run_dir, title or f"run {run_dir}", {**(extra or {}), "eval task": task, **metrics},
                 ["curves.png", "episode.gif"])
    return metrics
