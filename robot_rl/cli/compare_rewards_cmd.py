"""``robot-rl compare-rewards``: EPIC/STARC-style distances between every pair of reward labels in a dataset
(learned, CLIP, code, ground truth), with shaping and scale removed over the dataset's transitions; a heat map."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from robot_rl.cli.help_text import command_help
from robot_rl.cli.outputs import check_output


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("dataset", type=Path, help="HDF5 dataset with reward labels (reward_labels/<id>)")
    p.add_argument("--labels", default=None,
                   help="comma-separated label ids to compare (default: every label, and the active rewards when "
                        "they equal none of them)")
    p.add_argument("--reference", default=None,
                   help="rank the others by distance to this label (default: ground_truth where present)")
    p.add_argument("--gamma", type=float, default=0.99, help="discount of the shaping terms (default: 0.99)")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for reward_distances.json and reward_distances.png (default: next to the dataset)")
    p.add_argument("--no-plot", action="store_true", help="print the table only")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from robot_rl.data.reader import Dataset
    from robot_rl.rewards.distances import DistanceConfig, reward_distances

    config = DistanceConfig(gamma=args.gamma)
    check_output(args.out or args.dataset.parent, "--out", "folder")
    with Dataset(args.dataset) as ds:
        available = ds.reward_label_ids()
        wanted = [x.strip() for x in args.labels.split(",") if x.strip()] if args.labels else list(available)
        unknown = [x for x in wanted if x not in available and x != "rewards"]
        if unknown:
            known = ", ".join(available) or "none"
            raise ValueError(f"{args.dataset}: no reward label '{unknown[0]}' (labels: {known})")
        base = ds.transitions()
        rewards = {name: ds.transitions(reward_key=name)["rewards"] for name in wanted if name != "rewards"}
        active = base["rewards"]
        if (args.labels is None or "rewards" in wanted) and np.isfinite(active).all() and not any(
                np.array_equal(active, r) for r in rewards.values()):
            rewards["rewards (active)"] = active
    if len(rewards) < 2:
        raise ValueError(f"{args.dataset}: {len(rewards)} reward label(s) ({', '.join(rewards) or 'none'}); "
                         "need two to compare (add some with robot-rl relabel)")
    result = reward_distances(rewards, base["states"], base["next_states"], base["terminals"], config)
    reference = args.reference or ("ground_truth" if "ground_truth" in result.names else None)
    if reference is not None and reference not in result.names:
        raise ValueError(f"--reference {reference}: not among the compared labels ({', '.join(result.names)})")
    console = Console()
    table = Table(title=f"reward distances on {result.transitions} transitions (0: same up to shaping and scale, "
                        "0.71: unrelated, 1: opposite)")
    table.add_column("")
    for name in result.names:
        table.add_column(name, justify="right")
    for i, name in enumerate(result.names):
        table.add_row(name, *("n/a" if np.isnan(x) else f"{x:.3f}" for x in result.matrix[i]))
    console.print(table)
    if result.degenerate:
        console.print(f"[yellow]warning:[/yellow] {', '.join(result.degenerate)}: (almost) pure shaping or constant "
                      "on this dataset; no distance", highlight=False)
    out = args.out or args.dataset.parent
    out.mkdir(parents=True, exist_ok=True)
    report = result.to_json() | {"dataset": str(args.dataset), "gamma": args.gamma, "reference": reference}
    if reference is not None:
        report["ranking"] = result.ranking(reference)
        console.print(f"nearest to {reference}: " + ", ".join(f"{n} {d:.3f}" for n, d in result.ranking(reference)),
                      highlight=False)
    stem = args.dataset.stem
    (out / f"{stem}.reward_distances.json").write_text(json.dumps(report, indent=2))
    if not args.no_plot:
        _plot(result.names, result.matrix, out / f"{stem}.reward_distances.png", args.dataset.name)
        console.print(f"wrote {out / f'{stem}.reward_distances.png'} and .json", highlight=False)
    return 0


def _plot(names: list[str], matrix: object, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    m = np.asarray(matrix)
    size = 1.2 + 0.7 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(m, vmin=0, vmax=1, cmap="viridis_r")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(names)):
            text = "n/a" if np.isnan(m[i, j]) else f"{m[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="white" if m[i, j] > 0.5 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, label="distance (shaping and scale removed)")
    ax.set_title(f"reward distances: {title}")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
