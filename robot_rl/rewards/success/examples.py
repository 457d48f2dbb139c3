"""Training examples of the success classifier (``classifier.py``): labeled observations of a dataset.

Training examples are observations (``state`` before step k of an episode, and/or the camera frame rendered from
its sim state), each labeled success (1) or not (0), from these sources:

- ``first``: the first ``first_frames`` observations of every episode are negatives (episodes start from a reset,
  not from a finished task; the one assumption made without a label).
- ``final``: the last ``final_frames`` observations of an episode whose outcome is *marked*: positives if it ended
  in success, negatives if not. Marks come from ``labels_from``:
  ``"dataset"`` (default): the episode's recorded success flag (``successes[-1]``, else attr ``success``) where a
  person or robot recorded it, i.e. episodes without sim states (a ROS recording with ``~/mark_success``, an
  import). In data recorded in a simulator that flag is the simulator's ground truth, which is used only with
  ``"ground_truth"`` (then recorded as such in the provenance). If no episode is marked successful, unmarked flags
  mean "not marked", not "failed", and are ignored. ``"none"``: no marks.
- ``labeler:<name>``: per-frame yes/no answers of a success labeler in the success label store
  (``<dataset>.success-labels.sqlite``): ``ScriptedSuccessTeacher`` (simulator ground truth with a mistake rate,
  sim only) or ``VLMSuccessLabeler`` (one image, one yes/no question, prompt ``prompts/success/success-v1.yaml``).
  They live in their own store file, not in the preference store, because ``train-reward`` reads every row of
  the store it is given as a preference pair.
- ``preference`` (opt-in, ``preference_negatives``): from the preference label store, the last frame of the segment
  that *lost* a strict preference is a down-weighted negative. The reasoning: had both segments ended in success
  the labeler should have answered "equal" or "can't tell". The winner is never used as a positive: "better than
  the other one" says nothing about "done". Measured noise of this rule where ground truth exists is in the
  metrics (``sources.preference.true_success_rate``).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.data import Dataset, Episode
from robot_rl.rewards.base import Query, Segment
from robot_rl.rewards.success.classifier import LABELS_FROM, SuccessConfig
from robot_rl.rewards.success.labels import (
    FAILURE,
    SUCCESS,
    SuccessError,
    default_success_store,
    end_mark,
    frame_truth,
    is_sim,
    one_step_segment,
)


@dataclass
class SuccessExamples:
    """Labeled observations: ``(episode, step)`` with label 0/1, weight, source and ground truth (NaN: unknown)."""

    episodes: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    truth: list[float] = field(default_factory=list)

    def add(self, episode: str, step: int, label: float, weight: float, source: str, truth: float) -> None:
        self.episodes.append(episode)
        self.steps.append(step)
        self.labels.append(label)
        self.weights.append(weight)
        self.sources.append(source)
        self.truth.append(truth)

    def __len__(self) -> int:
        return len(self.labels)


def collect_examples(ds: Dataset, config: SuccessConfig, labels_from: str = "dataset",
                     success_store: str | None = None, preference_store: str | None = None,
                     ) -> tuple[SuccessExamples, dict[str, Any]]:
    """The training examples of ``ds`` from every source the arguments enable (module docstring), and a record of
    what each source gave (its counts, notes), which becomes part of the classifier's provenance."""
    if labels_from not in LABELS_FROM:
        raise SuccessError(f"--labels-from must be one of {', '.join(LABELS_FROM)}, got '{labels_from}'")
    ex = SuccessExamples()
    record: dict[str, Any] = {"labels_from": labels_from, "notes": []}
    episodes = {n: ds.load_episode(n) for n in ds.episode_names}
    truths = {n: frame_truth(ep) for n, ep in episodes.items()}
    sim = any(is_sim(ep) for ep in episodes.values())
    for name, ep in episodes.items():
        for k in range(min(config.first_frames, ep.length)):
            ex.add(name, k, FAILURE, 1.0, "first", float(truths[name][k]))
    marks = _episode_marks(ds, episodes, labels_from, sim, record["notes"])
    for name, success in marks.items():
        ep = episodes[name]
        for k in range(max(ep.length - config.final_frames, 0), ep.length):
            ex.add(name, k, SUCCESS if success else FAILURE, 1.0, "final", float(truths[name][k]))
    record["marked_episodes"] = {"success": sum(marks.values()), "failure": len(marks) - sum(marks.values())}
    store_path = success_store or default_success_store(ds.path)
    record["success_store"] = os.path.abspath(store_path) if os.path.exists(store_path) else None
    if os.path.exists(store_path):
        _from_success_store(ds, store_path, episodes, truths, ex, record)
    if config.preference_negatives:
        _from_preferences(ds, preference_store, episodes, truths, config.preference_weight, ex, record)
    counts = Counter(zip(ex.sources, ex.labels, strict=True))
    record["sources"] = {src: {"positives": counts[(src, SUCCESS)], "negatives": counts[(src, FAILURE)],
                               **record.get("sources", {}).get(src, {})}
                         for src in dict.fromkeys(ex.sources)}
    for src, info in record["sources"].items():
        t = np.array([tr for s, tr in zip(ex.sources, ex.truth, strict=True) if s == src], np.float64)
        lab = np.array([lb for s, lb in zip(ex.sources, ex.labels, strict=True) if s == src], np.float64)
        known = np.isfinite(t)
        if known.any():
            info["agreement_with_truth"] = float(((t[known] > 0.5) == (lab[known] > 0.5)).mean())
            info["true_success_rate"] = float((t[known] > 0.5).mean())
    if SUCCESS not in ex.labels:
        raise SuccessError(f"{ds.path}: no positive (success) examples: label frames (robot-rl train-success "
                           "--labeler scripted|vlm), mark successful episodes, or, in simulation, pass "
                           "--labels-from ground_truth")
    if FAILURE not in ex.labels:
        raise SuccessError(f"{ds.path}: no negative examples (first_frames is 0 and no label says 'not done')")
    return ex, record


