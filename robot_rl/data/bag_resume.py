"""Which bag a recording is (its content hash) and which of its episodes a dataset already holds, so that
``import-bag --resume`` adds each episode of a bag once."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def bag_digest(bag: str | os.PathLike[str]) -> str:
    """SHA-256 of a bag's content: the file, or a rosbag2 directory's files except ``metadata.yaml`` (which
    ``ros2 bag reindex`` rewrites), each with its name, in name order."""
    path = Path(bag)
    files = sorted(f for f in path.rglob("*") if f.is_file() and f.name != "metadata.yaml") if path.is_dir() \
        else [path]
    digest = hashlib.sha256()
    for f in files:
        digest.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def imported_starts(out: str | os.PathLike[str], sha256: str) -> set[float]:
    """Start times of the episodes in ``out`` imported from the bag with this content hash."""
    from robot_rl.data.reader import Dataset

    with Dataset(out) as ds:
        attrs = [ds.episode_attrs(name) for name in ds.episode_names]
    return {round(float(a["bag_time_start"]), 6) for a in attrs
            if a.get("bag_sha256") == sha256 and "bag_time_start" in a}
