"""Reward labels written into a foreign HDF5 file in its own layout (``robot-rl relabel robomimic:PATH`` and
``minari:DATASET_ID``): the one writer both formats share.

Where: every episode group (robomimic's ``data/demo_<i>``, Minari's ``episode_<i>``) gains
``reward_labels/<id>`` (float32 ``[T]``, attr ``provenance`` JSON): the place robot_rl's own datasets and its
robomimic export keep labels, and the place the robomimic and Minari imports read them back from. Neither
format's loader reads that group, so the file opens as before (robomimic's ``SequenceDataset`` loads
``data/demo_<i>/<key>`` for each of ``config.train.dataset_keys``; its IQL and CQL read ``batch["rewards"]``;
Minari's ``EpisodeData.rewards`` is ``episode_<i>/rewards``). ``replace=True`` therefore also overwrites the
episode's ``rewards`` (same shape and float dtype; float64 where they were integers), keeping the file's own
rewards as ``reward_labels/ground_truth`` the first time; the group named by ``provenance_group`` gets attr
``reward_provenance`` (``{"label": id, ...}``) saying which label ``rewards`` now hold.

Atomic for every reader, robot_rl's or not: the labels go into a copy ``<file>.relabel-new`` that replaces the
file with one ``os.replace`` (after an fsync), so any reader sees the old file or the new one, never a half-
written one. robot_rl's rollback journal (``data/journal.py``) is not used here: a foreign reader does not roll
it back, so a kill mid-commit would leave robomimic or Minari a broken file. The cost is one copy of the file on
disk while the labels are written. A file changed by someone else meanwhile is refused (nothing written).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import h5py
import numpy as np

from robot_rl.data.interop.common import InteropError
from robot_rl.data.journal import fsync_directory
from robot_rl.data.layout import GROUND_TRUTH, LABEL_GROUP, one_line, plain, provenance_json

NEW_SUFFIX = ".relabel-new"
LOCK_SUFFIX = ".relabel-lock"
PROVENANCE_ATTR = "reward_provenance"


def fingerprint(path: str) -> tuple[int, int, int]:
    """(inode, size, mtime) of ``path``: changes when anyone rewrites or replaces the file."""
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


@contextmanager
def relabel_lock(path: str) -> Iterator[None]:
    """One relabel of a foreign file at a time (a lock file beside it; a second one is a one-line error)."""
    lock = path + LOCK_SUFFIX
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InteropError(f"{path}: another relabel is running on this file") from None
        try:
            yield
        finally:
            os.unlink(lock)  # while still holding it
    finally:
        os.close(fd)


def write_labels(path: str, groups: dict[str, np.ndarray], label_id: str, provenance: dict[str, Any], *,
                 replace: bool, provenance_group: str, source: str, expect: tuple[int, int, int]) -> None:
    """Write ``groups`` (episode group path -> rewards) as ``reward_labels/<label_id>`` into the foreign HDF5
    ``path`` (and into ``rewards`` with ``replace``), atomically (module docstring). ``expect`` is the file's
    ``fingerprint`` when its episodes were read: if it changed, nothing is written."""
    tmp = path + NEW_SUFFIX
    if os.path.exists(tmp):
        os.remove(tmp)  # left by a relabel killed while writing
    try:
        shutil.copy2(path, tmp)
        with h5py.File(tmp, "r+") as f:
            own = f[provenance_group].attrs.get(PROVENANCE_ATTR) is None
            replace = replace or _holds(f[provenance_group], label_id)  # rewards that hold this label follow it
            for group_path, values in groups.items():
                _write_episode(path, f, group_path, values, label_id, provenance, replace, own, source)
            if replace:
                f[provenance_group].attrs[PROVENANCE_ATTR] = provenance_json({"label": label_id, **provenance})
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if fingerprint(path) != expect:
            raise InteropError(f"{path}: changed by someone else during the relabel; nothing was written "
                               "(run it again)")
        os.replace(tmp, path)
        fsync_directory(path)
    except OSError as e:
        raise InteropError(f"{path}: cannot write the labels ({one_line(e)}); the file is unchanged") from None
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _holds(group: h5py.Group, label_id: str) -> bool:
    """Whether ``reward_provenance`` says the file's ``rewards`` hold ``label_id`` (an earlier replace)."""
    raw = group.attrs.get(PROVENANCE_ATTR)
    try:
        return raw is not None and json.loads(plain(raw)).get("label") == label_id
    except (ValueError, AttributeError):
        return False


def _write_episode(path: str, f: h5py.File, group_path: str, values: np.ndarray, label_id: str,
                   provenance: dict[str, Any], replace: bool, own: bool, source: str) -> None:
    group = f.get(group_path)
    if not isinstance(group, h5py.Group):
        raise InteropError(f"{path}: {group_path}: no such episode group (the file changed?)")
    values = np.asarray(values, np.float32).reshape(-1)
    labels = group.require_group(LABEL_GROUP)
    if label_id in labels:
        del labels[label_id]
    labels.create_dataset(label_id, data=values).attrs["provenance"] = provenance_json(provenance)
    if not replace:
        return
    old = group.get("rewards")
    if isinstance(old, h5py.Dataset):
        if old.size != len(values):
            raise InteropError(f"{path}: {group_path}/rewards: {old.size} values, the episode has {len(values)} steps")
        if own and GROUND_TRUTH not in labels:  # the file's own rewards, kept before they are overwritten
            labels.create_dataset(GROUND_TRUTH, data=np.asarray(old[()], np.float32).reshape(-1)).attrs[
                "provenance"] = provenance_json({"labeler": GROUND_TRUTH, "source": source})
        if old.dtype.kind == "f":
            old[...] = values.astype(old.dtype).reshape(old.shape)
            return
        shape = old.shape  # integer rewards (Minari's DataCollector keeps an env's int rewards) cannot hold labels
        del group["rewards"]
        group.create_dataset("rewards", data=values.astype(np.float64).reshape(shape))
    else:
        group.create_dataset("rewards", data=values.astype(np.float64))
