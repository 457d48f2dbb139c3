"""Run a labeler over queries through the label store: stored answers are reused, new ones stored as they come."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from robot_rl.rewards.base import Label, Labeler, Query, query_key
from robot_rl.rewards.store import LabelStore

Progress = Callable[[int, int, Label], None]
"""``(answers so far, total, latest label)``."""


@dataclass
class LabelingResult:
    labels: list[Label] = field(default_factory=list)
    """One per query, in query order (can't-tell included)."""
    asked: int = 0
    """Queries the labeler answered in this run."""
    reused: int = 0
    """Queries answered from the store (asked before)."""

    @property
    def cant_tell(self) -> int:
        return sum(label.value is None for label in self.labels)


def label_queries(queries: Sequence[Query], labeler: Labeler, store: LabelStore, dataset: str,
                  progress: Progress | None = None, provenance: dict[str, Any] | None = None) -> LabelingResult:
    """Answer every query once: from ``store`` if it holds the answer, else from ``labeler`` (each new answer is
    stored the moment the labeler yields it, so a run killed at any point loses no answer it got).

    Duplicate queries (same key) are asked once. Errors the labeler raises (a VLM refusing the API key, say)
    propagate after the answers before them are stored. The stored provenance records the query's ``task_text``
    (the sentence is part of the query's digest: ``preference_data`` needs it to recognise the pair again), and
    ``provenance`` where given (e.g. the fine-tuning round that asked it); a stored answer keeps the provenance of
    the time it was asked.
    """
    keys = [query_key(labeler, q) for q in queries]
    answers: dict[str, Label] = {}
    for key in dict.fromkeys(keys):
        stored = store.get(key)
        if stored is not None:
            answers[key] = stored
    reused = len(answers)
    seen: set[str] = set(answers)
    todo = []
    for i, key in enumerate(keys):
        if key not in seen:
            seen.add(key)
            todo.append(i)
    total = len(dict.fromkeys(keys))
    ident = labeler.identity()
    if progress is not None and answers:
        progress(len(answers), total, next(iter(answers.values())))
    asked = 0
    for j, label in labeler.label([queries[i] for i in todo]):
        i = todo[j]
        q = queries[i]
        stored = Label(label.value, {**label.provenance, **(provenance or {}), "task_text": q.task_text})
        store.put(keys[i], stored, labeler=labeler.name, identity=ident, dataset=dataset,
                  digest=q.digest(labeler.uses_images), first=q.first.ref, second=q.second.ref)
        answers[keys[i]] = label
        asked += 1
        if progress is not None:
            progress(len(answers), total, label)
    missing = [i for i in todo if keys[i] not in answers]
    if missing:
        raise RuntimeError(f"labeler '{labeler.name}' stopped without answering {len(missing)} of {len(todo)} queries")
    return LabelingResult([answers[k] for k in keys], asked, reused)
