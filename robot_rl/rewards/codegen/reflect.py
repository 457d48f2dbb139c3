"""Eureka-style reflection: what the next iteration's prompt is told about the last one.

For each candidate of the iteration: its scores (ground-truth success after training, label agreement), each
reward term's mean at the points of training where statistics were taken with its max / mean / min over training
(and over the offline dataset for IQL), success during training; for failed candidates the error text. Then the
best code so far with its scores, and advice on reading the numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

ADVICE = """\
How to read this and improve:
- If the success rate stays near zero, the reward does not lead to the task: rewrite it, starting from the term
  that should reward progress on the task itself.
- A term whose values hardly change during training is not being optimized (or cannot be): change its scale or
  shape (e.g. 1 - tanh(k * distance)), or drop it.
- A term much larger in magnitude than the others dominates the reward: scale it down.
- Fix every error quoted above; the same mistake costs a whole candidate again.
"""


def fmt(value: Any) -> str:
    """A number in 3 significant digits, ``-`` when missing or not finite."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "-"
    return f"{value:.3g}"


def scores_text(result: dict[str, Any]) -> str:
    parts = []
    if result.get("success_rate") is not None:
        parts.append(f"success {result['success_rate']:.0%} over {result.get('eval_episodes', '?')} eval episodes")
    if result.get("agreement") is not None:
        parts.append(f"label agreement {result['agreement']:.0%}")
    if result.get("distance") is not None:
        parts.append(f"distance {result['distance']:.2f} to the reference reward (0 same, 0.71 unrelated, 1 opposite)")
    return ", ".join(parts) or "no score"


def term_lines(points: Sequence[dict[str, Any]]) -> list[str]:
    """``name: [v1, v2, ...], max M, mean A, min m`` per term (``reward`` first), one point per value."""
    names: list[str] = []
    for p in points:
        names += [n for n in p["terms"] if n not in names]
    out = []
    for name in sorted(names, key=lambda n: n != "reward"):  # stable: components keep their order
        stats = [p["terms"][name] for p in points if name in p["terms"]]
        means = [s["mean"] for s in stats]
        overall_max = max(s["max"] for s in stats)
        overall_min = min(s["min"] for s in stats)
        out.append(f"  {name}: [{', '.join(fmt(m) for m in means)}], max {fmt(overall_max)}, "
                   f"mean {fmt(sum(means) / len(means))}, min {fmt(overall_min)}")
    return out


def candidate_feedback(result: dict[str, Any]) -> str:
    head = f"### {result['id']}"
    if result.get("status") != "ok":
        return f"{head}: FAILED ({result.get('status')}): {result.get('reason')}"
    lines = [f"{head}: {scores_text(result)}"]
    points = result.get("stats") or []
    if points:
        steps = ", ".join(str(p["step"]) for p in points)
        lines.append(f"  (terms: mean per step at training steps [{steps}], then max / mean / min over training)")
        lines += term_lines(points)
        during = [p.get("success") for p in points]
        if any(s is not None for s in during):
            lines.append(f"  success during training: [{', '.join(fmt(s) for s in during)}]")
    if result.get("dataset_stats"):
        terms = result["dataset_stats"]
        lines.append("  on the offline dataset: " + "; ".join(
            f"{n} mean {fmt(s['mean'])} (min {fmt(s['min'])}, max {fmt(s['max'])})" for n, s in terms.items()))
    return "\n".join(lines)


def feedback(iteration_results: Sequence[dict[str, Any]], best: dict[str, Any] | None) -> str:
    """The feedback section of the next prompt."""
    parts = [f"Results of the {len(iteration_results)} reward functions of the last iteration:"]
    parts += [candidate_feedback(r) for r in iteration_results]
    if best is not None and best.get("code"):
        parts.append(f"The best reward function so far ({best['id']}: {scores_text(best)}):\n\n```python\n"
                     f"{best['code'].rstrip()}\n```")
    parts.append(ADVICE)
    return "\n\n".join(parts)
