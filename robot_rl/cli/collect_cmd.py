"""``robot-rl collect``: roll out scripted, noisy, random or mixed behaviours into an HDF5 dataset."""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress
from robot_rl.data.behaviours import NEEDS_EXPERT, PRESETS, resolve_preset
from robot_rl.envs.task_cards import default_camera

if TYPE_CHECKING:
    from robot_rl.core import EnvSpec


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--task", default="metaworld/drawer-open-v3", help="task name, e.g. metaworld/drawer-open-v3")
    p.add_argument("--episodes", type=int, default=20,
                   help="number of episodes to record (with --resume: in the file in total)")
    p.add_argument("--preset", default="suboptimal", choices=sorted(PRESETS),
                   help="behaviour mix (default: suboptimal, mostly failures with useful pieces)")
    p.add_argument("--noise", type=float, default=None,
                   help="Gaussian action-noise sigma of the expert behaviours (default: the preset's)")
    p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
    p.add_argument("--num-envs", type=int, default=1, help="environments stepped in one batch")
    p.add_argument("--seed", type=int, default=None,
                   help="env i is reset with SEED + i (default: 0; with --resume, the one after the file's seeds)")
    p.add_argument("--episode-length", type=int, default=None, help="default: the task card's")
    p.add_argument("--camera", default=None,
                   help="store images of this camera (default: the task card's, or the one --resume's dataset stores)")
    p.add_argument("--image-every", type=int, default=0,
                   help="store a rendered frame every k steps (0: none; frames can be rendered later from "
                        "the stored sim states)")
    p.add_argument("--image-size", type=int, default=128, help="square image size in pixels")
    p.add_argument("--resume", action="store_true",
                   help="continue an existing dataset up to --episodes in total, with new seeds")
    p.add_argument("--ray-address", default=None, metavar="ADDR|local",
                   help="roll out on Ray workers, the --num-envs env slots split among them (the same episodes as "
                        "one process); 'local' starts a local Ray, ADDR joins a cluster")
    p.add_argument("--ray-workers", type=int, default=None, metavar="N",
                   help="with --ray-address: workers (default: the cluster's CPUs, at most --num-envs)")


def run(args: argparse.Namespace) -> int:
    from robot_rl.data.collect import ImageOptions, collect
    from robot_rl.data.writer import DatasetWriter
    from robot_rl.envs import make_env

    if args.episodes < 1 or args.num_envs < 1:
        raise ValueError("--episodes and --num-envs must be at least 1")
    if args.image_every < 0:
        raise ValueError("--image-every must be >= 0")
    if args.ray_workers is not None and (args.ray_workers < 1 or not args.ray_address):
        raise ValueError("--ray-workers needs --ray-address and must be >= 1")
    if args.noise is not None and not (math.isfinite(args.noise) and args.noise >= 0):
        raise ValueError(f"--noise must be a finite number >= 0 (an action-noise sigma), got {args.noise}")
    preset = resolve_preset(args.preset)
    check_output(args.out, "--out", "file")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)

    def say(line: str) -> None:
        console.print(line, soft_wrap=True, markup=False, highlight=False)

    seed, todo = plan_resume(args.out, args.episodes, args.seed, args.num_envs, args.resume, say)
    if todo == 0:
        return 0
    if args.ray_address:
        from robot_rl.scale.collect import CollectJob, RayCollector

        env: Any = RayCollector(args.ray_address, CollectJob(args.task, args.preset, seed, args.noise,
                                                             args.episode_length), args.num_envs, args.ray_workers)
    else:
        env = make_env(args.task, num_envs=args.num_envs, episode_length=args.episode_length)
    expert = None
    if any(b.kind in NEEDS_EXPERT for b in preset):
        expert = _expert_for(args.task)
    images = None
    if args.image_every > 0:
        camera = collect_camera(args.camera, env.spec, args.out, args.resume)
        images = ImageOptions(camera, args.image_every, args.image_size, args.image_size)
    source = f"robot-rl collect --task {args.task} --preset {args.preset} --seed {seed}" + (
        f" --noise {args.noise}" if args.noise is not None else "")
    successes = 0
    start = time.time()
    columns = (TextColumn("[bold]collect"), BarColumn(), MofNCompleteColumn(), TextColumn("episodes"),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
               TextColumn("success {task.fields[succ]}"))
    try:
        with DatasetWriter(args.out, env.spec, source=source, resume=args.resume) as writer, \
                Progress(*columns, console=console, transient=False) as progress:
            bar = progress.add_task("collect", total=todo, rate="", succ="0")

            def on_episode(name: str, ep) -> None:
                nonlocal successes
                successes += int(ep.success)
                done = progress.tasks[bar].completed + 1
                steps_per_s = ep.states.shape[0] * done / max(time.time() - start, 1e-9)
                progress.update(bar, advance=1, rate=f"{steps_per_s:.0f} steps/s", succ=f"{successes}/{done}")

            if args.ray_address:
                env.collect(writer, todo, images, on_episode)
            else:
                collect(env, writer, todo, preset, expert=expert, seed=seed, noise=args.noise,
                        images=images, on_episode=on_episode)
    finally:
        env.close()
    console.print(f"wrote {todo} episodes to {args.out} "
                  f"({successes} successful, {time.time() - start:.1f} s). Next: robot-rl inspect {args.out}")
    return 0


