"""``robot-rl reward-search --check-reply FILE --dataset D.h5``: one LLM reply (markdown as the LLM returned it)
through exactly the search's path: ``generate.prepare_reply`` (extraction, normalization, the gate), then
``train.open_reward`` (the sandbox, with the search's limits) over every transition of the dataset
(``train.relabel_dataset``, as the iql trainer relabels it).

    result = check_reply(Path("reply.md").read_text(), "data/drawer.h5")
    result.accepted, result.reasons, result.stats["reward"]["mean"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

STAT_KEYS = ("mean", "std", "min", "max")


@dataclass
class ReplyCheck:
    accepted: bool
    reasons: list[str]
    """Every reason the reply was rejected (the gate's, or the sandbox's one), one line each."""
    notes: list[str]
    """What normalization changed."""
    code: str | None
    """The code that ran (normalized), when the gate accepted it."""
    transitions: int = 0
    per_sample: bool = False
    """The code was run row by row (written for one sample at a time)."""
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    """``reward`` and each component: mean, std, min, max over the dataset's transitions."""


def check_reply(reply: str, dataset: str, limits: dict[str, Any] | None = None) -> ReplyCheck:
    """Run ``reply`` on ``dataset``; never raises for a bad reply (only for an unreadable dataset)."""
    from robot_rl.data import Dataset
    from robot_rl.rewards.codegen.errors import RewardCodeError
    from robot_rl.rewards.codegen.generate import prepare_reply
    from robot_rl.rewards.codegen.train import open_reward, relabel_dataset

    prepared = prepare_reply(reply)
    if prepared.code is None:
        return ReplyCheck(False, prepared.reasons, prepared.notes, None)
    with Dataset(dataset) as ds:
        spec = ds.spec
    reward_fn = open_reward(prepared.code, spec, limits)
    try:
        t, components = relabel_dataset(dataset, spec, reward_fn)
    except RewardCodeError as e:
        return ReplyCheck(False, [f"in the sandbox: {e}"], prepared.notes, prepared.code)
    finally:
        reward_fn.close()
    stats = {name: _stats(values) for name, values in {"reward": t["rewards"], **components}.items()}
    return ReplyCheck(True, [], prepared.notes, prepared.code, len(t["rewards"]), bool(reward_fn.per_sample), stats)


def _stats(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return {k: float("nan") for k in STAT_KEYS}
    return {"mean": float(v.mean()), "std": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def format_check(result: ReplyCheck, name: str, dataset: str) -> str:
    """The text ``--check-reply`` prints."""
    lines = [f"{'accepted' if result.accepted else 'rejected'}: {name}"]
    if result.notes:
        lines.append("normalized:")
        lines += [f"  {n}" for n in result.notes]
    if not result.accepted:
        lines.append(f"{len(result.reasons)} reason{'s' if len(result.reasons) != 1 else ''}:")
        lines += [f"  {r}" for r in result.reasons]
        return "\n".join(lines)
    mode = "per sample, row by row" if result.per_sample else "batched"
    lines.append(f"reward over {result.transitions} transitions of {dataset} ({mode}):")
    width = max(len(k) for k in result.stats)
    lines.append(f"  {'term':<{width}}  " + "  ".join(f"{k:>10}" for k in STAT_KEYS))
    for term, s in result.stats.items():
        lines.append(f"  {term:<{width}}  " + "  ".join(f"{s[k]:>10.4g}" for k in STAT_KEYS))
    return "\n".join(lines)
