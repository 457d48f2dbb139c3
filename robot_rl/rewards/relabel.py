"""Relabel a dataset: write rewards from a source into ``reward_labels/<id>`` of every episode, and optionally make
them the active ``rewards``.

Sources (``robot_rl.rewards.sources``, ``make_rewarder``): ``reward-model:RUN_DIR`` (a trained Bradley-Terry model,
r(s_t, a_t)), ``clip:CHECKPOINT`` (CLIP similarity of the frame after each step to the task sentence),
``code:FILE.py`` (reward code run in a separate process on the state after each step and the action),
``success:RUN_DIR`` (a success classifier's sparse reward 1[P(success | observation after the step) >= threshold]).

Crash safety, in two phases:

1. *compute*: rewards of each episode are appended to a spool file ``<dataset>.relabel-<id>`` (checksummed
   records) as they are computed; a killed run resumes from it, recomputing only missing episodes (the spool is
   dropped if the source changed meanwhile). The dataset is only read.
2. *write*: all labels (and the activation) go into the dataset in one journaled commit
   (``robot_rl.data.write_reward_labels``): a kill at any moment leaves the dataset as it was, readable with its
   old rewards; the rerun redoes it from the spool in seconds. The spool is removed after the commit, and when
   the run fails with an error (a source that raises or gives a non-finite reward: rerunning the same source would
   fail again); a kill or Ctrl-C keeps it for the rerun.

Activation never loses the old active rewards: if they equal no stored label, they are first kept as
``reward_labels/original`` (``robot_rl.data.labels``).
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from robot_rl.data import GROUND_TRUTH, Dataset, DatasetError, active_label, write_reward_labels
from robot_rl.data.layout import ORIGINAL, check_name
from robot_rl.rewards.sources import EpisodeRewarder, LearnedReward, make_rewarder

ModelRewarder = LearnedReward
"""The reward-model source under the name relabel gave it (``ModelRewarder(run_dir)``)."""

__all__ = ["ORIGINAL", "EpisodeRewarder", "ModelRewarder", "RelabelResult", "Spool", "activate_label",
           "active_label", "check_label_id", "commit_labels", "episode_rewards", "label_spool",
           "make_rewarder", "relabel", "source_digest"]

Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``; phase is ``"compute"`` or ``"write"``."""


@dataclass
class RelabelResult:
    label_id: str
    episodes: int
    computed: int
    """Episodes computed in this run (the rest came from the spool of an interrupted run)."""
    activated: bool
    mean: float
    std: float


def relabel(path: str, rewarder: EpisodeRewarder, label_id: str | None = None, activate: bool = False,
            progress: Progress | None = None) -> RelabelResult:
    """Compute ``rewarder``'s rewards for every episode of ``path`` and store them as ``reward_labels/<label_id>``
    (default ``rewarder.default_id``), replacing an older label of that id; ``activate`` also makes them the
    active ``rewards``. Resumable and crash-safe (module docstring)."""
    label_id = check_label_id(label_id or rewarder.default_id)
    identity = rewarder.identity()
    spool = label_spool(path, label_id, identity)
    try:
        names, done, computed = _compute(path, rewarder, spool, progress)
    except Exception:
        spool.remove()  # a failed run leaves nothing behind (a kill or KeyboardInterrupt keeps the spool)
        raise
    return commit_labels(path, label_id, identity, names, done, computed, activate, progress, spool)


def check_label_id(label_id: str) -> str:
    check_name("label id", label_id)
    if label_id == GROUND_TRUTH:
        raise ValueError(f"label id '{GROUND_TRUTH}' is reserved for the simulator's reward")
    return label_id


def label_spool(path: str, label_id: str, identity: dict[str, Any]) -> Spool:
    """The spool of relabeling ``path`` into ``label_id`` with the source ``identity`` (a changed source starts a
    new one)."""
    return Spool(f"{path}.relabel-{label_id}", source_digest(identity))


