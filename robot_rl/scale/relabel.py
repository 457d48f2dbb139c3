"""``robot-rl relabel --ray-address``: a dataset's episodes sharded over Ray workers, rewards computed where the
workers are, committed by the one writer with the same spool and journal as a single-process relabel
(``rewards.relabel``), so the result is the same labels and a relabel stays atomic and resumable.

How: one actor per worker (``ray.util.ActorPool``), each opening the dataset read-only and building the reward
source once (a model or CLIP loads once per worker, not per shard; ``--device cuda`` gives each actor one GPU).
Each shard of episodes is computed into its own spool file ``<dataset>.relabel-<id>.shard-<k>`` (the relabel
``Spool`` format: checksummed records, a torn tail ignored), one record per episode as it is done. When a shard's
task returns, the driver copies its records into the relabel's spool and deletes the shard file; when all are in,
``commit_labels`` writes every label in one journaled commit, exactly as ``relabel`` does.

What a failure costs:
- a worker killed (node lost, OOM kill, ``ray.kill``): Ray restarts the actor and retries its shard, which
  resumes from the shard's spool: the episodes it had finished are not computed again, none is lost;
- the driver killed: the dataset is untouched (nothing is written before the commit); rerunning merges the shard
  spools it left into the relabel's spool and computes only what is missing. A single-process rerun works too;
- a source that fails (raises, non-finite reward): one-line error naming the episode, spools removed, as in
  ``relabel``.

Shared storage: the workers open the dataset and write shard spools at the same path as the driver, so on a
cluster of several machines the dataset must be on a file system they all mount at that path.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from robot_rl.data import Dataset, DatasetError
from robot_rl.rewards.relabel import (
    EpisodeRewarder,
    RelabelResult,
    Spool,
    check_label_id,
    commit_labels,
    episode_rewards,
    label_spool,
    make_rewarder,
)

Progress = Callable[[str, int, int], None]
SHARDS_PER_WORKER = 4
"""Shards per worker by default: small enough that a killed worker redoes little and workers finish together."""


@dataclass(frozen=True)
class SourceSpec:
    """What a worker needs to build the reward source itself: ``make_rewarder(source, ds, device, **options)``."""

    source: str
    device: str = "cpu"
    options: dict[str, Any] = field(default_factory=dict)


class ShardWorker:
    """One Ray actor: the dataset's reward source, built on first use, applied to shard after shard."""

    def __init__(self, path: str, spec: SourceSpec) -> None:
        self.path, self.spec = path, spec
        self.rewarder: EpisodeRewarder | None = None
        self.ds: Dataset | None = None

    def compute(self, names: list[str], spool_path: str, digest: str) -> tuple[str, int]:
        """Rewards of ``names`` into the shard spool at ``spool_path``; returns the path and how many were computed
        now (the rest were in the spool from an attempt that died)."""
        spool = Spool(spool_path, digest)
        done = spool.load()
        todo = [n for n in names if n not in done]
        if todo and self.rewarder is None:
            self.ds = Dataset(self.path)
            self.rewarder = make_rewarder(self.spec.source, self.ds, device=self.spec.device, **self.spec.options)
        for name in todo:
            assert self.rewarder is not None and self.ds is not None
            spool.append(name, episode_rewards(self.path, self.rewarder, self.ds, name))
        return spool_path, len(todo)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        if self.rewarder is not None:
            self.rewarder.close()
        if self.ds is not None:
            self.ds.close()


def _shard_paths(spool: Spool) -> list[str]:
    return sorted(glob.glob(glob.escape(spool.path) + ".shard-*"))


def _merge(shard_path: str, spool: Spool, done: dict[str, np.ndarray]) -> int:
    """Copy the shard spool's episodes (of the same source) into ``spool`` and ``done``; delete the shard file."""
    shard = Spool(shard_path, spool.digest.decode())
    added = 0
    for name, values in shard.load().items():
        if name not in done:
            spool.append(name, values)
            done[name] = values
            added += 1
    shard.remove()
    return added


def relabel_on_ray(path: str, rewarder: EpisodeRewarder, spec: SourceSpec, address: str,
                   label_id: str | None = None, activate: bool = False, workers: int | None = None,
                   shard_episodes: int | None = None, progress: Progress | None = None,
                   on_workers: Callable[[list[int]], None] | None = None) -> RelabelResult:
    """``rewards.relabel.relabel`` with the compute phase on Ray at ``address`` (``"local"``: a local Ray with
    ``workers`` CPUs). ``rewarder`` (the driver's own, built from ``spec``) gives the label id and the identity
    that the spool and the provenance record; the workers build theirs from ``spec``.

    ``workers``: actors (default: the cluster's CPUs); ``shard_episodes``: episodes per shard (default: about
    ``SHARDS_PER_WORKER`` shards per worker). ``on_workers(pids)`` is told the actors' process ids once they run.
    """
    from robot_rl.scale.cluster import cluster_gpus, ray_session, task_error

    label_id = check_label_id(label_id or rewarder.default_id)
    identity = rewarder.identity()
    spool = label_spool(path, label_id, identity)
    try:
        with Dataset(path) as ds:
            names = ds.episode_names
        if not names:
            raise DatasetError(f"{path}: no episodes to relabel")
        done = spool.load()
        for shard_path in _shard_paths(spool):  # left by a driver that was killed
            _merge(shard_path, spool, done)
        todo = [n for n in names if n not in done]
        computed = len(todo)  # over all attempts: a retried shard resumes from its spool
        if progress is not None:
            progress("compute", len(names) - len(todo), len(names))
        if todo:
            with ray_session(address, workers) as ray:
                from ray.util import ActorPool

                count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
                gpus = 1.0 if spec.device.startswith("cuda") and cluster_gpus(ray) > 0 else 0.0
                size = shard_episodes or max(1, math.ceil(len(todo) / (SHARDS_PER_WORKER * count)))
                shards = [todo[i:i + size] for i in range(0, len(todo), size)]
                actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=3, max_task_retries=3)(ShardWorker)
                actors = [actor.remote(path, spec) for _ in range(min(count, len(shards)))]
                try:
                    if on_workers is not None:
                        on_workers(ray.get([a.pid.remote() for a in actors]))
                    pool = ActorPool(actors)
                    digest = spool.digest.decode()
                    jobs = [(shard, f"{spool.path}.shard-{k}") for k, shard in enumerate(shards)]
                    results = pool.map_unordered(lambda a, job: a.compute.remote(job[0], job[1], digest), jobs)
                    for _ in jobs:
                        try:
                            shard_path, _computed = next(results)
                        except Exception as e:  # the source failed on a worker, or a worker died too often
                            raise ValueError(f"relabel on Ray: {task_error(e)}") from None
                        _merge(shard_path, spool, done)
                        if progress is not None:
                            progress("compute", sum(name in done for name in names), len(names))
                finally:
                    with contextlib.suppress(Exception):  # let the sources stop their own processes
                        ray.get([a.close.remote() for a in actors], timeout=30)
                    for a in actors:
                        ray.kill(a)
        missing = [n for n in names if n not in done]
        if missing:
            raise RuntimeError(f"{path}: {len(missing)} episodes were not computed (first: {missing[0]})")
    except Exception:
        spool.remove()  # as relabel: a failed run leaves nothing behind (a kill or Ctrl-C keeps the spools)
        for shard_path in _shard_paths(spool):
            os.unlink(shard_path)
        raise
    return commit_labels(path, label_id, identity, names, done, computed, activate, progress, spool)
