"""Behaviours that generate data, and the named presets that mix them into datasets.

Noise alone does not make a dataset sub-optimal: MetaWorld's drawer-open expert still succeeds 97-100% with
Gaussian action noise sigma = 1.0, and behaviour cloning on such data succeeds too. The ``suboptimal``
preset therefore mixes episodes that fail in structured ways (the expert switching to random actions
part way, the expert chasing a wrong goal) with random episodes and a minority of noisy-expert successes,
so that imitating the data is clearly worse than the best of it.

A behaviour is chosen per episode; it maps the current state (float32 ``[D]``) and step index to an
action (float32 ``[A]``, clipped to ``[-1, 1]`` by the caller).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Expert = Callable[[np.ndarray], np.ndarray]
"""A scripted policy: state float32 ``[D]`` -> action ``[A]``."""


@dataclass(frozen=True)
class BehaviourSpec:
    """One component of a preset: a behaviour kind, its parameters and its share of the episodes."""

    kind: str
    """``expert``, ``random``, ``expert_then_random`` or ``wrong_goal``."""
    weight: float
    """Relative share of episodes that use this behaviour."""
    noise: float | None = None
    """Gaussian action noise sigma for the expert parts (``None``: the preset default for ``--noise``)."""
    params: dict[str, Any] = field(default_factory=dict)
    """``expert_then_random``: ``switch`` = (lo, hi) fraction of the episode at which the expert hands over.
    ``wrong_goal``: ``offset`` = (lo, hi) metres by which the target the expert sees is moved."""


PRESETS: dict[str, tuple[BehaviourSpec, ...]] = {
    "expert": (BehaviourSpec("expert", 1.0, noise=0.1),),
    "noisy": (BehaviourSpec("expert", 1.0, noise=1.0),),
    "random": (BehaviourSpec("random", 1.0),),
    "suboptimal": (
        BehaviourSpec("expert", 0.2, noise=0.3),
        BehaviourSpec("expert_then_random", 0.3, noise=0.3, params={"switch": (0.15, 0.5)}),
        BehaviourSpec("wrong_goal", 0.25, noise=0.3, params={"offset": (0.08, 0.2)}),
        BehaviourSpec("random", 0.25),
    ),
}
"""Named dataset presets. ``suboptimal`` is the default: mostly failures that contain useful pieces."""

NEEDS_EXPERT = frozenset({"expert", "expert_then_random", "wrong_goal"})

TARGET_SLICE_NAMES = ("obj_pos", "goal_pos")
"""State slices that ``wrong_goal`` moves before the expert sees them (the targets scripted policies aim at)."""


class Behaviour:
    """One episode's behaviour, with its own RNG so that episodes are reproducible from a seed."""

    def __init__(self, spec: BehaviourSpec, expert: Expert | None, action_dim: int, episode_length: int,
                 rng: np.random.Generator, target_slices: list[slice], default_noise: float | None = None):
        if spec.kind in NEEDS_EXPERT and expert is None:
            raise ValueError(f"behaviour '{spec.kind}' needs a scripted expert, and this task has none "
                             "(use --preset random)")
        self.spec = spec
        self.expert = expert
        self.action_dim = action_dim
        self.rng = rng
        noise = spec.noise if default_noise is None or spec.kind == "random" else default_noise
        self.noise = 0.0 if noise is None else float(noise)
        self.attrs: dict[str, Any] = {"behaviour": spec.kind, "noise": self.noise}
        self.switch_step = episode_length + 1
        self.offset = np.zeros(0, dtype=np.float32)
        self.target_slices = target_slices
        if spec.kind == "expert_then_random":
            lo, hi = spec.params.get("switch", (0.2, 0.7))
            self.switch_step = int(rng.uniform(lo, hi) * episode_length)
            self.attrs["switch_step"] = self.switch_step
        elif spec.kind == "wrong_goal":
            lo, hi = spec.params.get("offset", (0.08, 0.2))
            direction = rng.normal(size=3)
            direction /= np.linalg.norm(direction) + 1e-9
            self.offset = (direction * rng.uniform(lo, hi)).astype(np.float32)
            self.attrs["goal_offset"] = self.offset.tolist()

    def act(self, state: np.ndarray, t: int) -> np.ndarray:
        """state float32 ``[D]``, step index ``t`` -> action float32 ``[A]`` (not yet clipped)."""
        kind = self.spec.kind
        if kind == "random" or (kind == "expert_then_random" and t >= self.switch_step):
            return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)
        assert self.expert is not None
        seen = state
        if kind == "wrong_goal":
            seen = state.copy()
            for sl in self.target_slices:
                seen[sl] += self.offset
        action = np.asarray(self.expert(seen), dtype=np.float32)
        if self.noise > 0:
            action = action + self.rng.normal(0.0, self.noise, self.action_dim).astype(np.float32)
        return action


def choose_behaviour(preset: tuple[BehaviourSpec, ...], rng: np.random.Generator) -> BehaviourSpec:
    weights = np.array([b.weight for b in preset], dtype=np.float64)
    return preset[int(rng.choice(len(preset), p=weights / weights.sum()))]


def resolve_preset(name: str) -> tuple[BehaviourSpec, ...]:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}") from None
