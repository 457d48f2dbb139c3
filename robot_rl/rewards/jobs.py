"""The labeling and reward-training jobs behind ``robot-rl label``, ``robot-rl train-reward`` and the pipeline.

Labelers by name: ``robot_rl.rewards.labelers`` (``LABELERS``, ``make_labeler``, re-exported here)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from robot_rl.data import Dataset, DatasetError
from robot_rl.rewards.base import EQUAL, Label, Labeler, Query, Segment
from robot_rl.rewards.labelers import LABELERS as LABELERS  # re-exported: the names callers know
from robot_rl.rewards.labelers import make_labeler as make_labeler
from robot_rl.rewards.labeling import LabelingResult, Progress, label_queries
from robot_rl.rewards.pairs import SegmentLoader, make_queries, sample_pairs
from robot_rl.rewards.store import LabelStore, default_store_path

MODEL_FILE = "reward_model.pt"
REWARD_CONFIG_FILE = "reward_config.yaml"
METRICS_FILE = "reward_metrics.json"


@dataclass
class LabelJob:
    """What ``label_dataset`` did."""

    store: str
    result: LabelingResult
    queries: list[Query]
    accuracy: float
    """Share of decided labels (not equal, not can't-tell) that agree with the ground-truth returns (NaN without
    ground truth)."""
    decided: int


def label_dataset(dataset: str, labeler: Labeler, pairs: int, segment_length: int, *, selection: str = "uniform",
                  reward_model: str | None = None, seed: int = 0, store: str | None = None,
                  camera: str | None = None, image_size: int = 224, task_text: str | None = None,
                  progress: Progress | None = None) -> LabelJob:
    """Draw ``pairs`` segment pairs from ``dataset`` and have ``labeler`` answer them through the label store
    (default ``<dataset>.labels.sqlite``): answers stored before are reused, new ones stored as they arrive."""
    store_path = store or default_store_path(dataset)
    model = None
    if reward_model is not None:
        from robot_rl.rewards.model import RewardModel

        model = RewardModel.load(_model_path(reward_model))
    frames = None
    with Dataset(dataset) as ds:
        refs = sample_pairs(ds, pairs, segment_length, selection=selection, model=model, seed=seed)
        if labeler.uses_images:
            from robot_rl.rewards.frames import FrameSource

            frames = FrameSource(ds, camera, (image_size, image_size))
        queries = make_queries(ds, refs, frames)
        if task_text:
            queries = [dataclasses.replace(q, task_text=task_text) for q in queries]
        with LabelStore(store_path) as label_store:
            result = label_queries(queries, labeler, label_store, dataset, progress)
        if frames is not None:
            frames.close()
    accuracy, decided = label_accuracy(queries, result.labels)
    return LabelJob(store_path, result, queries, accuracy, decided)


def label_accuracy(queries: list[Query], labels: list[Label]) -> tuple[float, int]:
    """(share of decided labels that pick the segment with the higher true return, how many were decided)."""
    right = decided = 0
    for q, label in zip(queries, labels, strict=True):
        r0, r1 = float(np.sum(q.first.true_rewards)), float(np.sum(q.second.true_rewards))
        if label.value is None or label.value == EQUAL or not math.isfinite(r0 + r1) or r0 == r1:
            continue
        decided += 1
        right += int((label.value == 1.0) == (r1 > r0))
    return (right / decided if decided else float("nan")), decided


def preference_data(dataset: str, store: str | None = None, labeler: str | None = None, frames: Any = None,
                    task_text: str | None = None) -> tuple[Any, list[tuple[Segment, Segment]], dict[str, int]]:
    """The labeled pairs of ``dataset`` in the store (optionally one labeler's) as ``PreferenceData``.

    Only labels asked for one task sentence are used: ``task_text``, by default the dataset's (or, for a dataset
    without one, the one sentence its labels were asked for). Left out and counted in the returned stats: labels
    asked for another sentence (``other_task``), can't-tells, and pairs whose segments changed since they were
    labeled. ``ValueError`` (one line, with those counts) when no pair is left."""
    from robot_rl.rewards.model import PreferenceData

    store_path = store or default_store_path(dataset)
    if not os.path.exists(store_path):
        raise FileNotFoundError(f"{store_path}: no label store (label the dataset first: robot-rl label {dataset})")
    with LabelStore(store_path) as label_store:
        rows = label_store.labels(dataset=dataset, labeler=labeler)
    if not rows:
        who = f" by labeler '{labeler}'" if labeler else ""
        raise ValueError(f"{store_path}: no labels{who} for {os.path.abspath(dataset)}")
    stats = {"stored": len(rows), "cant_tell": 0, "changed": 0, "other_task": 0}
    pairs: list[tuple[Segment, Segment]] = []
    values: list[float | None] = []
    asked_for = Counter(str(row.label.provenance["task_text"]) for row in rows if "task_text" in row.label.provenance)
    with Dataset(dataset) as ds:
        wanted = task_text if task_text is not None else ds.task_text
        if not wanted and len(asked_for) == 1:
            wanted = next(iter(asked_for))
        loader = SegmentLoader(ds)
        for row in rows:
            if row.label.provenance.get("task_text", wanted) != wanted:
                stats["other_task"] += 1
                continue
            try:
                a, b = loader.segment(row.first), loader.segment(row.second)
            except (ValueError, DatasetError):
                stats["changed"] += 1
                continue
            query = Query(a, b, wanted)
            if row.digest not in (query.digest(False), query.digest(True)):
                stats["changed"] += 1
                continue
            if row.label.value is None:
                stats["cant_tell"] += 1
                continue
            pairs.append((a, b))
            values.append(row.label.value)
        if not pairs:
            others = ", ".join(f"'{t}'" for t in asked_for if t != wanted)
            raise ValueError(
                f"{store_path}: none of the {len(rows)} labels of {os.path.abspath(dataset)} is usable for the task "
                f"'{wanted}': {stats['cant_tell']} can't tell, {stats['other_task']} asked for another task sentence"
                + (f" ({others})" if others else "") + f", {stats['changed']} whose segments changed since")
        data = PreferenceData.from_segments(pairs, values)
        if frames is not None:
            first = np.stack([frames.frames(a) for a, _ in pairs])
            second = np.stack([frames.frames(b) for _, b in pairs])
            data = dataclasses.replace(data, first_frames=first, second_frames=second)
    stats["used"] = len(pairs)
    return data, pairs, stats


def check_reward_out(out: str | Path, overwrite: bool = False) -> None:
    """Raise ``FileExistsError`` (one line) when ``out`` already holds a reward model and not ``overwrite``."""
    path = Path(out) / MODEL_FILE
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it, or pick a new --out")


def train_reward(dataset: str, out: str | Path, *, store: str | None = None, labeler: str | None = None,
                 config: Any = None, device: str = "auto", camera: str | None = None,
                 progress: Callable[[int, dict[str, float]], None] | None = None,
                 plot_episodes: int = 4, overwrite: bool = False) -> dict[str, Any]:
    """Train a Bradley-Terry reward model on the stored labels of ``dataset`` into ``out``: ``reward_model.pt``,
    ``reward_config.yaml``, ``reward_metrics.json``, ``reward_vs_truth.png``. Returns the metrics.

    Refuses (``FileExistsError``) an ``out`` that already holds ``reward_model.pt`` unless ``overwrite``."""
    from robot_rl.nn.payload import plain
    from robot_rl.rewards.model import RewardModelConfig, plot_reward_vs_truth, reward_correlation, train_reward_model

    config = config or RewardModelConfig()
    out = Path(out)
    check_reward_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    frames = None
    if config.obs == "image":
        from robot_rl.rewards.frames import FrameSource

        with Dataset(dataset) as ds:
            frames = FrameSource(ds, camera, (config.image_size, config.image_size))
            camera = frames.camera
            data, pairs, stats = preference_data(dataset, store, labeler, frames)
    else:
        data, pairs, stats = preference_data(dataset, store, labeler)
    start = time.time()
    model, metrics = train_reward_model(data, config, device=device, progress=progress)
    metrics = {**metrics, "labels": stats, "train_seconds": time.time() - start}
    model.save(out / MODEL_FILE)
    (out / REWARD_CONFIG_FILE).write_text(yaml.safe_dump({
        "dataset": os.path.abspath(dataset), "store": os.path.abspath(store or default_store_path(dataset)),
        "labeler": labeler, "camera": camera, **plain(dataclasses.asdict(config), json_safe=True)}, sort_keys=False))
    with Dataset(dataset) as ds:  # correlation along whole held-out (valid) episodes, else all
        names = ds.valid_names or ds.episode_names
        episodes = []
        for name in names:
            ep = ds.load_episode(name)
            truth = ep.reward_labels.get("ground_truth", (np.full(ep.length, np.nan, np.float32), {}))[0]
            item: tuple[Any, ...] = (ep.states, ep.actions, truth)
            if frames is not None:
                item = (*item, frames.episode_frames(name, ep))
            episodes.append(item)
        metrics["correlation"] = reward_correlation(model, episodes)
        if np.isfinite(episodes[0][2]).any():
            plot_reward_vs_truth(model, episodes[:plot_episodes], out / "reward_vs_truth.png",
                                 names=names[:plot_episodes])
    if frames is not None:
        frames.close()
    (out / METRICS_FILE).write_text(json.dumps(plain(metrics, json_safe=True), indent=2))
    return metrics


def _model_path(run: str) -> str:
    return os.path.join(run, MODEL_FILE) if os.path.isdir(run) else run
