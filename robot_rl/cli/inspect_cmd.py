"""``robot-rl inspect``: summarize a dataset (table) and plot its returns and a filmstrip (PNG)."""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from robot_rl.cli.help_text import command_help


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help=command_help(__doc__), description=command_help(__doc__))
    p.add_argument("dataset", type=Path, help="HDF5 dataset")
    p.add_argument("--png", type=Path, default=None, help="where to write the plot (default: next to the dataset)")
    p.add_argument("--frames", type=int, default=8, help="frames in the filmstrip")
    p.add_argument("--no-plot", action="store_true", help="print the tables only")


def run(args: argparse.Namespace) -> int:
    from robot_rl.data.layout import SUCCESSES
    from robot_rl.data.reader import Dataset

    console = Console()
    with Dataset(args.dataset) as ds:
        if ds.num_episodes == 0:
            console.print(f"{ds.path}: 0 episodes ({ds.spec.name}), nothing to summarize; an interrupted "
                          "`robot-rl collect` leaves such a file: rerun it with --resume to fill it",
                          soft_wrap=True, markup=False, highlight=False)
            return 0
        summaries = ds.episode_summaries()
        behaviours = {name: str(ds.episode_attrs(name).get("behaviour", "unknown")) for name in ds.episode_names}
        described = ds.describe()
        # success is known where episodes store per-step successes or an episode was marked successful; else n/a
        has_success = any(key == SUCCESSES for key, _, _ in described) or any(s[3] for s in summaries)
        console.print(f"[bold]{ds.path}[/]  task [cyan]{ds.spec.name}[/]: \"{ds.task_text}\"")
        console.print(f"source: {ds.source}")
        for note in ds.notes:
            console.print(f"[yellow]note: {note}[/]", soft_wrap=True, highlight=False)
        warning = _nan_reward_warning(summaries, ds.reward_label_ids())
        if warning:
            console.print(f"[bold yellow]warning:[/] {warning}", soft_wrap=True, highlight=False)
        console.print(_summary_table(summaries, has_success))
        if not has_success:
            console.print("success: n/a (no episode stores per-step successes or a success mark)", highlight=False)
        console.print(_behaviour_table(summaries, behaviours, has_success))
        interventions = ds.intervention_counts()
        if interventions is not None:
            console.print(_intervention_table(interventions, {n: ds.episode_length(n) for n in interventions}))
        console.print(_keys_table(described))
        if not args.no_plot:
            png = args.png or args.dataset.with_suffix(".inspect.png")
            _plot(ds, summaries, png, args.frames, console, has_success)
            console.print(f"plot: {png}")
    return 0


def _intervention_table(counts: dict[str, int], lengths: dict[str, int]) -> Table:
    """Teleop interventions per episode (steps a person chose the action), for datasets recorded with them."""
    t = Table(title=f"interventions: {sum(counts.values())} steps in {sum(1 for c in counts.values() if c)} of "
                    f"{len(counts)} episodes")
    for col in ("episode", "intervened steps", "of steps"):
        t.add_column(col, justify="right")
    for name, count in counts.items():
        t.add_row(name, str(count), str(lengths[name]))
    return t


def _nan_reward_warning(summaries: list, label_ids: list[str]) -> str | None:
    """A warning when a labeled dataset (some finite rewards, or reward labels stored) has episodes whose rewards
    hold NaN or inf; ``None`` for a clean or a wholly unlabeled dataset."""
    bad = [name for name, _length, ret, _ in summaries if not np.isfinite(ret)]
    if not bad or (len(bad) == len(summaries) and not label_ids):
        return None
    return (f"{len(bad)} of {len(summaries)} episodes have NaN or inf rewards ({', '.join(bad[:5])}"
            f"{' ...' if len(bad) > 5 else ''}); train refuses them: relabel the dataset (robot-rl relabel) or "
            "switch the active rewards (robot-rl relabel --activate-label ID)")


def _success_text(success: np.ndarray, has_success: bool) -> str:
    return f"{success.mean():.0%} ({success.sum()}/{len(success)})" if has_success else "n/a"


def _summary_table(summaries: list, has_success: bool = True) -> Table:
    lengths = np.array([s[1] for s in summaries])
    returns = np.array([s[2] for s in summaries], dtype=np.float64)
    success = np.array([bool(s[3]) for s in summaries])
    t = Table(title="episodes", show_header=True)
    for col in ("episodes", "transitions", "length min/mean/max", "return mean ± std", "return min/max", "success"):
        t.add_column(col, justify="right")
    labeled = np.isfinite(returns)
    ret = (f"{returns[labeled].mean():.1f} ± {returns[labeled].std():.1f}" if labeled.any() else "unlabeled")
    rng = f"{returns[labeled].min():.1f} / {returns[labeled].max():.1f}" if labeled.any() else "-"
    t.add_row(str(len(summaries)), str(int(lengths.sum())),
              f"{lengths.min()} / {lengths.mean():.1f} / {lengths.max()}", ret, rng,
              _success_text(success, has_success))
    return t


