"""Which stages of a ``robot-rl pipeline`` output folder are done, with which inputs: ``stages.json``.

Each stage has a key: a hash of its own config section and of the keys of the stages before it, so a change
anywhere upstream changes every key downstream. A stage is recorded as *started* (with its key) before it runs and
as *done* (with its time and the facts the report needs) after it succeeded. ``pipeline --resume`` skips a stage
that is done with the same key and whose outputs are still there, and runs the others from where they stopped.
The file is replaced atomically, so a killed pipeline leaves the previous state, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = "stages.json"
STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "collect": ("task", "seed", "collect"),
    "label": ("label",),
    "train-reward": ("reward_model",),
    "relabel": ("relabel",),
    "train": ("train", "eval"),
    "finetune": ("finetune", "eval"),
}
"""Stage -> the config entries it reads (besides what the stages before it made), in the order they run."""


def stage_keys(cfg: dict[str, Any]) -> dict[str, str]:
    """Stage -> key: sha256 over the stage's config entries and the key of the stage before it."""
    keys: dict[str, str] = {}
    previous = ""
    for stage, sections in STAGE_SECTIONS.items():
        entries = {name: cfg.get(name) for name in sections}
        if stage == "label":
            entries["seed"] = cfg.get("seed")
        text = json.dumps({"after": previous, "stage": stage, "config": entries}, sort_keys=True, default=str)
        previous = keys[stage] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return keys


class StageLog:
    """``stages.json`` of one output folder: stage -> {"key", "done", "seconds", "facts"}."""

    def __init__(self, out: Path) -> None:
        self.path = Path(out) / STATE_FILE
        self.stages: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            try:
                data = json.loads(self.path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise ValueError(f"{self.path}: cannot read the pipeline's stage record ({e}); rerun with "
                                 "--overwrite to start the pipeline anew") from None
            if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
                raise ValueError(f"{self.path}: not a pipeline stage record; rerun with --overwrite to start anew")
            self.stages = data

    def started(self, stage: str, key: str) -> None:
        self.stages[stage] = {"key": key, "done": False}
        self._save()

    def finished(self, stage: str, seconds: float, facts: dict[str, Any] | None = None) -> None:
        self.stages[stage].update(done=True, seconds=round(seconds, 3), facts=facts or {})
        self._save()

    def is_done(self, stage: str, key: str) -> bool:
        entry = self.stages.get(stage, {})
        return bool(entry.get("done")) and entry.get("key") == key

    def started_with(self, stage: str) -> str | None:
        """The key the stage last started with (done or not), or None if it never started."""
        key = self.stages.get(stage, {}).get("key")
        return str(key) if key is not None else None

    def facts(self, stage: str) -> dict[str, Any]:
        return dict(self.stages.get(stage, {}).get("facts") or {})

    def seconds(self, stage: str) -> float | None:
        value = self.stages.get(stage, {}).get("seconds")
        return float(value) if value is not None else None

    def _save(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.stages, indent=1, default=str), encoding="utf-8")
        os.replace(tmp, self.path)
