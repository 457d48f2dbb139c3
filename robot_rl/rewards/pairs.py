"""Preference pairs from a dataset: where segments lie, how pairs are chosen, and the queries built from them.

Selection (B-Pref / PEBBLE): ``uniform`` draws pairs at random; ``disagreement`` draws a pool of ``pool_factor``
times more pairs and keeps those whose reward-ensemble members disagree most (std of P(second better) across
members); ``entropy`` keeps those whose ensemble-mean P is closest to 1/2. Both need a trained reward model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from robot_rl.data import GROUND_TRUTH, Dataset, SegmentSampler
from robot_rl.rewards.base import Query, Segment, SegmentRef

Selection = Literal["uniform", "disagreement", "entropy"]
SELECTIONS: tuple[str, ...] = ("uniform", "disagreement", "entropy")

Pair = tuple[SegmentRef, SegmentRef]


def sample_pairs(ds: Dataset, count: int, length: int, selection: str = "uniform", model: Any = None,
                 seed: int = 0, pool_factor: int = 10, names: Sequence[str] | None = None) -> list[Pair]:
    """``count`` pairs of ``length``-step segments from ``ds`` (episodes ``names``, default all).

    Pairs whose two segments hold identical states are never returned (nothing to tell apart). ``model`` (a
    ``RewardModel``) is required for ``disagreement`` and ``entropy``. Same arguments, same pairs.
    """
    if selection not in SELECTIONS:
        raise ValueError(f"unknown pair selection '{selection}'; choose one of {', '.join(SELECTIONS)}")
    if count < 1:
        raise ValueError(f"number of pairs must be >= 1, got {count}")
    if selection != "uniform" and model is None:
        raise ValueError(f"pair selection '{selection}' needs a trained reward model (train one first, or use "
                         "'uniform')")
    sampler = SegmentSampler(ds, length, seed=seed, names=names)
    episode_names = sampler.names or []
    pool = count if selection == "uniform" else count * max(pool_factor, 1)
    first, second = sampler.sample_pairs(pool + max(8, pool // 10))  # spare pairs replace identical ones
    same = (first.states == second.states).flatten(1).all(1)
    keep = torch.nonzero(~same).flatten()
    if selection != "uniform":
        keep = keep[:pool]
        scores = _scores(model, selection, first.states[keep], first.actions[keep], second.states[keep],
                         second.actions[keep])
        keep = keep[torch.argsort(scores, descending=True, stable=True)]
    keep = keep[:count]
    return [(SegmentRef(episode_names[int(first.episode_index[i])], int(first.start[i]), length),
             SegmentRef(episode_names[int(second.episode_index[i])], int(second.start[i]), length))
            for i in keep.tolist()]


def _scores(model: Any, selection: str, s0: torch.Tensor, a0: torch.Tensor, s1: torch.Tensor,
            a1: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        probs = model.preference_probs(s0, a0, s1, a1).float().cpu()  # [E, P]
    if selection == "disagreement":
        return probs.std(0)
    p = probs.mean(0).clamp(1e-6, 1 - 1e-6)
    return -(p * p.log() + (1 - p) * (1 - p).log())


class SegmentLoader:
    """Reads segments of one dataset, caching whole episodes (a few hundred pairs touch the same episodes)."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.has_truth = GROUND_TRUTH in ds.reward_label_ids()
        self._episodes: dict[str, dict[str, np.ndarray | None]] = {}

    def segment(self, ref: SegmentRef) -> Segment:
        ep = self._episode(ref.episode)
        sl = slice(ref.start, ref.start + ref.length)
        states = ep["states"]
        assert states is not None
        if ref.start < 0 or ref.start + ref.length > len(states):
            raise ValueError(f"{self.ds.path}: episode {ref.episode}: segment [{ref.start}, {ref.start + ref.length})"
                             f" lies outside its {len(states)} steps")
        truth, sims, actions = ep["truth"], ep["sim_states"], ep["actions"]
        assert truth is not None and actions is not None
        return Segment(ref, states[sl], actions[sl], truth[sl], None if sims is None else sims[sl])

    def _episode(self, name: str) -> dict[str, np.ndarray | None]:
        if name not in self._episodes:
            ep = self.ds.load_episode(name)
            truth = ep.reward_labels[GROUND_TRUTH][0] if GROUND_TRUTH in ep.reward_labels \
                else np.full(ep.length, np.nan, np.float32)
            self._episodes[name] = {"states": ep.states, "actions": ep.actions, "truth": truth,
                                    "sim_states": ep.sim_states}
        return self._episodes[name]


def make_queries(ds: Dataset, pairs: Sequence[Pair], frames: Any = None) -> list[Query]:
    """Queries for ``pairs`` with the dataset's task sentence; ``frames`` (a ``FrameSource``) for image labelers."""
    loader = SegmentLoader(ds)
    return [Query(loader.segment(a), loader.segment(b), ds.task_text, frames) for a, b in pairs]
