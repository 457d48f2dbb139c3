"""Relabel a foreign dataset in its own layout: ``robot-rl relabel robomimic:FILE.hdf5`` or ``minari:DATASET_ID``.

The file keeps its format and gains ``reward_labels/<id>`` in every episode group (``--replace-rewards``: also its
``rewards``, the original kept as ``reward_labels/ground_truth``); where and why: ``robot_rl.data.interop.inplace``.
LeRobot datasets go through import and export instead (their rewards live in parquet shards, not one file).

How: the source is imported into a staging robot_rl dataset beside the file (``<file>.relabel-stage.h5``: the
episodes exactly as ``robot-rl import`` reads them, so every reward source works unchanged), rewards are computed
into the same spool ``relabel`` uses (``<file>.relabel-<id>``; a killed run resumes from it, a changed source or a
changed file starts over), then written into the file in one atomic replace, and the stage and spool removed.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from robot_rl.data import Dataset, DatasetError
from robot_rl.data.interop import format_module, import_source, parse_source
from robot_rl.data.interop.common import InteropError
from robot_rl.data.interop.inplace import fingerprint, relabel_lock, write_labels
from robot_rl.data.journal import JOURNAL_SUFFIX
from robot_rl.rewards.relabel import (
    EpisodeRewarder,
    Progress,
    RelabelResult,
    Spool,
    check_label_id,
    episode_rewards,
    source_digest,
)

IN_PLACE = ("robomimic", "minari")
"""Schemes relabeled in their own files; the others go through import and export."""
STAGE_SUFFIX = ".relabel-stage.h5"

__all__ = ["IN_PLACE", "foreign_scheme", "relabel_foreign"]


def foreign_scheme(target: str) -> str | None:
    """The scheme of ``SCHEME:TARGET`` naming a foreign dataset (None for a plain path to a robot_rl dataset);
    ``lerobot:`` and any other scheme that cannot be relabeled in place is a one-line error saying what to do."""
    scheme, sep, rest = target.partition(":")
    if not sep or os.path.exists(target) or "/" in scheme:
        return None
    scheme, rest = parse_source(target)
    if scheme not in IN_PLACE:
        raise InteropError(f"{target}: {scheme} datasets are relabeled through import and export: robot-rl import "
                           f"{target} --out X.h5; robot-rl relabel X.h5 --source ...; robot-rl export X.h5 "
                           f"--to {scheme}:NEW_PATH")
    return scheme


def relabel_foreign(target: str, make_rewarder: Callable[[Dataset], EpisodeRewarder], label_id: str | None = None,
                    replace: bool = False, progress: Progress | None = None) -> RelabelResult:
    """Compute rewards for every episode of the foreign dataset ``target`` (``robomimic:PATH``,
    ``minari:DATASET_ID``) with the rewarder ``make_rewarder`` opens on the staged dataset, and write them into the
    file as ``reward_labels/<label_id>`` (and ``rewards`` with ``replace``). Atomic and resumable (module docs)."""
    scheme, rest = parse_source(target)
    if label_id is not None:
        check_label_id(label_id)  # before the staging import
    fmt = format_module(scheme)
    path: str = fmt.relabel_file(rest)
    stage = path + STAGE_SUFFIX
    with relabel_lock(path):
        _remove(stage, stage + JOURNAL_SUFFIX)
        try:
            before = fingerprint(path)
            import_source(target, stage, image_compression=None)
            with Dataset(stage) as ds:
                rewarder = make_rewarder(ds)
                try:
                    return _relabel(path, target, fmt, ds, rewarder, label_id, replace, before, progress)
                finally:
                    rewarder.close()
        finally:
            _remove(stage, stage + JOURNAL_SUFFIX)


def _relabel(path: str, target: str, fmt: Any, ds: Dataset, rewarder: EpisodeRewarder, label_id: str | None,
             replace: bool, before: tuple[int, int, int], progress: Progress | None) -> RelabelResult:
    label_id = check_label_id(label_id or rewarder.default_id)
    identity = rewarder.identity()
    spool = Spool(f"{path}.relabel-{label_id}", source_digest({**identity, "file": list(before)}))
    names = ds.episode_names
    if not names:
        raise DatasetError(f"{target}: no episodes to relabel")
    groups = {name: fmt.episode_group(ds.episode_attrs(name)) for name in names}
    try:
        done = spool.load()
        computed = 0
        for i, name in enumerate(names):
            if name not in done:
                values = episode_rewards(target, rewarder, ds, name)
                spool.append(name, values)
                done[name] = values
                computed += 1
            if progress is not None:
                progress("compute", i + 1, len(names))
    except Exception:
        spool.remove()  # a failed run leaves nothing behind (a kill or KeyboardInterrupt keeps the spool)
        raise
    provenance = {**identity, "label_id": label_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_labels(path, {groups[n]: done[n] for n in names}, label_id, provenance, replace=replace,
                 provenance_group=fmt.PROVENANCE_GROUP, source=target, expect=before)
    if progress is not None:
        progress("write", len(names), len(names))  # one replace writes them all
    spool.remove()
    allv = np.concatenate([done[n] for n in names])
    return RelabelResult(label_id, len(names), computed, replace, float(allv.mean()), float(allv.std()))


def _remove(*paths: str) -> None:
    for p in paths:
        if os.path.exists(p):
            os.remove(p)
