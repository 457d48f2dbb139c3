"""Atomic, complete checkpoints: ``RUN_DIR/checkpoints/step_<n>.pt``.

A checkpoint is written to a temporary file in the same folder, fsynced, renamed over its final name and
the folder fsynced, so a crash leaves either the old set of checkpoints or the new one, never a torn file.
Loading takes the newest checkpoint that reads back; a corrupt newest one falls back to the previous
one with a warning.
"""

from __future__ import annotations

import os
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_DIR = "checkpoints"
_NAME = re.compile(r"^step_(\d+)\.pt$")


class CheckpointError(ValueError):
    """No usable checkpoint; the message names the run folder and what is wrong."""


def checkpoint_paths(run_dir: Path) -> list[Path]:
    """Checkpoints of a run, oldest first."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], keep: int = 3) -> Path:
    """Write ``payload`` (plus ``step``) atomically as ``step_<step>.pt``; keep the newest ``keep``."""
    folder = Path(run_dir) / CHECKPOINT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    final = atomic_torch_save({**payload, "step": step}, folder / f"step_{step:09d}.pt")
    for old in checkpoint_paths(run_dir)[:-keep]:
        old.unlink(missing_ok=True)
    return final


def atomic_torch_save(payload: Any, path: Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, fsync, rename over ``path``, fsync the folder: a reader
    (or a crash) sees the old file or the whole new one, never half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def load_checkpoint(run_dir: Path, map_location: str | torch.device = "cpu") -> tuple[dict[str, Any], Path]:
    """Newest readable checkpoint of ``run_dir`` and its path; falls back past corrupt ones with a warning."""
    paths = checkpoint_paths(run_dir)
    if not paths:
        raise CheckpointError(f"{run_dir}: no checkpoints in {Path(run_dir) / CHECKPOINT_DIR}")
    skipped: list[tuple[Path, str]] = []
    for path in reversed(paths):
        try:
            payload = torch.load(path, map_location=map_location, weights_only=False)
            if not isinstance(payload, dict) or "step" not in payload:
                raise ValueError("not a robot_rl checkpoint")
        except Exception as e:  # a torn or foreign file: try the previous one
            skipped.append((path, f"{type(e).__name__}: {(str(e).splitlines() or [''])[0][:120]}"))
            continue
        for bad, why in skipped:  # warned only when an older one serves: else the error below says it all
            warnings.warn(f"{bad}: unreadable checkpoint ({why}); falling back to the previous one", stacklevel=2)
        return payload, path
    newest, why = skipped[0]
    raise CheckpointError(f"{run_dir}: none of the {len(paths)} checkpoints could be read (newest: {newest.name}: "
                          f"{why})")


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
