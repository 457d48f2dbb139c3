"""Reward labels of a dataset: write ``reward_labels/<id>`` of every episode and make one of them the active
``rewards``, in one journaled commit (``journal.py``): a kill at any moment leaves the file as it was, readable
with its old rewards.

Activation never loses the old active rewards: if they equal no stored label, they are first kept as
``reward_labels/original`` (``layout.ORIGINAL``). ``robot_rl.rewards.relabel`` computes the values; this module
alone writes them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np

from robot_rl.data.journal import JournaledFile
from robot_rl.data.layout import ACTIVE_ATTR, DATA, LABEL_GROUP, ORIGINAL, REWARDS, open_hdf5, provenance_json

Progress = Callable[[str, int, int], None]
"""``(phase, done, total)``; phase ``"write"``."""


def write_reward_labels(path: str, label_id: str, values: Mapping[str, np.ndarray],
                        provenance: dict[str, Any] | None, activate: bool, progress: Progress | None = None) -> None:
    """One journaled commit: ``values`` (episode name -> float32 ``[T]``) as ``reward_labels/<label_id>`` with
    ``provenance`` (None: write no labels, e.g. to activate a stored one), then, if ``activate``, those values as
    the active ``rewards`` and ``/data`` attr ``active_reward``. An older label of that id is replaced."""
    io = JournaledFile(path)
    try:
        with open_hdf5(path, "r+", fileobj=io) as f:
            data = f[DATA]
            for i, (name, v) in enumerate(values.items()):
                group = data[name]
                if provenance is not None:
                    labels = group.require_group(LABEL_GROUP)
                    if label_id in labels:
                        del labels[label_id]
                    dset = labels.create_dataset(label_id, data=v.astype(np.float32))
                    dset.attrs["provenance"] = provenance_json(provenance)
                if activate:
                    _activate_episode(group, label_id, v)
                if progress is not None:
                    progress("write", i + 1, len(values))
            if activate:
                data.attrs[ACTIVE_ATTR] = label_id
            f.flush()
            io.commit()  # the commit point: before it, a kill leaves the file exactly as it was
    finally:
        io.close()


def active_label(path: str) -> str | None:
    """The label id whose values are the active rewards, per ``/data`` attr ``active_reward`` (None: as collected)."""
    with open_hdf5(path, "r") as f:
        value = f[DATA].attrs.get(ACTIVE_ATTR)
    return None if value is None else (value.decode() if isinstance(value, bytes) else str(value))


def _activate_episode(group: h5py.Group, label_id: str, values: np.ndarray) -> None:
    current = np.asarray(group[REWARDS][()], np.float32)
    labels = group.require_group(LABEL_GROUP)
    held = any(np.array_equal(current, np.asarray(labels[k][()]), equal_nan=True) for k in labels)
    if not held and np.isfinite(current).any():
        keep = labels.create_dataset(ORIGINAL if ORIGINAL not in labels else f"{ORIGINAL}_{int(time.time())}",
                                     data=current)
        keep.attrs["provenance"] = provenance_json({"labeler": ORIGINAL,
                                                    "note": f"active rewards before activating '{label_id}'"})
    group[REWARDS][...] = values.astype(np.float32)
