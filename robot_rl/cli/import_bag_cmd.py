"""``robot-rl import-bag``: import a ROS 2 recording (rosbag2 sqlite3/mcap directory, or a plain .mcap/.db3 file)
into an HDF5 dataset, as a topics spec says (example: configs/bag_topics.example.yaml)."""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output
from robot_rl.cli.progress import Progress


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    """Register ``robot-rl <name>``."""
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("bag", type=Path, help="rosbag2 directory, or a .mcap / .db3 file")
    p.add_argument("--spec", required=True, type=Path, help="topics spec (YAML; see configs/bag_topics.example.yaml)")
    p.add_argument("--out", required=True, type=Path, help="output HDF5 file")
    p.add_argument("--resume", action="store_true", help="append to an existing dataset of the same environment")
    p.add_argument("--image-compression", default="gzip", choices=("gzip", "lzf", "none"),
                   help="HDF5 compression of image frames (default: gzip; lzf is faster)")


def run(args: argparse.Namespace) -> int:
    """Import the bag; raises ``DatasetError`` (one line naming bag, topic and time) on bad input."""
    from robot_rl.data.bag_import import BagSpec, BagWarning, import_bag

    check_output(args.out, "--out", "file")
    spec = BagSpec.from_yaml(args.spec)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True)
    columns = (TextColumn("[bold]import-bag"), BarColumn(), MofNCompleteColumn(), TextColumn("messages"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with warnings.catch_warnings(record=True) as caught, Progress(*columns, console=console) as progress:
        warnings.simplefilter("always", BagWarning)
        bar = progress.add_task("read", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(bar, completed=done, total=total)

        report = import_bag(args.bag, spec, args.out, resume=args.resume, on_progress=on_progress,
                            image_compression=None if args.image_compression == "none" else args.image_compression)
    for w in caught:
        console.print(f"[yellow]warning:[/yellow] {w.message}", highlight=False)
    console.print(report.summary(), highlight=False)
    console.print(f"Next: robot-rl inspect {args.out}", highlight=False)
    return 0