def plan_resume(out: Path, episodes: int, seed: int | None, num_envs: int, resume: bool,
                say: Callable[[str], None]) -> tuple[int, int]:
    """(first env seed, episodes to record) for ``--out OUT --episodes N [--seed S] [--resume]``.

    A new file gets N episodes from seed S (default 0). ``--resume`` fills OUT up to N episodes in total, from
    the seed after the ones its episodes were recorded with (``data.collect.resume_seed``), and says so in one
    line (also when OUT has N already: then 0 episodes, nothing written). A 0-byte OUT (no dataset in it, no
    journal beside it) is started anew. Without ``--resume`` an existing OUT is a one-line error naming the flag.
    """
    from robot_rl.data import Dataset, DatasetError
    from robot_rl.data.collect import resume_seed
    from robot_rl.data.journal import journal_path

    if out.exists() and out.is_file() and out.stat().st_size == 0 and not os.path.exists(journal_path(str(out))):
        if not resume:
            raise ValueError(f"{out}: exists and is empty (0 bytes, no dataset); add --resume to start it anew, "
                         "or choose another --out")
        out.unlink()
        say(f"{out} was empty (0 bytes, no dataset): starting it anew")
    if not out.exists():
        return (0 if seed is None else seed), episodes
    if not resume:
        try:
            with Dataset(out) as ds:
                holds = f" with {ds.num_episodes} episodes"
        except DatasetError:
            holds = ""
        raise ValueError(f"{out}: exists{holds}; add --resume to continue it up to --episodes in total, "
                         "or choose another --out")
    with Dataset(out) as ds:
        have = ds.num_episodes
        stored = [ds.episode_seed(n) for n in ds.episode_names]
    if have >= episodes:
        say(f"{out} already has {have} episodes (--episodes {episodes} in total with --resume): nothing to add")
        return 0, 0
    try:
        first = resume_seed(stored, seed, num_envs)
    except ValueError as e:
        raise ValueError(f"{out}: --{e} (or omit --seed to continue after them)") from None
    say(f"{out} has {have} of {episodes} episodes: adding {episodes - have}, env seeds from {first}")
    return first, episodes - have


def collect_camera(camera: str | None, spec: EnvSpec, out: Path, resume: bool) -> str:
    """``--camera``, else the default camera (``envs.task_cards.default_camera``) over the cameras that the dataset
    being appended to (``--resume``) stores already."""
    if camera:
        return camera
    stored: list[str] = []
    if resume and out.exists():
        from robot_rl.data import Dataset
        from robot_rl.rl.image_data import stored_cameras

        with Dataset(out) as ds:
            stored = stored_cameras(ds)
    return default_camera(spec, stored)


def _expert_for(task: str):
    from robot_rl.envs import task_expert

    return task_expert(task)