def _behaviour_table(summaries: list, behaviours: dict[str, str], has_success: bool = True) -> Table:
    groups: dict[str, list] = defaultdict(list)
    for name, _length, ret, succ in summaries:
        groups[behaviours[name]].append((ret, succ))
    t = Table(title="by behaviour")
    for col in ("behaviour", "episodes", "success rate", "mean return"):
        t.add_column(col, justify="right")
    for kind, rows in sorted(groups.items()):
        rets = np.array([r for r, _ in rows], dtype=np.float64)
        t.add_row(kind, str(len(rows)), f"{np.mean([s for _, s in rows]):.0%}" if has_success else "n/a",
                  f"{np.nanmean(rets):.1f}" if np.isfinite(rets).any() else "-")
    return t


def _keys_table(described: list) -> Table:
    t = Table(title="keys (per episode)")
    for col in ("key", "dtype", "shape"):
        t.add_column(col)
    for key, dtype, shape in described:
        t.add_row(str(key), str(dtype), str(shape))
    return t


def _frames(ds, name: str, ep, count: int) -> tuple[np.ndarray | None, list[int], str]:
    """uint8 [F, H, W, 3] frames of one episode (of the default camera): stored images, else rendered from stored
    sim states at 160x160; the steps they show; how they were made."""
    from robot_rl.data import DatasetError
    from robot_rl.rl.image_data import DatasetFrames, dataset_camera

    try:
        camera = dataset_camera(ds)
    except DatasetError as e:
        return None, [], f"no frames: {e}"
    steps = np.unique(np.linspace(0, ep.length - 1, count).round().astype(int))
    stored = ep.images.get(camera)
    if stored is not None:
        steps = np.unique(np.minimum(steps // ep.image_every, len(stored) - 1)) * ep.image_every
        size, how = tuple(stored.shape[1:3]), f"stored images, camera '{camera}'"
    elif ep.sim_states is None:
        return None, [], f"camera '{camera}': no images and no sim states stored"
    else:
        size, how = (160, 160), f"rendered from stored sim states, camera '{camera}'"
    source = DatasetFrames(ds, camera, size, cache=False)
    try:
        frames = source.frames_at(name, steps, None if ep.sim_states is None else ep.sim_states[steps], ep)
    except ValueError as e:  # no sim backend for the task
        return None, [], f"cannot render: {e}"
    finally:
        source.close()
    return frames, [int(s) for s in steps], how


def _plot(ds, summaries: list, png: Path, count: int, console: Console, has_success: bool = True) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    returns = np.array([s[2] for s in summaries], dtype=np.float64)
    success = np.array([bool(s[3]) for s in summaries])
    # Filmstrip of the best episode (successful first, then highest return).
    best = max(summaries, key=lambda s: (bool(s[3]), np.nan_to_num(s[2], nan=-np.inf)))
    frames, steps, how = _frames(ds, best[0], ds.load_episode(best[0], images=True), count)
    ncols = max(len(steps), 1)
    fig = plt.figure(figsize=(max(2.0 * ncols, 8), 6.5), constrained_layout=True)
    grid = fig.add_gridspec(2, ncols, height_ratios=[1.4, 1])
    ax = fig.add_subplot(grid[0, :])
    finite = np.isfinite(returns)
    if finite.any() and has_success:
        bins = list(np.histogram_bin_edges(returns[finite], bins=min(30, max(5, len(returns) // 2))))
        ax.hist([returns[success & finite], returns[~success & finite]], bins=bins, stacked=True,
                color=["tab:green", "tab:gray"], label=[f"success ({success.sum()})", f"failure ({(~success).sum()})"])
        ax.legend()
    elif finite.any():
        ax.hist(returns[finite], bins=min(30, max(5, len(returns) // 2)), color="tab:blue")
    else:
        ax.text(0.5, 0.5, "no rewards (unlabeled dataset)", ha="center", transform=ax.transAxes)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("episode return")
    ax.set_ylabel("episodes")
    rate = f"{success.mean():.0%}" if has_success else "n/a"
    ax.set_title(f"{ds.spec.name}: \"{ds.task_text}\" — {len(summaries)} episodes, success {rate}")
    for j in range(ncols):
        fa = fig.add_subplot(grid[1, j])
        fa.axis("off")
        if frames is not None and j < len(frames):
            fa.imshow(frames[j])
            fa.set_title(f"t={steps[j]}", fontsize=9)
    if frames is None:
        fig.text(0.5, 0.2, how, ha="center")
    else:
        outcome = ("success" if best[3] else "failure") if has_success else "success n/a"
        fig.text(0.5, 0.01, f"{best[0]} (return {best[2]:.1f}, {outcome}): {how}",
                 ha="center", fontsize=9)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