def _episode_marks(ds: Dataset, episodes: dict[str, Episode], labels_from: str, sim: bool,
                   notes: list[str]) -> dict[str, bool]:
    """Episode name -> ended in success, for the episodes whose outcome ``labels_from`` lets us use."""
    marks: dict[str, bool] = {}
    if labels_from == "ground_truth":
        if not sim or not any(ep.successes is not None for ep in episodes.values()):
            raise SuccessError(f"{ds.path}: --labels-from ground_truth needs data recorded in simulation with "
                               "per-step successes; this dataset has none")
        marks = {n: end_mark(ep) for n, ep in episodes.items()}
        notes.append("episode outcomes from the simulator's ground truth (--labels-from ground_truth)")
    elif labels_from == "dataset":
        if sim:
            notes.append("episode success flags are simulator ground truth: not used (pass --labels-from "
                         "ground_truth to use them)")
        else:
            marks = {n: end_mark(ep) for n, ep in episodes.items()}
            if not any(marks.values()):
                marks = {}
                notes.append("no episode is marked successful: success flags ignored")
    return marks


def _from_success_store(ds: Dataset, store_path: str, episodes: dict[str, Episode], truths: dict[str, np.ndarray],
                        ex: SuccessExamples, record: dict[str, Any]) -> None:
    from robot_rl.rewards.store import LabelStore

    with LabelStore(store_path) as store:
        rows = [r for r in store.labels(dataset=ds.path) if r.identity.get("query") == "success"]
    stats: dict[str, dict[str, int]] = {}
    identities: dict[str, dict[str, Any]] = {}
    for row in rows:
        s = stats.setdefault(row.labeler, {"stored": 0, "cant_tell": 0, "changed": 0})
        identities[row.labeler] = row.identity
        s["stored"] += 1
        ep = episodes.get(row.first.episode)
        k = row.first.start
        if ep is None or not 0 <= k < ep.length:
            s["changed"] += 1
            continue
        if not _digest_matches(row.digest, one_step_segment(row.first.episode, ep, k), ds.task_text):
            s["changed"] += 1
            continue
        if row.label.value is None:
            s["cant_tell"] += 1
            continue
        ex.add(row.first.episode, k, SUCCESS if row.label.value > 0.5 else FAILURE, 1.0, f"labeler:{row.labeler}",
               float(truths[row.first.episode][k]))
    record["labelers"] = identities
    record.setdefault("sources", {}).update({f"labeler:{k}": v for k, v in stats.items()})


def _digest_matches(digest: str, seg: Segment, task_text: str) -> bool:
    q = Query(seg, seg, task_text)
    return digest in (q.digest(False), q.digest(True))


def _from_preferences(ds: Dataset, store: str | None, episodes: dict[str, Episode], truths: dict[str, np.ndarray],
                      weight: float, ex: SuccessExamples, record: dict[str, Any]) -> None:
    from robot_rl.rewards.store import LabelStore, default_store_path

    path = store or default_store_path(ds.path)
    if not os.path.exists(path):
        raise SuccessError(f"{path}: no preference label store (preference negatives were asked for)")
    with LabelStore(path) as label_store:
        rows = [r for r in label_store.labels(dataset=ds.path) if r.identity.get("query") != "success"]
    used = 0
    for row in rows:
        if row.label.value not in (0.0, 1.0):
            continue
        loser = row.second if row.label.value == 0.0 else row.first
        ep = episodes.get(loser.episode)
        k = loser.start + loser.length - 1
        if ep is None or not 0 <= k < ep.length:
            continue
        ex.add(loser.episode, k, FAILURE, weight, "preference", float(truths[loser.episode][k]))
        used += 1
    record["preference_store"] = os.path.abspath(path)
    record.setdefault("sources", {})["preference"] = {"pairs": len(rows), "weight": weight}
