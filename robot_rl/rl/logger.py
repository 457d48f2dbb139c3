"""Metrics of a run: one JSON line per log step in ``metrics.jsonl`` and the same scalars in TensorBoard."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append-only metrics: ``log(step, {name: float})``. TensorBoard events go to ``RUN_DIR/tb``.

    ``start_step``: the step training (re)starts from, 0 for a new run or a checkpoint's step on resume. Rows past it
    were logged by a run that died before its next checkpoint and are about to be logged again: they are dropped
    from ``metrics.jsonl`` (rewritten atomically, a torn last line dropped too) and hidden in TensorBoard
    (``purge_step``), so every step appears once. ``None`` (evaluation rows added to a finished run) keeps all.
    """

    def __init__(self, run_dir: Path, tensorboard: bool = True, start_step: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if start_step is not None and self.path.exists():
            kept = [row for row in read_jsonl(self.path) if _step(row) <= start_step]
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text("".join(json.dumps(row) + "\n" for row in kept), encoding="utf-8")
            os.replace(tmp, self.path)
        self._file = self.path.open("a", encoding="utf-8")
        self._tb: Any = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                purge = None if start_step is None else start_step + 1
                self._tb = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=purge)
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


def _step(row: dict[str, Any]) -> float:
    step = row.get("step")
    return float(step) if isinstance(step, int | float) and not isinstance(step, bool) else math.inf
