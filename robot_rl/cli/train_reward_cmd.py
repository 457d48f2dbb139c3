"""``robot-rl train-reward``: fit a Bradley-Terry reward-model ensemble to a dataset's preference labels."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.config_flags import add_config_file_flags, add_config_flags, build_config
from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from robot_rl.rewards.model import RewardModelConfig

    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("dataset", type=Path, help="HDF5 dataset the labels were asked on")
    p.add_argument("--out", type=Path, required=True, help="run folder for reward_model.pt, metrics and plots")
    p.add_argument("--store", default=None, help="label store (default: DATASET.labels.sqlite)")
    p.add_argument("--labeler", default=None, help="use only this labeler's answers (scripted, vlm, human)")
    p.set_defaults(config_flags=add_config_flags(p, RewardModelConfig, ("obs", "steps")))
    p.add_argument("--camera", default=None,
                   help="image models: camera (default: the dataset's only stored camera, else the task card's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda[:i]")
    p.add_argument("--overwrite", action="store_true", help="replace a reward_model.pt already in --out")
    add_config_file_flags(p, RewardModelConfig, "hidden=[64,64]")


def run(args: argparse.Namespace) -> int:
    from robot_rl.data import Dataset
    from robot_rl.nn.device import resolve_device
    from robot_rl.rewards.jobs import check_reward_out, train_reward
    from robot_rl.rewards.model import RewardModelConfig

    console = Console(stderr=True)
    config = build_config(RewardModelConfig, args.config_flags, args, "reward-model")
    resolve_device(args.device)
    check_output(args.out, "--out", "folder")
    with Dataset(args.dataset):  # a missing or unreadable dataset is its own error, before the label store's
        pass
    check_reward_out(args.out, args.overwrite)  # before the progress bar: the refusal is the only output
    columns = (TextColumn("[bold]train reward"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("train", total=config.steps, info="")

        def on_log(step: int, m: dict[str, float]) -> None:
            progress.update(bar, completed=step, info=f"loss {m['loss']:.3f} acc {m['accuracy']:.2f}")

        metrics = train_reward(str(args.dataset), args.out, store=args.store, labeler=args.labeler, config=config,
                               device=args.device, camera=args.camera, progress=on_log,
                               overwrite=args.overwrite)
    console.print(summary(metrics))
    console.print(f"reward model in {args.out}. Next: robot-rl relabel {args.dataset} "
                  f"--source reward-model:{args.out} --activate")
    return 0


def summary(metrics: dict) -> str:
    """Three lines: held-out accuracy, agreement with ground truth, reward correlation; the training path."""
    def pct(key: str) -> str:
        v = metrics.get(key)
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.1%}"

    corr = metrics.get("correlation", {})
    c = corr.get("mean_episode")
    labels = metrics.get("labels", {})
    return (f"{labels.get('used', '?')} labeled pairs ({labels.get('cant_tell', 0)} can't tell left out): held-out "
            f"accuracy {pct('valid_accuracy')}, agreement with ground truth {pct('valid_true_agreement')}\n"
            f"correlation of learned and true reward along episodes: "
            f"{'n/a' if c is None or c != c else f'{c:.2f}'}\n"
            f"training path: {metrics.get('path', 'eager')}, {metrics.get('steps_per_s', float('nan')):.0f} steps/s")
