"""``robot-rl import``: import a dataset in a foreign format (robomimic:PATH, lerobot:PATH, minari:DATASET_ID)
into a new HDF5 dataset that relabel, label, train-reward and train read unchanged."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress_bar import episode_progress


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    """Register ``robot-rl <name>``."""
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("source", help="robomimic:FILE.hdf5, lerobot:DIRECTORY (codebase v2.1 or v3.0), or "
                                  "minari:DATASET_ID (from MINARI_DATASETS_PATH)")
    p.add_argument("--out", required=True, type=Path, help="new HDF5 dataset to write")
    p.add_argument("--obs-keys", default=None,
                   help="comma-separated observation keys that make the state, in this order (default: every "
                        "low-dimensional key, in name order)")
    p.add_argument("--task", default=None, help="task sentence (default: the source's own, where it has one)")
    p.add_argument("--image-size", default=None, help="HxW to resize camera frames to (LeRobot videos; default: "
                                                      "as stored)")
    p.add_argument("--image-compression", default="gzip", choices=("gzip", "lzf", "none"),
                   help="HDF5 compression of image frames (default: gzip)")


def run(args: argparse.Namespace) -> int:
    """Import; a bad source is a one-line ``InteropError``."""
    from robot_rl.data.interop import InteropError, import_source, parse_source

    scheme, _ = parse_source(args.source)  # a bad scheme fails before anything is created
    options: dict[str, object] = {
        "image_compression": None if args.image_compression == "none" else args.image_compression}
    if args.obs_keys:
        options["obs_keys"] = [k.strip() for k in args.obs_keys.split(",") if k.strip()]
    if args.task is not None:
        options["task_text"] = args.task
    if args.image_size:
        if scheme != "lerobot":
            raise InteropError(f"--image-size: applies to lerobot: sources (videos), not {scheme}:")
        options["image_size"] = _size(args.image_size)
    check_output(args.out, "--out", "file")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    with episode_progress(console, "import") as on_progress:
        report = import_source(args.source, str(args.out), on_progress=on_progress, **options)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    console.print(report.summary(), highlight=False, soft_wrap=True)
    console.print(f"Next: robot-rl inspect {args.out}", highlight=False)
    return 0


def _size(text: str) -> tuple[int, int]:
    from robot_rl.data.interop import InteropError

    h, sep, w = text.lower().partition("x")
    if not sep or not h.isdigit() or not w.isdigit() or int(h) < 1 or int(w) < 1:
        raise InteropError(f"--image-size {text!r}: expected HxW, e.g. 96x96")
    return int(h), int(w)
