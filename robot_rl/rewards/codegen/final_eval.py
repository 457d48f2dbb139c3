"""Eureka's last step: the search's best reward trained again on several seeds, so that the reported success is
not one lucky run, and, where the offline dataset carries the simulator's reward, how well the code's rewards track
it (Pearson correlation per transition and of episode returns).

The runs are ``final`` lines in ``candidates.jsonl`` (one per seed, durable as they finish), so a resumed search
does not train them again; a later best reward gets its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.rewards.codegen.train import CandidateJob


def final_jobs(best: dict[str, Any], job: CandidateJob, seeds: int, done: set[int]) -> list[CandidateJob]:
    """``seeds`` copies of the best candidate's job, budget seeds ``budget.seed + 1 ... + seeds``, minus ``done``."""
    import dataclasses

    out = []
    for j in range(1, seeds + 1):
        seed = job.budget.seed + j
        if seed in done:
            continue
        budget = dataclasses.replace(job.budget, seed=seed)
        out.append(dataclasses.replace(job, id=f"final-{best['id']}-seed{seed}", budget=budget))
    return out


def summarize(best: dict[str, Any], runs: list[dict[str, Any]], truth: dict[str, float] | None) -> dict[str, Any]:
    """The final evaluation of ``best``: success per seed, mean and std, failed seeds, correlation with the truth."""
    ok = [r for r in runs if r.get("status") == "ok" and isinstance(r.get("success_rate"), int | float)]
    rates = [float(r["success_rate"]) for r in sorted(ok, key=lambda r: r["seed"])]
    return {"best": best["id"], "seeds": [r["seed"] for r in sorted(ok, key=lambda r: r["seed"])],
            "success_rates": rates, "success_mean": float(np.mean(rates)) if rates else None,
            "success_std": float(np.std(rates)) if rates else None,
            "failed_seeds": sorted(r["seed"] for r in runs if r not in ok),
            "search_success": best.get("success_rate"), **(truth or {})}


def truth_correlation(code: str, spec: EnvSpec, dataset: str | None, limits: dict[str, Any],
                      open_reward: Callable[..., Any]) -> dict[str, float] | None:
    """Pearson correlation of ``code``'s rewards (run in the sandbox over ``dataset``'s transitions) with the
    dataset's ``ground_truth`` label, per transition and of episode returns; None without a dataset or a truth."""
    if dataset is None:
        return None
    from robot_rl.data import GROUND_TRUTH, Dataset
    from robot_rl.rewards.codegen.train import relabel_dataset

    with Dataset(dataset) as ds:
        if GROUND_TRUTH not in ds.reward_label_ids():
            return None
        truth = ds.transitions(reward_key=GROUND_TRUTH)
    reward_fn = open_reward(code, spec, limits)
    try:
        t, _ = relabel_dataset(dataset, spec, reward_fn)
    finally:
        reward_fn.close()
    ours, true = t["rewards"].astype(np.float64), truth["rewards"].astype(np.float64)
    ep = truth["episode_index"]
    returns = np.bincount(ep, weights=ours), np.bincount(ep, weights=true)
    return {"truth_correlation": _pearson(ours, true), "truth_return_correlation": _pearson(*returns)}


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    keep = np.isfinite(x) & np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or x.std() < 1e-12 or y.std() < 1e-12:
        return math.nan
    return float(np.corrcoef(x, y)[0, 1])
