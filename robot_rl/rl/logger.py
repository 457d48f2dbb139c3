"""Metrics of a run: one JSON line per log step in ``metrics.jsonl`` and the same scalars in TensorBoard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append-only metrics: ``log(step, {name: float})``. TensorBoard events go to ``RUN_DIR/tb``."""

    def __init__(self, run_dir: Path, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(Path(run_dir) / "tb"))
            except ImportError:  # tensorboard is a dependency, but a stripped install still trains
                self._tb = None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **{k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """All rows of ``RUN_DIR/metrics.jsonl`` (a torn last line from a crash is ignored)."""
    return read_jsonl(Path(run_dir) / "metrics.jsonl")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All rows of a JSON-lines file, ``[]`` if it does not exist (a torn last line from a crash is ignored)."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