def source_digest(identity: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def commit_labels(path: str, label_id: str, identity: dict[str, Any], names: list[str], done: dict[str, np.ndarray],
                  computed: int, activate: bool, progress: Progress | None, spool: Spool) -> RelabelResult:
    """Phase 2: every episode's rewards into the dataset in one journaled commit, then drop the spool."""
    provenance = {**identity, "label_id": label_id, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    write_reward_labels(path, label_id, {n: done[n] for n in names}, provenance, activate, progress)
    spool.remove()
    allv = np.concatenate([done[n] for n in names])
    return RelabelResult(label_id, len(names), computed, activate, float(allv.mean()), float(allv.std()))


def episode_rewards(path: str, rewarder: EpisodeRewarder, ds: Dataset, name: str) -> np.ndarray:
    """``rewarder``'s rewards of one episode, checked: one finite float32 per step, else a one-line ``ValueError``."""
    episode = ds.load_episode(name)
    values = np.asarray(rewarder.rewards(ds, name, episode), np.float32)
    if values.shape != (episode.length,):
        raise ValueError(f"{path}: episode {name}: the source gave {list(values.shape)} rewards for "
                         f"{episode.length} steps")
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        raise ValueError(f"{path}: episode {name}: the source gave a non-finite reward at step "
                         f"{int(bad[0])} ({values[bad[0]]}); nothing was written")
    return values


def _compute(path: str, rewarder: EpisodeRewarder, spool: Spool, progress: Progress | None
             ) -> tuple[list[str], dict[str, np.ndarray], int]:
    """Phase 1: every episode's rewards, from the spool or the source (appended to the spool)."""
    computed = 0
    with Dataset(path) as ds:
        names = ds.episode_names
        if not names:
            raise DatasetError(f"{path}: no episodes to relabel")
        done = spool.load()
        for i, name in enumerate(names):
            if name not in done:
                values = episode_rewards(path, rewarder, ds, name)
                spool.append(name, values)
                done[name] = values
                computed += 1
            if progress is not None:
                progress("compute", i + 1, len(names))
    return names, done, computed


def activate_label(path: str, label_id: str) -> None:
    """Make the stored ``reward_labels/<label_id>`` the active ``rewards`` (one atomic commit)."""
    with Dataset(path) as ds:
        if label_id not in ds.reward_label_ids():
            known = ", ".join(ds.reward_label_ids()) or "none"
            raise DatasetError(f"{path}: no reward label '{label_id}' (labels: {known})")
        values = {n: ds.load_episode(n).reward_labels[label_id][0] for n in ds.episode_names}
    write_reward_labels(path, label_id, values, None, True, None)


class Spool:
    """Append-only record of computed episode rewards: header (source digest), then per episode
    ``u32 name length, name, u32 steps, float32 values, u32 crc32``; a torn last record is ignored."""

    MAGIC = b"RRLS"

    def __init__(self, path: str, digest: str) -> None:
        self.path = path
        self.digest = digest.encode()

    def load(self) -> dict[str, np.ndarray]:
        """Episodes already computed by an interrupted run of the same source (empty if none, or another source)."""
        try:
            with open(self.path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raw = b""
        head = self.MAGIC + self.digest
        if not raw.startswith(head):
            with open(self.path, "wb") as f:
                f.write(head)
            return {}
        out: dict[str, np.ndarray] = {}
        at = len(head)
        while at + 4 <= len(raw):
            (n,) = struct.unpack_from("<I", raw, at)
            name_end = at + 4 + n
            if name_end + 4 > len(raw):
                break
            (t,) = struct.unpack_from("<I", raw, name_end)
            end = name_end + 4 + 4 * t
            if end + 4 > len(raw) or struct.unpack_from("<I", raw, end)[0] != zlib.crc32(raw[at:end]):
                break
            out[raw[at + 4:name_end].decode()] = np.frombuffer(raw[name_end + 4:end], np.float32).copy()
            at = end + 4
        with open(self.path, "r+b") as f:
            f.truncate(at)  # drop a torn tail so appends follow whole records
        return out

    def append(self, name: str, values: np.ndarray) -> None:
        key = name.encode()
        body = struct.pack("<I", len(key)) + key + struct.pack("<I", len(values)) + values.astype("<f4").tobytes()
        with open(self.path, "ab") as f:
            f.write(body + struct.pack("<I", zlib.crc32(body)))

    def remove(self) -> None:
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
