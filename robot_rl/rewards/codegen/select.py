"""Selection without ground truth: how well a candidate reward agrees with preference labels on dataset segments,
and how far it is from a reference reward label of the dataset (a reward model trained on those labels, say).

For each labeled pair (from the label store: VLM, human or scripted teacher), the candidate's return of a segment
is the sum of its reward over the segment's steps (computed on the state after each step, as everywhere). The
agreement is the share of pairs labeled "first" or "second" (not "equal") where the segment with the higher sum
is the preferred one; a tie in the candidate's sums counts as half right. It needs no success signal, so the
search can rank candidates on real-robot data.

The distance (``reference_distance``) is the EPIC/STARC-style distance of ``rewards.distances`` between the
candidate's reward and the reference label over every transition of the dataset: 0 for the same reward up to
potential shaping and scale, ~0.71 unrelated, 1 opposite. A candidate that is constant (or pure shaping) there has
no distance.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from robot_rl.data import Dataset
from robot_rl.rewards.base import EQUAL

RewardFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, dict[str, np.ndarray]]]
"""``(states after the step [T, D], actions [T, A]) -> (reward [T], components)``: a sandbox."""


@dataclass(frozen=True)
class Preferences:
    """Labeled segment pairs of one dataset, as plain arrays (picklable: sent to candidate workers)."""

    dataset: str
    episodes: tuple[str, ...]
    """Names of the episodes the pairs touch."""
    first: np.ndarray
    """int64 ``[P, 3]``: (index into ``episodes``, start, length) of each pair's first segment."""
    second: np.ndarray
    labels: np.ndarray
    """float ``[P]``: 0 first preferred, 1 second preferred, 0.5 equal."""
    stats: dict[str, int]
    """What ``preference_data`` found: stored, used, can't tell, changed since labeled."""

    @property
    def decided(self) -> int:
        return int(np.sum(self.labels != EQUAL))


def load_preferences(dataset: str, store: str | None = None, labeler: str | None = None) -> Preferences:
    """The usable labels of ``dataset`` in ``store`` (default ``DATASET.labels.sqlite``), optionally one labeler's."""
    from robot_rl.rewards.jobs import preference_data

    data, pairs, stats = preference_data(dataset, store, labeler)
    names: dict[str, int] = {}
    rows: list[list[list[int]]] = []
    for a, b in pairs:
        rows.append([[names.setdefault(s.ref.episode, len(names)), s.ref.start, s.ref.length] for s in (a, b)])
    table = np.asarray(rows, dtype=np.int64).reshape(-1, 2, 3)
    labels = np.asarray(data.labels, dtype=np.float64)
    if not np.any(labels != EQUAL):
        raise ValueError(f"{dataset}: every stored label says 'equal'; label agreement needs decided pairs")
    return Preferences(os.path.abspath(dataset), tuple(names), table[:, 0], table[:, 1], labels, stats)


def episode_rewards(prefs: Preferences, reward_fn: RewardFn) -> list[np.ndarray]:
    """The candidate's reward ``[T]`` along every episode the pairs touch (one sandbox call per episode)."""
    out = []
    with Dataset(prefs.dataset) as ds:
        for name in prefs.episodes:
            ep = ds.load_episode(name)
            reward, _ = reward_fn(ep.next_states, ep.actions)
            out.append(np.asarray(reward, np.float64))
    return out


def agreement(prefs: Preferences, rewards: list[np.ndarray]) -> float:
    """Share of decided pairs whose preferred segment has the higher candidate return (ties count 1/2)."""
    def returns(table: np.ndarray) -> np.ndarray:
        return np.array([rewards[e][s:s + n].sum() for e, s, n in table])

    first, second = returns(prefs.first), returns(prefs.second)
    decided = prefs.labels != EQUAL
    if not decided.any():
        return float("nan")
    prefer_second = prefs.labels[decided] == 1.0
    diff = (second - first)[decided]
    right = np.where(diff == 0, 0.5, (diff > 0) == prefer_second)
    return float(right.mean())


def reference_distance(dataset: str, reference: str, reward_fn: RewardFn) -> float | None:
    """Distance of the candidate behind ``reward_fn`` to the dataset's reward label ``reference`` over all its
    transitions (``None``: the candidate is constant or pure shaping there)."""
    from robot_rl.rewards.distances import reward_distances

    with Dataset(dataset) as ds:
        data = ds.transitions(reward_key=reference)
    reward, _ = reward_fn(data["next_states"], data["actions"])
    reward = np.asarray(reward, np.float64)
    if not np.isfinite(reward).all():
        raise ValueError(f"the reward is not finite at transition {int(np.flatnonzero(~np.isfinite(reward))[0])} "
                         f"of {dataset}")
    result = reward_distances({"candidate": reward, reference: data["rewards"]}, data["states"],
                              data["next_states"], data["terminals"])
    if "candidate" in result.degenerate:
        return None
    if reference in result.degenerate:
        raise ValueError(f"{dataset}: reward label '{reference}' is constant or pure shaping: no distance to it")
    return float(result.matrix[0, 1])


def check_reference(dataset: str, reference: str) -> None:
    """One line when ``dataset`` has no reward label ``reference``."""
    with Dataset(dataset) as ds:
        labels = ds.reward_label_ids()
    if reference not in labels:
        raise ValueError(f"{dataset}: no reward label '{reference}' for --reference (labels: "
                         f"{', '.join(labels) or 'none; add one with robot-rl relabel'})")


def label_agreement(prefs: Preferences, reward_fn: RewardFn) -> float:
    """``agreement`` of the candidate behind ``reward_fn`` with the stored labels."""
    return agreement(prefs, episode_rewards(prefs, reward_fn))
