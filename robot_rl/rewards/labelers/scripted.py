"""The scripted teacher: preferences from the simulator's ground-truth reward, with B-Pref's noise models.

B-Pref (Lee et al., 2021): with returns R⁰, R¹ of the two segments, each step t of H weighted by γ^(H−t) (myopia):

- skip (can't tell) when both returns are below ``skip_threshold``;
- equal (½) when ``|R¹ − R⁰| < equal_threshold``;
- otherwise P(second better) = sigmoid(β (R¹ − R⁰)) (rationality β; ``inf`` answers the better one);
- then the label is flipped with probability ``mistake`` (ε).

Randomness is drawn from a generator seeded by (seed, query content), so that asking the same query again -
after a crash, say - gives the same answer.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from robot_rl.rewards.base import CANT_TELL, EQUAL, FIRST, SECOND, Label, Query


@dataclass(frozen=True)
class TeacherConfig:
    rationality: float = math.inf
    """β: inf = perfectly rational (always the higher return); small = noisy (Bradley-Terry sampling)."""
    myopia: float = 1.0
    """γ in (0, 1]: weight γ^(H−t) on step t; 1 = all steps count equally."""
    mistake: float = 0.0
    """ε: probability of flipping the label."""
    skip_threshold: float | None = None
    """Can't tell when both segments' returns are below this (None: never)."""
    equal_threshold: float = 0.0
    """Equal when the returns differ by less than this (0: only exact ties)."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.rationality > 0:
            raise ValueError(f"teacher rationality must be > 0 (inf = perfect), got {self.rationality}")
        if not 0 < self.myopia <= 1:
            raise ValueError(f"teacher myopia must be in (0, 1], got {self.myopia}")
        if not 0 <= self.mistake <= 1:
            raise ValueError(f"teacher mistake rate must be in [0, 1], got {self.mistake}")
        if self.equal_threshold < 0:
            raise ValueError(f"teacher equal_threshold must be >= 0, got {self.equal_threshold}")


class ScriptedTeacher:
    """A ``Labeler`` answering from the segments' ground-truth rewards (``Segment.true_rewards``)."""

    name = "scripted"
    uses_images = False

    def __init__(self, config: TeacherConfig | None = None) -> None:
        self.config = config or TeacherConfig()

    def identity(self) -> dict[str, Any]:
        params = {k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v)
                  for k, v in asdict(self.config).items()}
        return {"labeler": self.name, "model": "ground_truth", "prompt_version": "b-pref", **params}

    def label(self, queries: Sequence[Query]) -> Iterator[tuple[int, Label]]:
        for i, query in enumerate(queries):
            yield i, self.answer(query)

    def returns(self, query: Query) -> tuple[float, float]:
        """The two segments' (myopia-weighted) ground-truth returns; ValueError if the data has no ground truth."""
        out = []
        for seg in (query.first, query.second):
            r = np.asarray(seg.true_rewards, dtype=np.float64)
            if not np.isfinite(r).all():
                raise ValueError(f"scripted teacher: episode {seg.ref.episode} has no ground-truth reward "
                                 "(reward_labels/ground_truth); it needs data recorded in simulation")
            weights = self.config.myopia ** np.arange(len(r) - 1, -1, -1, dtype=np.float64)
            out.append(float(np.dot(weights, r)))
        return out[0], out[1]

    def answer(self, query: Query) -> Label:
        c = self.config
        r0, r1 = self.returns(query)
        prov: dict[str, Any] = {"labeler": self.name, "return_first": r0, "return_second": r1}
        if c.skip_threshold is not None and max(r0, r1) < c.skip_threshold:
            return Label(CANT_TELL, {**prov, "reason": "both returns below skip threshold"})
        if abs(r1 - r0) < c.equal_threshold or r1 == r0:
            return Label(EQUAL, prov)
        rng = np.random.default_rng([c.seed, int(query.digest(False)[:15], 16)])
        if math.isinf(c.rationality):
            second = r1 > r0
        else:
            z = c.rationality * (r1 - r0)
            p_second = 1.0 / (1.0 + math.exp(-z)) if z > -700 else 0.0
            second = bool(rng.random() < p_second)
        if c.mistake > 0 and rng.random() < c.mistake:
            second = not second
            prov["flipped"] = True
        return Label(SECOND if second else FIRST, prov)
