"""``robot-rl export``: write an HDF5 dataset (relabeled or not) in a foreign format: robomimic:FILE.hdf5,
lerobot:DIRECTORY (codebase v3.0, rewards as next.reward, the label's provenance in meta/info.json, cameras as
video),
minari:DATASET_ID (into MINARI_DATASETS_PATH)."""

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
    p.add_argument("dataset", type=Path, help="HDF5 dataset to export")
    p.add_argument("--to", required=True, help="robomimic:FILE.hdf5, lerobot:DIRECTORY or minari:DATASET_ID")
    p.add_argument("--camera-format", default=None, choices=("video", "png"),
                   help="lerobot: cameras as MP4 video features (default; SVT-AV1 as LeRobot encodes them, lossy) "
                        "or PNG image features (lossless, larger)")


def run(args: argparse.Namespace) -> int:
    """Export; a bad destination is a one-line ``InteropError``."""
    from robot_rl.data.interop import InteropError, export_to, parse_source

    scheme, target = parse_source(args.to)
    if scheme in ("robomimic", "lerobot"):  # a file, a folder; minari writes under MINARI_DATASETS_PATH
        check_output(target, "--to", "file" if scheme == "robomimic" else "folder")
    options = {}
    if args.camera_format is not None:
        if scheme != "lerobot":
            raise InteropError(f"--camera-format: applies to lerobot: destinations, not {scheme}:")
        options["camera_format"] = args.camera_format
    console = Console(stderr=True)
    with episode_progress(console, "export") as on_progress:
        report = export_to(str(args.dataset), args.to, on_progress=on_progress, **options)
    for note in report.notes:
        console.print(f"[yellow]note:[/yellow] {note}", highlight=False, soft_wrap=True)
    console.print(report.summary(), highlight=False, soft_wrap=True)
    return 0
