"""``robot-rl label``: ask a labeler (scripted teacher, VLM, or you) which of two dataset segments is better.

Answers go to a label store (SQLite, default ``FILE.h5.labels.sqlite``) keyed by content: rerunning, or resuming
after a crash, asks only what is not stored yet.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.help_text import command_help
from robot_rl.cli.progress import Progress
from robot_rl.rewards.base import Labeler
from robot_rl.rewards.labelers import LABELERS


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("dataset", type=Path, help="HDF5 dataset")
    p.add_argument("--pairs", type=int, default=500, help="pairs to label (default 500)")
    p.add_argument("--segment-length", type=int, default=None,
                   help="steps per segment (default: 50 for scripted/human, 1 for vlm: single frames, as RL-VLM-F)")
    task = p.add_mutually_exclusive_group()
    task.add_argument("--task", default=None, metavar="NAME",
                      help="task name as everywhere else, e.g. metaworld/drawer-open-v3: its sentence comes from the "
                           "task card sim/tasks/<task>.yaml (default: the dataset's task sentence)")
    task.add_argument("--task-text", default=None, metavar="SENTENCE",
                      help="a custom task sentence for the labeler, e.g. 'open the drawer halfway'; train-reward "
                           "uses only labels asked for the dataset's own sentence")
    p.add_argument("--selection", choices=("uniform", "disagreement", "entropy"), default="uniform",
                   help="how pairs are chosen; disagreement/entropy need --reward-model")
    p.add_argument("--reward-model", default=None, help="run folder of a trained reward model (active selection)")
    p.add_argument("--store", default=None, help="label store (default: DATASET.labels.sqlite)")
    p.add_argument("--seed", type=int, default=0)
    add_labeler_flags(p)
    g = p.add_argument_group("vlm on Ray")
    g.add_argument("--ray-address", default=None, metavar="ADDR|local",
                   help="ask the VLM from Ray workers (frames read or rendered there; answers stored here, once): "
                        "'local' starts a local Ray, ADDR joins a cluster whose nodes see the dataset and store")
    g.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="with --ray-address: workers (default: the cluster's CPUs)")


def add_labeler_flags(p: argparse.ArgumentParser) -> None:
    """``--labeler`` and the options of each labeler (teacher noise, VLM endpoint, frames): ``robot-rl label`` and
    ``robot-rl finetune --online-labels`` take the same ones (``labeler_from_args`` builds the labeler)."""
    p.add_argument("--labeler", choices=tuple(LABELERS), default="scripted",
                   help="scripted: B-Pref teacher from the sim's ground truth (default); vlm: a vision-language "
                        "model behind an OpenAI-compatible endpoint; human: a page on 127.0.0.1")
    g = p.add_argument_group("scripted teacher (B-Pref noise models)")
    g.add_argument("--rationality", type=float, default=math.inf, help="beta (default inf: perfectly rational)")
    g.add_argument("--myopia", type=float, default=1.0, help="gamma in (0, 1] (default 1)")
    g.add_argument("--mistake", type=float, default=0.0, help="probability of a flipped label (default 0)")
    g.add_argument("--skip-threshold", type=float, default=None, help="can't tell when both returns are below")
    g.add_argument("--equal-threshold", type=float, default=0.0, help="equal when returns differ by less")
    g = p.add_argument_group("vlm")
    g.add_argument("--vlm-url", default=None, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    g.add_argument("--model", default=None, help="model name as the server knows it")
    g.add_argument("--api-key-env", default="OPENAI_API_KEY", help="environment variable holding the API key")
    g.add_argument("--concurrency", type=int, default=4,
                   help="queries in flight at once (over all Ray workers with label --ray-address)")
    g.add_argument("--requests-per-minute", type=float, default=None, metavar="N",
                   help="at most N requests a minute, evenly spaced (over all Ray workers with label --ray-address; "
                        "default: no limit)")
    g.add_argument("--prompt-version", default="rl-vlm-f-v1")
    g = p.add_argument_group("frames (vlm, human)")
    g.add_argument("--camera", default=None, help="camera to show (default: the task's first)")
    g.add_argument("--image-size", type=int, default=224, help="square frame size in pixels (default 224)")
    g.add_argument("--port", type=int, default=0, help="human: port of the page on 127.0.0.1 (default: any free)")


def labeler_options(args: argparse.Namespace, dataset: Path | str, store: str) -> tuple[dict[str, Any], str | None]:
    """``make_labeler``'s options from ``add_labeler_flags``' flags (teacher seed: ``args.seed``), and the camera of a
    VLM's frames; ``dataset`` gives that camera's default, ``store`` (the label store) the place of the VLM client's
    response cache."""
    teacher = {"rationality": args.rationality, "myopia": args.myopia, "mistake": args.mistake,
               "skip_threshold": args.skip_threshold, "equal_threshold": args.equal_threshold, "seed": args.seed}
    frames_identity = None
    camera = args.camera
    if args.labeler == "vlm":
        from robot_rl.data import Dataset
        from robot_rl.rl.image_data import dataset_camera

        with Dataset(dataset) as ds:
            camera = dataset_camera(ds, args.camera) if args.camera or ds.spec.cameras else None
        frames_identity = {"camera": camera, "size": [args.image_size, args.image_size]}
    return {"teacher": teacher, "port": args.port, "vlm_url": args.vlm_url, "model": args.model,
            "api_key_env": args.api_key_env, "concurrency": args.concurrency, "prompt_version": args.prompt_version,
            "frames_identity": frames_identity, "requests_per_minute": args.requests_per_minute,
            "cache_path": os.path.abspath(store) + ".llm-cache"}, camera


def labeler_from_args(args: argparse.Namespace, dataset: Path | str, store: str) -> Labeler:
    """The labeler of ``add_labeler_flags``' flags (see ``labeler_options``)."""
    from robot_rl.rewards.jobs import make_labeler

    return make_labeler(args.labeler, **labeler_options(args, dataset, store)[0])


