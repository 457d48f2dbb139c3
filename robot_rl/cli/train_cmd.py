"""``robot-rl train``: offline IQL (or the BC baseline) from an HDF5 dataset into a run folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.config_flags import add_config_file_flags, add_config_flags, config_dict
from robot_rl.cli.help_text import command_help

TRAIN_FLAGS = ("dataset", "algo", "steps", "seed", "device", "reward_key", "obs", "camera", "image_size")
"""TrainConfig fields with a flag; the rest through --config / --set."""


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from robot_rl.rl.algorithms import ALGORITHMS
    from robot_rl.rl.train import OBS_TYPES, TrainConfig

    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.set_defaults(config_flags=add_config_flags(p, TrainConfig, TRAIN_FLAGS,
                                                 choices={"algo": tuple(ALGORITHMS), "obs": OBS_TYPES}))
    add_config_file_flags(p, TrainConfig, "iql.temperature=10")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its newest checkpoint")
    p.add_argument("--eval-episodes", type=int, default=10, help="evaluate in the dataset's sim task (0: skip)")


def run(args: argparse.Namespace) -> int:
    from robot_rl.nn.device import resolve_device
    from robot_rl.rl.train import TrainConfig, describe_path, train

    console = Console(stderr=True)
    cfg_dict = config_dict(args.config_flags, args)
    if args.resume and "dataset" not in cfg_dict:
        import yaml

        saved = yaml.safe_load((args.out / "config.yaml").read_text()) if (args.out / "config.yaml").exists() else {}
        cfg_dict = {**saved, **cfg_dict}
    if "dataset" not in cfg_dict:
        raise ValueError("--dataset is required (or --resume a run folder)")
    try:
        cfg = TrainConfig.from_dict(cfg_dict)
    except TypeError as e:
        raise ValueError(f"bad config: {e}") from None
    console.print(describe_path(cfg, resolve_device(cfg.device)))
    start = time.time()
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
               TimeRemainingColumn(), TextColumn("{task.fields[loss]}"))
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task(f"train {cfg.algo}", total=cfg.steps, rate="", loss="")
        render_bar = None

        def on_render(done: int, total: int) -> None:  # image frames rendered from sim states at load time
            nonlocal render_bar, start
            if render_bar is None:
                render_bar = progress.add_task("render frames", total=total, rate="", loss="")
                start = time.time()
            rate = done / max(time.time() - start, 1e-9)
            progress.update(render_bar, completed=done, rate=f"{rate:.0f} frames/s")
            if done == total:  # the training bar's time and rate count training only
                start = time.time()
                progress.reset(bar)

        first: list[tuple[int, float]] = []  # (step, time) of the first log: a resumed run starts past 0

        def on_log(step: int, m: dict[str, float]) -> None:
            shown = ", ".join(f"{k} {m[k]:.3g}" for k in ("critic_loss", "actor_loss") if k in m)
            now = time.time()
            if not first:
                first.append((step - min(cfg.log_every, step), start))
            rate = (step - first[0][0]) / max(now - first[0][1], 1e-9)
            progress.update(bar, completed=step, rate=f"{rate:.0f} upd/s" if rate >= 10 else f"{rate:.2g} upd/s",
                            loss=shown)

        agent, data, last = train(cfg, args.out, resume=args.resume, on_log=on_log, on_render=on_render)
    console.print(f"trained {cfg.algo} for {cfg.steps} updates in {time.time() - start:.0f} s -> {args.out}")
    from robot_rl.cli.eval_cmd import evaluate_run

    evaluate_run(args.out, data.spec.name, args.eval_episodes, console, title=f"{cfg.algo.upper()} on {cfg.dataset}",
                 extra={"dataset": cfg.dataset, "algo": cfg.algo, "updates": cfg.steps,
                        "reward": cfg.reward_key, "reward scale": data.reward_scale,
                        **{k: v for k, v in last.items() if k != "step"}})
    return 0
