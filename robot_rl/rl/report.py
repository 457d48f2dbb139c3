"""Plots and ``report.md`` of a run folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from robot_rl.rl.logger import read_metrics

_CURVES = (("critic_loss", "value_loss"), ("actor_loss",), ("q_mean", "v_mean"), ("eval/success_rate",))


def plot_curves(run_dir: Path) -> Path | None:
    """``RUN_DIR/curves.png``: losses, values and eval success against the update step."""
    rows = read_metrics(run_dir)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [names for names in _CURVES if any(n in r for r in rows for n in names)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), constrained_layout=True, squeeze=False)
    for ax, names in zip(axes[0], panels, strict=True):
        for name in names:
            pts = [(r["step"], r[name]) for r in rows
                   if isinstance(r.get(name), int | float) and math.isfinite(r[name])]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o" if name.startswith("eval/") else None, label=name)
        ax.set_xlabel("update")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    path = Path(run_dir) / "curves.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_report(run_dir: Path, title: str, facts: dict[str, Any], images: list[str]) -> Path:
    """``RUN_DIR/report.md``: a facts table and the run's images."""
    lines = [f"# {title}", "", "| | |", "| --- | --- |"]
    for k, v in facts.items():
        text = f"{v:.4g}" if isinstance(v, float) else str(v)
        lines.append(f"| {k} | {text.replace('|', '/')} |")
    lines.append("")
    for img in images:
        if (Path(run_dir) / img).exists():
            lines += [f"![{img}]({img})", ""]
    path = Path(run_dir) / "report.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
