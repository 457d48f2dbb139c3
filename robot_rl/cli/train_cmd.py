"""``robot-rl train``: offline IQL (or the BC baseline) from an HDF5 dataset into a run folder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.config_flags import add_config_file_flags, add_config_flags, build_config, config_dict
from robot_rl.cli.errors import UserError
from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress

RESUME_MAY_CHANGE = ("steps", "device", "threads")
"""TrainConfig fields a resumed run takes from the command line; any other given value must equal the run's."""
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
    from robot_rl.data import Dataset
    from robot_rl.nn.device import resolve_device
    from robot_rl.rl.train import TrainConfig, describe_path, train

    console = Console(stderr=True)
    cfg_dict = config_dict(args.config_flags, args)
    if args.resume:
        cfg_dict = resumed_config(args.out, cfg_dict)
    if "dataset" not in cfg_dict:
        raise ValueError("--dataset is required (or --resume a run folder)")
    cfg = build_config(TrainConfig, args.config_flags, args, "train", cfg_dict)
    device = resolve_device(cfg.device)
    check_output(args.out, "--out", "folder")
    with Dataset(cfg.dataset):  # a missing or unreadable dataset: its one line before anything is printed
        pass
    console.print(describe_path(cfg, device))
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


def resumed_config(out: Path, given: dict[str, Any]) -> dict[str, Any]:
    """The run's saved config (``OUT/config.yaml``) with ``RESUME_MAY_CHANGE`` from ``given``. Any other value in
    ``given`` (a flag, ``--config``, ``--set``) that differs from the run's is a one-line ``UserError`` naming both:
    a resumed run keeps its dataset, algorithm and hyperparameters."""
    import yaml

    from robot_rl.rl.train import TrainConfig

    path = out / "config.yaml"
    if not path.is_file():
        raise UserError(f"--resume: {out} holds no run to resume (no config.yaml); drop --resume to start one")
    try:
        saved = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"{path}: cannot read the run's config ({' '.join(str(e).split())})") from None
    if not isinstance(saved, dict):
        raise UserError(f"{path}: not a run config (a mapping of keys to values)")
    if "dataset" in given:
        given = {**given, "dataset": str(Path(given["dataset"]).resolve())}
    merged = _merge(saved, given)
    run, asked = TrainConfig.from_dict(saved).to_dict(), TrainConfig.from_dict(merged).to_dict()
    for key, theirs, ours in _differences(run, asked):
        if key.split(".")[0] in RESUME_MAY_CHANGE:
            continue
        flag = f"--{key.replace('_', '-')}" if key in TRAIN_FLAGS else key
        raise UserError(f"--resume: {flag} {ours} differs from the run's {theirs} ({path}); a resumed run keeps "
                        f"its config: drop {flag}, or train a new run into another --out")
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _differences(a: dict[str, Any], b: dict[str, Any], where: str = "") -> list[tuple[str, Any, Any]]:
    found: list[tuple[str, Any, Any]] = []
    for k in b:
        if isinstance(a.get(k), dict) and isinstance(b[k], dict):
            found += _differences(a[k], b[k], f"{where}{k}.")
        elif a.get(k) != b[k]:
            found.append((f"{where}{k}", a.get(k), b[k]))
    return found
