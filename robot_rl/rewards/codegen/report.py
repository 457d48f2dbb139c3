"""``report.md`` and ``success_by_iteration.png`` of a reward search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.rewards.codegen.reflect import fmt

PLOT = "success_by_iteration.png"


def _by_iteration(records: Sequence[dict[str, Any]], key: str) -> dict[int, list[float]]:
    out: dict[int, list[float]] = {}
    for r in records:
        out.setdefault(r["iteration"], [])
        if r.get("status") == "ok" and isinstance(r.get(key), int | float):
            out[r["iteration"]].append(float(r[key]))
    return out


def plot(records: Sequence[dict[str, Any]], path: Path) -> bool:
    """Success (and label agreement) of every candidate by iteration, with the best so far; False if nothing to
    plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(k, label, color) for k, label, color in (("success_rate", "GT success", "tab:blue"),
                                                         ("agreement", "label agreement", "tab:orange"))
              if any(_by_iteration(records, k).values())]
    if not series:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for key, label, color in series:
        data = _by_iteration(records, key)
        its = sorted(data)
        for it in its:
            ax.scatter([it] * len(data[it]), data[it], color=color, alpha=0.5, s=22)
        best, running = [], -np.inf
        for it in its:
            running = max([running, *data[it]])
            best.append(running if np.isfinite(running) else np.nan)
        ax.plot(its, best, color=color, marker="o", label=f"{label}: best so far (dots: candidates)")
    failed = {it: sum(r.get("status") != "ok" for r in records if r["iteration"] == it)
              for it in {r["iteration"] for r in records}}
    for it, n in failed.items():
        if n:
            ax.annotate(f"{n} failed", (it, 0.0), textcoords="offset points", xytext=(0, -14), ha="center",
                        fontsize=8, color="tab:red")
    ax.set_xlabel("iteration")
    ax.set_ylabel("rate")
    ax.set_ylim(-0.12, 1.05)
    ax.set_xticks(sorted(failed))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("reward search: candidates by iteration")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _pct(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, int | float) and np.isfinite(value) else "-"


RANKINGS = {"labels": "label agreement", "distance": "distance to the reference reward label (nearest first)"}


def write_report(out: Path, records: Sequence[dict[str, Any]], best: dict[str, Any] | None, ranking: str,
                 spec: EnvSpec, final: dict[str, Any] | None = None) -> Path:
    """Write ``out/report.md`` (and the plot); returns the report's path."""
    has_plot = plot(records, out / PLOT)
    lines = [f"# Reward search: {spec.name}", "", f"Task: {spec.task_text or spec.name}. Ranking by "
             f"{RANKINGS.get(ranking, 'ground-truth success after training')}.", ""]
    if has_plot:
        lines += [f"![success by iteration]({PLOT})", ""]
    lines += ["| iteration | candidate | status | success | agreement | distance | eval return | seconds | reason |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in sorted(records, key=lambda r: (r["iteration"], r["index"])):
        reason = " ".join(str(r.get("reason") or "").split()).replace("|", "\\|")[:160]
        lines.append(f"| {r['iteration']} | {r['id']} | {r.get('status')} | {_pct(r.get('success_rate'))} | "
                     f"{_pct(r.get('agreement'))} | {fmt(r.get('distance'))} | {fmt(r.get('eval_return'))} | "
                     f"{fmt(r.get('seconds'))} | "
                     f"{reason} |")
    ok = sum(r.get("status") == "ok" for r in records)
    lines += ["", f"{len(records)} candidates, {ok} trained, {len(records) - ok} failed or rejected.", ""]
    if best is None:
        lines.append("No candidate has a score yet.")
    else:
        lines += [f"## Best: {best['id']} (iteration {best['iteration']})", "",
                  f"success {_pct(best.get('success_rate'))}, label agreement {_pct(best.get('agreement'))}, "
                  f"distance to the reference {fmt(best.get('distance'))}, "
                  f"model {best.get('model') or '?'}; `best_reward.py`, provenance in `best_reward.json`.", "",
                  "```python", best["code"].rstrip(), "```", ""]
    if final is not None:
        rates = ", ".join(f"{v:.0%}" for v in final["success_rates"]) or "none finished"
        mean = final.get("success_mean")
        lines += [f"## Final evaluation of {final['best']} on {len(final['success_rates'])} more seeds", "",
                  f"success {rates}: mean {_pct(mean)} ± {_pct(final.get('success_std'))} (in the search: "
                  f"{_pct(final.get('search_success'))})"
                  + (f"; seeds that failed: {final['failed_seeds']}" if final.get("failed_seeds") else "") + ".", ""]
        if "truth_correlation" in final:
            lines += [f"Correlation with the simulator's reward over the dataset: per step "
                      f"{fmt(final['truth_correlation'])}, of episode returns "
                      f"{fmt(final['truth_return_correlation'])}.", ""]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path
