"""``robot-rl eval``: success rate and return of a trained policy in a sim task, with a GIF of one episode."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.help_text import command_help
from robot_rl.cli.progress import Progress


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--checkpoint", type=Path, required=True, help="run folder")
    p.add_argument("--task", default=None, help="sim task (default: the one the policy was trained on)")
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--num-envs", type=int, default=4)
    p.add_argument("--seed", type=int, default=10_000)


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    if args.num_envs < 1:
        raise ValueError(f"--num-envs must be >= 1, got {args.num_envs}")
    if args.task is not None:
        check_sim_task(args.task)
    console = Console(stderr=True)
    result = evaluate_run(args.checkpoint, args.task, args.episodes, console, num_envs=args.num_envs, seed=args.seed,
                          strict=True)
    print(json.dumps(result))
    return 0


def check_sim_task(task: str) -> None:
    """Raise ``ValueError`` (one line, the closest valid names) unless ``task`` is a sim task."""
    import difflib

    from robot_rl.envs import list_tasks

    tasks = list_tasks()
    if task not in tasks:
        close = difflib.get_close_matches(task, tasks, n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else f"valid tasks: {', '.join(tasks[:5])}, ..."
        raise ValueError(f"no sim task '{task}'; {hint}")


def eval_file_names(task: str, own_task: str) -> tuple[str, str]:
    """``(eval.json, episode.gif)`` for the task the run was trained on, else ``eval-<task>.json`` and
    ``episode-<task>.gif`` (``/`` in the task name becomes ``-``), so another task never overwrites the run's own."""
    if task == own_task:
        return "eval.json", "episode.gif"
    slug = task.replace("/", "-")
    return f"eval-{slug}.json", f"episode-{slug}.gif"


def evaluate_run(run_dir: Path, task: str | None, episodes: int, console: Console, num_envs: int = 4,
                 seed: int = 10_000, title: str | None = None, extra: dict[str, Any] | None = None,
                 strict: bool = False) -> dict[str, float]:
    """Evaluate the run's newest policy (when ``episodes`` > 0 and the task is a sim task), then write
    ``eval.json``, ``curves.png`` and ``report.md``. Returns the eval metrics.

    On a task other than the one the policy was trained on, writes only ``eval-<task>.json`` and
    ``episode-<task>.gif``: the run's own eval files, metrics log and report stay as they are. ``strict``
    (``robot-rl eval``) raises ``ValueError`` instead of skipping when there is nothing to evaluate."""
    from robot_rl.envs import list_tasks, make_env
    from robot_rl.nn.checkpoint import load_checkpoint
    from robot_rl.rl.evaluate import evaluate
    from robot_rl.rl.logger import MetricsLogger
    from robot_rl.rl.policy import policy_from_payload
    from robot_rl.rl.report import plot_curves, write_report

    payload, _ = load_checkpoint(run_dir)  # read once: the policy and the step it was saved at
    policy = policy_from_payload(payload)
    task = task or policy.spec.name
    if strict:
        if episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {episodes}")
        check_sim_task(task)
    own = task == policy.spec.name
    eval_name, gif_name = eval_file_names(task, policy.spec.name)
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
                res = evaluate(policy, env, episodes, seed=seed, gif=Path(run_dir) / gif_name,
                               on_episode=lambda done, _total: progress.update(bar, completed=done))
        finally:
            env.close()
        metrics = res.as_metrics()
        low, high = res.success_interval()
        ci = {} if math.isnan(low) else {"eval/success_ci95_low": low, "eval/success_ci95_high": high}
        (Path(run_dir) / eval_name).write_text(json.dumps({"task": task, **metrics, "eval/episodes": episodes, **ci},
                                                          indent=1))
        interval = f" (95% CI {low:.0%}-{high:.0%})" if ci else ""
        summary = (f"{task}: success {res.success_rate:.0%}{interval}, return {res.return_mean:.1f} ± "
                   f"{res.return_std:.1f} over {episodes} episodes")
        if not own:  # another task's numbers belong neither in the run's curves nor in its report
            console.print(f"{summary}; wrote {Path(run_dir) / eval_name} and {Path(run_dir) / gif_name} (the run was "
                          f"trained on {policy.spec.name})")
            return metrics
        step = int(payload["step"])
        logger = MetricsLogger(run_dir, tensorboard=False)
        logger.log(step, metrics)
        logger.close()
        console.print(summary)
    elif episodes > 0:
        console.print(f"no sim backend for '{task}': skipping evaluation")
    plot_curves(run_dir)
    write_report(run_dir, title or f"run {run_dir}", {**(extra or {}), "eval task": task, **metrics},
                 ["curves.png", "episode.gif"])
    return metrics
