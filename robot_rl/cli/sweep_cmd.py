"""``robot-rl sweep``: a grid of train or pipeline jobs (tasks x seeds x reward sources, or any --set keys), each
in its own run folder, on Ray (--ray-address ADDR|local) or one after another; one table and plot of the results.

Resumable: rerun the same command and finished jobs are skipped, interrupted ones start again.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("--config", type=Path, required=True, help="sweep YAML (see configs/sweep.example.yaml)")
    p.add_argument("--out", type=Path, default=None, help="sweep folder (default: the config's out)")
    p.add_argument("--ray-address", default=None, metavar="ADDR|local",
                   help="run the jobs as Ray tasks: 'local' starts a local Ray, ADDR joins a running cluster "
                        "(default: the config's ray.address; none: one job after another)")


def run(args: argparse.Namespace) -> int:
    from robot_rl.scale.sweep import Job, read_sweep, run_sweep

    console = Console(stderr=True)
    cfg = read_sweep(args.config, args.ray_address, args.out)
    check_output(cfg.out, "--out", "folder")
    where = f"Ray at {cfg.ray_address}" if cfg.ray_address else "one after another"
    console.print(f"sweep: {len(cfg.jobs)} jobs of robot-rl {cfg.command} -> {cfg.out} ({where})",
                  markup=False, highlight=False, soft_wrap=True)

    def on_job(job: Job, record: dict[str, Any]) -> None:
        extra = f": {record['error']}" if record.get("error") else f" ({record['seconds']:.0f} s)"
        console.print(f"  {job.name}: {record['status']}{extra}", markup=False, highlight=False, soft_wrap=True)

    records = run_sweep(cfg, on_job)
    failed = [r for r in records if r["status"] == "failed"]
    console.print(f"wrote {cfg.out / 'results.md'}, results.csv and results.png "
                  f"({len(records) - len(failed)} of {len(records)} jobs done)",
                  markup=False, highlight=False, soft_wrap=True)
    if failed:
        console.print(f"robot-rl sweep: {len(failed)} job(s) failed: {', '.join(r['name'] for r in failed)}; "
                      "rerun the same command to retry them", markup=False, highlight=False, soft_wrap=True)
        return 1
    return 0
