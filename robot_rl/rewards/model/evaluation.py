"""How well a learned reward tracks the ground truth: Pearson correlation per episode and pooled, and a plot.

Works with anything that has ``reward(states, actions, frames=None) -> Tensor [T]`` (a ``RewardModel``). An
episode is ``(states [T, D], actions [T, A], true_rewards [T])``, or with ``frames`` uint8 ``[T, H, W, 3]`` as a
fourth item for image models. Steps whose true reward is NaN are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

Episode = tuple[Any, ...]
"""``(states, actions, true_rewards)`` or ``(states, actions, true_rewards, frames)``."""


class RewardFunction(Protocol):
    def reward(self, states: Any, actions: Any = None, frames: Any = None) -> torch.Tensor: ...


def _learned_and_true(model: RewardFunction, episode: Episode) -> tuple[np.ndarray, np.ndarray]:
    if len(episode) not in (3, 4):
        raise ValueError(f"an episode is (states, actions, true_rewards[, frames]), got {len(episode)} items")
    states, actions, truth = episode[:3]
    frames = episode[3] if len(episode) == 4 else None
    learned = model.reward(states, actions, frames).detach().float().cpu().numpy().reshape(-1)
    true = np.asarray(truth.detach().cpu() if isinstance(truth, torch.Tensor) else truth, np.float64).reshape(-1)
    if learned.shape != true.shape:
        raise ValueError(f"learned rewards have {learned.shape[0]} steps but true rewards {true.shape[0]}")
    keep = np.isfinite(true)
    return learned[keep].astype(np.float64), true[keep]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) < 2 or x.std() < 1e-12 or y.std() < 1e-12:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def reward_correlation(model: RewardFunction, episodes: Sequence[Episode]) -> dict[str, Any]:
    """Pearson correlation of learned vs true per-step reward.

    Returns ``mean_episode`` (mean over episodes where both vary), ``pooled`` (all steps of all episodes together),
    ``per_episode`` (NaN where undefined), ``episodes`` (how many entered the mean) and ``steps``.
    """
    per, xs, ys = [], [], []
    for ep in episodes:
        x, y = _learned_and_true(model, ep)
        per.append(_pearson(x, y))
        xs.append(x)
        ys.append(y)
    finite = [c for c in per if math.isfinite(c)]
    x_all = np.concatenate(xs) if xs else np.zeros(0)
    y_all = np.concatenate(ys) if ys else np.zeros(0)
    return {"mean_episode": float(np.mean(finite)) if finite else float("nan"), "pooled": _pearson(x_all, y_all),
            "per_episode": per, "episodes": len(finite), "steps": int(len(x_all))}


def _zscore(x: np.ndarray) -> np.ndarray:
    std = x.std()
    return (x - x.mean()) / std if std > 1e-12 else x - x.mean()


def plot_reward_vs_truth(model: RewardFunction, episodes: Sequence[Episode], path_png: str | Path,
                         names: Sequence[str] | None = None, max_episodes: int = 4) -> Path:
    """PNG of learned and true reward against the step for the first ``max_episodes`` episodes, both z-scored per
    episode (the learned reward is only defined up to scale and offset), with each episode's correlation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(episodes)[:max_episodes]
    if not shown:
        raise ValueError("plot_reward_vs_truth: no episodes to plot")
    labels = list(names) if names is not None else [f"episode {i}" for i in range(len(shown))]
    fig, axes = plt.subplots(len(shown), 1, figsize=(7.5, 2.2 * len(shown) + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax, ep, name in zip(axes[:, 0], shown, labels, strict=False):
        learned, true = _learned_and_true(model, ep)
        ax.plot(_zscore(true), label="true", color="black", linewidth=1.2)
        ax.plot(_zscore(learned), label="learned", color="tab:orange", linewidth=1.2)
        r = _pearson(learned, true)
        ax.set_title(f"{name}: r = {r:.3f}" if math.isfinite(r) else f"{name}: r undefined", fontsize=9)
        ax.set_ylabel("z-score")
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[-1, 0].set_xlabel("step (steps with a known true reward)")
    fig.suptitle("learned vs true reward (both z-scored per episode)", fontsize=10)
    path = Path(path_png)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