def run(args: argparse.Namespace) -> int:
    from robot_rl.rewards.base import LABEL_NAMES
    from robot_rl.rewards.jobs import label_dataset, make_labeler
    from robot_rl.rewards.store import default_store_path

    console = Console(stderr=True)
    if args.pairs < 1:
        raise ValueError("--pairs must be at least 1")
    if args.segment_length is not None and args.segment_length < 1:
        raise ValueError(f"--segment-length must be >= 1 step, got {args.segment_length}")
    length = args.segment_length or (1 if args.labeler == "vlm" else 50)
    task_text = args.task_text
    if args.task is not None:
        from robot_rl.envs.task_cards import task_sentence

        task_text = task_sentence(args.task)
    if task_text is not None and not task_text.strip():
        raise ValueError("--task-text must be a non-empty sentence")
    if args.ray_workers is not None and (args.ray_workers < 1 or not args.ray_address):
        raise ValueError("--ray-workers needs --ray-address and must be >= 1")
    if args.ray_address and args.labeler != "vlm":
        raise ValueError(f"--ray-address: spreads VLM queries (--labeler vlm); the {args.labeler} labeler runs here")
    options, camera = labeler_options(args, args.dataset, args.store or default_store_path(str(args.dataset)))
    labeler = make_labeler(args.labeler, **options)
    if args.ray_address:
        from robot_rl.scale.label import RayVLMLabeler

        vlm_options = {k: v for k, v in options.items() if k not in ("teacher", "port")}
        labeler = RayVLMLabeler(labeler, os.path.abspath(args.dataset), vlm_options, camera, args.image_size,
                                args.ray_address, args.ray_workers)
    counts: dict[str, int] = {}
    columns = (TextColumn(f"[bold]label ({args.labeler})"), BarColumn(), MofNCompleteColumn(), TextColumn("pairs"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[counts]}"))
    with Progress(*columns, console=console) as progress:
        bar = progress.add_task("label", total=args.pairs, counts="")

        def on_label(done: int, total: int, label) -> None:  # noqa: ANN001 - a Label
            name = LABEL_NAMES[label.value]
            counts[name] = counts.get(name, 0) + 1
            progress.update(bar, completed=done, total=total, counts=" ".join(f"{k} {v}" for k, v in counts.items()))

        job = label_dataset(str(args.dataset), labeler, args.pairs, length, selection=args.selection,
                            reward_model=args.reward_model, seed=args.seed, store=args.store, camera=args.camera,
                            image_size=args.image_size, task_text=task_text, progress=on_label)
    r = job.result
    acc = "" if math.isnan(job.accuracy) else f"; agreement with ground truth {job.accuracy:.1%} of {job.decided}"
    console.print(f"{len(r.labels)} pairs: {r.asked} asked now, {r.reused} from the store, {r.cant_tell} can't tell"
                  f"{acc}\nlabels in {job.store}. Next: robot-rl train-reward {args.dataset} --out runs/reward")
    usage = getattr(getattr(labeler, "client", None), "usage", None)
    if usage is not None:
        console.print(f"VLM: {usage.requests} requests, {usage.total_tokens} tokens")
    elif isinstance(getattr(labeler, "usage", None), dict):  # on Ray: the workers' clients, summed
        use = getattr(labeler, "usage")  # noqa: B009 - not on the Labeler protocol
        console.print(f"VLM: {use.get('requests', 0)} requests, "
                      f"{use.get('prompt_tokens', 0) + use.get('completion_tokens', 0)} tokens")
    return 0
