"""``robot-rl relabel``: write rewards from a reward model, CLIP, reward code or a success classifier into a dataset's
reward labels.

Crash-safe and resumable: a killed relabel leaves the dataset as it was; rerunning continues where it stopped.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress
from robot_rl.rewards.precision import PRECISIONS
from robot_rl.rewards.sources import source_help, source_names

if TYPE_CHECKING:
    from robot_rl.rewards.relabel import RelabelResult


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("dataset", type=Path,
                   help="HDF5 dataset (changed in place); or robomimic:FILE.hdf5 / minari:DATASET_ID, which keep their "
                        "own layout and gain reward_labels/<id> in every episode group")
    p.add_argument("--source", default=None, help=source_help(relabels=True))
    p.add_argument("--id", default=None, help="label id (default: reward_model, clip, code or success)")
    p.add_argument("--activate", action="store_true", help="also make these rewards the active ones")
    p.add_argument("--replace-rewards", action="store_true",
                   help="robomimic:/minari: also write the labels into the episodes' 'rewards' (what robomimic's and "
                        "Minari's loaders read), keeping the file's own as reward_labels/ground_truth")
    p.add_argument("--activate-label", default=None, metavar="ID",
                   help="only switch the active rewards to the stored label ID (e.g. ground_truth)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="reward-model and clip sources: inference math on the device (default: clip bf16, "
                        "reward-model tf32 on CUDA; fp32 on the CPU)")
    p.add_argument("--pessimism", type=float, default=None, metavar="K",
                   help="reward-model: ensemble mean - K x std over members (conservative; recorded, and used by "
                        "fine-tuning on these rewards)")
    p.add_argument("--ray-address", default=None, metavar="ADDR|local",
                   help="compute on Ray workers (episodes sharded; the same labels, one commit): 'local' starts a "
                        "local Ray, ADDR joins a cluster whose nodes see the dataset at the same path")
    p.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="with --ray-address: workers (default: the cluster's CPUs)")
    g = p.add_argument_group("clip")
    g.add_argument("--clip-model", default="ViT-B-32", help="open_clip architecture of the checkpoint")
    g.add_argument("--baseline", default=None, help="baseline prompt (VLM-RM projection), e.g. 'a robot arm'")
    g.add_argument("--alpha", type=float, default=0.5, help="VLM-RM projection strength (default 0.5)")
    g.add_argument("--camera", default=None)
    g.add_argument("--image-size", type=int, default=224)


def run(args: argparse.Namespace) -> int:
    from robot_rl.data import Dataset
    from robot_rl.nn.device import resolve_device
    from robot_rl.rewards.relabel import activate_label, make_rewarder, relabel
    from robot_rl.rewards.relabel_foreign import foreign_scheme

    console = Console(stderr=True)
    resolve_device(args.device)
    options = _source_options(args)
    if foreign_scheme(str(args.dataset)):
        return _run_foreign(args, options, console)
    if args.replace_rewards:
        raise ValueError("--replace-rewards applies to robomimic: and minari: datasets; a robot_rl dataset uses "
                         "--activate")
    if args.dataset.exists():  # relabel writes into the dataset
        check_output(args.dataset, "dataset", "file")
    if args.activate_label:
        if args.source:
            raise ValueError("use either --source (relabel) or --activate-label (switch only)")
        activate_label(str(args.dataset), args.activate_label)
        console.print(f"{args.dataset}: active rewards are now '{args.activate_label}'")
        return 0
    if args.ray_workers is not None and (args.ray_workers < 1 or not args.ray_address):
        raise ValueError("--ray-workers needs --ray-address and must be >= 1")
    with Dataset(args.dataset) as ds:
        rewarder = make_rewarder(args.source, ds, device=args.device, **options)
    try:
        with _progress(console) as on_progress:
            if args.ray_address:
                from robot_rl.scale.relabel import SourceSpec, relabel_on_ray

                result = relabel_on_ray(str(args.dataset), rewarder, SourceSpec(args.source, args.device, options),
                                        args.ray_address, label_id=args.id, activate=args.activate,
                                        workers=args.ray_workers, progress=on_progress)
            else:
                result = relabel(str(args.dataset), rewarder, label_id=args.id, activate=args.activate,
                                 progress=on_progress)
    finally:
        rewarder.close()
    _report(console, str(args.dataset), result, "now the active rewards")
    return 0


def _source_options(args: argparse.Namespace) -> dict[str, object]:
    """The reward source's options from the flags (checked against ``--source``)."""
    if args.activate_label:
        return {}
    if not args.source:
        raise ValueError(f"--source is required ({', '.join(source_names(relabels=True))})")
    options: dict[str, object] = {"model": args.clip_model, "baseline": args.baseline, "alpha": args.alpha,
                                  "camera": args.camera, "size": args.image_size} \
        if args.source.startswith("clip:") else {}
    if args.precision is not None:
        if not args.source.startswith(("clip:", "reward-model:")):
            raise ValueError("--precision applies to the reward-model and clip sources only")
        options["precision"] = args.precision
    if args.pessimism is not None:
        if not args.source.startswith("reward-model:"):
            raise ValueError("--pessimism applies to the reward-model source only")
        options["pessimism"] = args.pessimism
    return options


def _run_foreign(args: argparse.Namespace, options: dict[str, object], console: Console) -> int:
    """``relabel robomimic:FILE`` / ``minari:ID``: labels written into the file in its own layout."""
    from robot_rl.rewards.relabel import make_rewarder
    from robot_rl.rewards.relabel_foreign import relabel_foreign

    for flag, given in (("--activate-label", args.activate_label), ("--ray-address", args.ray_address)):
        if given:
            raise ValueError(f"{flag}: not for {args.dataset} (a foreign dataset relabeled in place); import it first")
    with _progress(console) as on_progress:
        result = relabel_foreign(str(args.dataset), lambda ds: make_rewarder(args.source, ds, device=args.device,
                                                                             **options),
                                 label_id=args.id, replace=args.replace_rewards or args.activate,
                                 progress=on_progress)
    _report(console, str(args.dataset), result, "now its 'rewards' (the file's own kept as "
                                                "reward_labels/ground_truth)")
    return 0


@contextmanager
def _progress(console: Console) -> Iterator[Callable[[str, int, int], None]]:
    columns = (TextColumn("[bold]relabel {task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("episodes"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=console) as progress:
        bars: dict[str, TaskID] = {}

        def on_progress(phase: str, done: int, total: int) -> None:
            if phase not in bars:
                bars[phase] = progress.add_task(phase, total=total)
            progress.update(bars[phase], completed=done)

        yield on_progress


def _report(console: Console, where: str, result: RelabelResult, activated: str) -> None:
    resumed = result.episodes - result.computed
    console.print(f"{where}: reward_labels/{result.label_id} written for {result.episodes} episodes "
                  f"(mean {result.mean:.3g}, std {result.std:.3g}"
                  f"{f'; {resumed} from an interrupted run' if resumed else ''})"
                  f"{f'; {activated}' if result.activated else ''}")
