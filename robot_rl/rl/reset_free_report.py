"""``report.md`` and ``reset_free.png`` of a reset-free run, from its ``summary.json`` and ``events.jsonl``.

Claimed successes (the success signal's) and true successes (ground truth, where the backend has it) are always
shown apart; without ground truth the true columns say "n/a".
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from robot_rl.rl.logger import read_jsonl

DIRECTIONS = ("forward", "backward")
EVENTS_FILE = "events.jsonl"
PLOT_FILE = "reset_free.png"


def read_events(run_dir: Path) -> list[dict[str, Any]]:
    """Rows of ``events.jsonl`` (a torn last line from a crash is skipped)."""
    return read_jsonl(Path(run_dir) / EVENTS_FILE)


def rolling_rates(attempts: list[dict[str, Any]], key: str, window: int = 10) -> list[tuple[int, float]]:
    """``(end step, fraction of the last ``window`` finished attempts with ``key`` true)``; attempts where ``key``
    is unknown (``None``: no ground truth) are skipped, so no claimed value stands in for a missing true one."""
    out: list[tuple[int, float]] = []
    recent: list[bool] = []
    for a in attempts:
        if a.get("ended_by") == "budget" or a.get(key) is None:
            continue
        recent = [*recent[-(window - 1):], bool(a[key])] if window > 1 else [bool(a[key])]
        out.append((int(a["end"]), sum(recent) / len(recent)))
    return out


def plot_run(run_dir: Path, window: int = 10) -> Path | None:
    """Three panels: attempt success over time per direction (claimed vs true), cumulative interventions, and
    success rate with resets (evaluation) per direction."""
    events = read_events(run_dir)
    if not events:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8), constrained_layout=True)
    colors = {"forward": "tab:blue", "backward": "tab:orange"}
    for d in DIRECTIONS:
        attempts = [e for e in events if e.get("type") == "attempt" and e.get("direction") == d]
        for key, style, label in (("claimed", "--", "claimed (signal)"), ("gt_end", "-", "true (ground truth)")):
            pts = rolling_rates(attempts, key, window)
            if pts:
                axes[0].plot(*zip(*pts, strict=True), style, color=colors[d], label=f"{d} {label}")
    axes[0].set(title=f"attempt success, last {window} attempts", xlabel="env step", ylim=(-0.05, 1.05))
    steps = [0] + [int(e["step"]) for e in events if e.get("type") == "intervention"]
    last = max([int(e.get("end", e.get("step", 0))) for e in events] + [0])
    axes[1].step([*steps, last], [*range(len(steps)), len(steps) - 1], where="post", color="tab:red")
    axes[1].set(title="interventions (cumulative)", xlabel="env step")
    evals = [e for e in events if e.get("type") == "eval"]
    for d in DIRECTIONS:
        pts = [(e["step"], e[d]) for e in evals if isinstance(e.get(d), int | float)]
        if pts:
            axes[2].plot(*zip(*pts, strict=True), "o-", color=colors[d], label=d)
    axes[2].set(title="success rate with resets (evaluation)", xlabel="env step", ylim=(-0.05, 1.05))
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    path = Path(run_dir) / PLOT_FILE
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if pct:
        return f"{v:.0%}"
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def write_report(run_dir: Path, title: str, facts: dict[str, Any] | None = None) -> Path:
    """``RUN_DIR/report.md`` (and the plot) from ``summary.json`` and ``events.jsonl``."""
    run_dir = Path(run_dir)
    s = json.loads((run_dir / "summary.json").read_text())
    m = s["metrics"]
    plot = plot_run(run_dir)
    lines = [f"# {title}", ""]
    for k, v in (facts or {}).items():
        lines.append(f"- {k}: {v}")
    hz = s.get("control_hz")
    lines += [
        f"- tasks: forward `{s['tasks'][0]}`, backward `{s['tasks'][1]}`; {s['steps']} env steps "
        f"({_fmt(s.get('robot_hours'))} h of robot time at {_fmt(hz)} Hz)",
        f"- success signals: forward `{s['signals'][0]}` (threshold {_fmt(s['thresholds'][0])}), backward "
        f"`{s['signals'][1]}` (threshold {_fmt(s['thresholds'][1])}); reward of a claimed success "
        f"{_fmt(s['success_reward'][0])} / {_fmt(s['success_reward'][1])}, else 0",
        f"- backend {'saves' if s['can_save_state'] else 'cannot save'} state"
        + ("" if any(s["has_ground_truth"]) else "; it has no ground truth, so true success rates are n/a "
           "(the signal's claims are never reported as true successes)"),
        "",
        "| | attempts | claimed success | true success | true success from an unsolved start | false claims "
        "| missed successes | signal accuracy (steps) | precision | recall | signal accuracy (attempts) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for d in DIRECTIONS:
        g = lambda k, d=d: m.get(f"{d}/{k}")  # noqa: E731
        lines.append(
            f"| {d} | {_fmt(g('attempts'))} | {_fmt(g('claimed_rate'), True)} | {_fmt(g('true_rate'), True)} "
            f"| {_fmt(g('true_rate_from_unsolved'), True)} | {_fmt(g('false_claims'))} | {_fmt(g('missed_successes'))} "
            f"| {_fmt(g('signal_step_accuracy'), True)} | {_fmt(g('signal_step_precision'), True)} "
            f"| {_fmt(g('signal_step_recall'), True)} | {_fmt(g('signal_attempt_accuracy'), True)} |")
    lines += [
        "",
        f"Interventions: {s['interventions']} ({_fmt(s.get('interventions_per_1k_steps'))} per 1,000 steps, "
        f"{_fmt(s.get('interventions_per_hour'))} per hour of robot time at {_fmt(hz)} Hz)"
        + (f"; the backend also reset itself {s['self_resets']} times (its episode limit)" if s.get("self_resets")
           else "") + ".",
        "",
    ]
    if any(f"{d}/claims_confirmed" in m for d in DIRECTIONS):  # a teacher checked the claims (--verify-claims)
        lines += ["Claims a teacher checked: " + "; ".join(
            f"{d} {_fmt(m.get(f'{d}/claims_confirmed'))} confirmed, {_fmt(m.get(f'{d}/claims_rejected'))} rejected "
            f"({_fmt(m.get(f'{d}/claims_held'))} more held back after a rejection, "
            f"{_fmt(m.get(f'{d}/claims_unverified'))} past the budget stood unchecked; "
            f"{_fmt(m.get(f'{d}/classifier_retrains'))} classifier retrains)" for d in DIRECTIONS) + ".", ""]
    before, after = s.get("eval_before"), s.get("eval_after")
    if before:
        lines += ["Success rate with resets (evaluation episodes, deterministic policy):", "",
                  "| | before | after |", "| --- | --- | --- |"]
        for d in DIRECTIONS:
            lines.append(f"| {d} | {_fmt(before.get(d), True)} | {_fmt((after or {}).get(d), True)} |")
        lines.append("")
    lines += ["Claimed = the success signal ended the attempt; true = ground truth at the attempt's end; a false "
              "claim is a claim that ground truth contradicts; signal accuracy (steps) compares the signal with "
              "ground truth after every step.", ""]
    if plot is not None:
        lines += [f"![reset-free run]({plot.name})", ""]
    path = run_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
