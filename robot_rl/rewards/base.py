"""What every labeler shares: segments, queries, labels, and the ``Labeler`` protocol.

A *query* asks "which of these two segments better achieves the task?"; a *label* answers it with
``FIRST`` (0), ``SECOND`` (1), ``EQUAL`` (0.5, B-Pref's "equally preferable") or ``CANT_TELL`` (``None``:
skipped, unparseable, or the labeler could not decide; dropped from reward-model training), plus provenance.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from robot_rl.rewards.frames import FrameSource

FIRST = 0.0
SECOND = 1.0
EQUAL = 0.5
CANT_TELL = None
LABEL_NAMES = {FIRST: "first", SECOND: "second", EQUAL: "equal", None: "can't tell"}


@dataclass(frozen=True)
class SegmentRef:
    """Where a segment lies: ``length`` consecutive steps of ``episode`` from step ``start``."""

    episode: str
    start: int
    length: int

    def to_json(self) -> list[Any]:
        return [self.episode, self.start, self.length]

    @classmethod
    def from_json(cls, value: Sequence[Any]) -> SegmentRef:
        return cls(str(value[0]), int(value[1]), int(value[2]))


@dataclass(frozen=True)
class Segment:
    """A segment's data (numpy, read from the dataset)."""

    ref: SegmentRef
    states: np.ndarray
    """float32 ``[L, D]``."""
    actions: np.ndarray
    """float32 ``[L, A]``."""
    true_rewards: np.ndarray
    """float32 ``[L]``: the simulator's ground-truth reward (NaN where the dataset has none, e.g. a real robot).
    Only the scripted teacher and the evaluation read it."""
    sim_states: np.ndarray | None = None
    """float64 ``[L, S]``, to render frames from (``None`` if the dataset stores none)."""


@dataclass(frozen=True)
class Query:
    """One preference query: two segments and the task sentence; ``frames`` gives their images."""

    first: Segment
    second: Segment
    task_text: str
    frames: FrameSource | None = None

    def digest(self, with_images: bool) -> str:
        """sha256 of the query's inputs: task text and both segments' states and actions (and sim states, which
        determine any rendered frame, when ``with_images``). Order matters: (A, B) and (B, A) differ."""
        h = hashlib.sha256(self.task_text.encode())
        for seg in (self.first, self.second):
            h.update(b"|seg|")
            for array in (seg.states, seg.actions):
                h.update(np.ascontiguousarray(array, dtype=np.float32).tobytes())
            if with_images and seg.sim_states is not None:
                h.update(np.ascontiguousarray(seg.sim_states, dtype=np.float64).tobytes())
        return h.hexdigest()


@dataclass(frozen=True)
class Label:
    """A labeler's answer to one query."""

    value: float | None
    """``FIRST`` 0.0, ``SECOND`` 1.0, ``EQUAL`` 0.5, or ``CANT_TELL`` ``None``."""
    provenance: dict[str, Any] = field(default_factory=dict)
    """JSON-serializable: who answered and how (labeler, model, prompt version, raw reply, reason, tokens...)."""

    def __post_init__(self) -> None:
        if self.value not in (FIRST, SECOND, EQUAL, None):
            raise ValueError(f"label value must be 0, 1, 0.5 or None (can't tell), got {self.value!r}")


class Labeler(Protocol):
    """Answers preference queries. ``label`` yields ``(index into queries, Label)`` as answers arrive (in any
    order), so that each answer can be stored the moment it exists; it yields every index exactly once."""

    name: str
    """Short id, e.g. ``"scripted"``, ``"vlm"``, ``"human"``."""
    uses_images: bool
    """Whether answers depend on rendered frames (then the query digest covers the sim states)."""

    def identity(self) -> dict[str, Any]:
        """Everything besides the inputs that changes the answers (labeler, model, prompt version, noise
        parameters, camera, image size...): part of the label store's key. JSON-serializable."""
        ...

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        ...


def query_key(labeler: Labeler, query: Query) -> str:
    """The label store's key: sha256 of (labeler identity, query inputs)."""
    ident = json.dumps(labeler.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256((ident + "\n" + query.digest(labeler.uses_images)).encode()).hexdigest()
