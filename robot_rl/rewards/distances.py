"""Distances between reward functions known only on a dataset's transitions (EPIC / STARC style).

Two rewards that differ by potential shaping ``gamma * phi(s') - phi(s)``, a positive scale or a constant induce
the same optimal policies, so a useful distance ignores those differences. EPIC (Gleave et al., 2021) and STARC
(Skalse et al., 2024) do it in three steps: canonicalize (remove shaping), normalize (remove scale), compare with a
metric. Their canonicalizations evaluate the reward at transitions the data does not hold; reward *labels* (a
learned model's, CLIP's, reward code's, the simulator's) are known only on the dataset's transitions, so here:

1. **Canonicalize** by projecting the reward vector ``r`` (one value per transition) onto the orthogonal
   complement of the shaping subspace: ``C(r) = r - B (B^T B + lambda I)^-1 B^T r`` with columns of ``B`` the
   constant and ``gamma * phi_k(s') * (1 - terminal) - phi_k(s)`` for state features ``phi_k`` (a constant, the
   standardized state and random Fourier features of it). ``C`` is linear and maps every shaping in that class
   (and every constant) to ~0, so ``C(r + shaping) = C(r)``.
2. **Normalize**: ``C(r) / ||C(r)||``.
3. **Metric**: ``d = ||u - v|| / 2`` in ``[0, 1]``: 0 for rewards equal up to shaping and scale, ~0.71 for
   unrelated ones, 1 for opposite ones. With centered vectors this is EPIC's Pearson distance
   ``sqrt((1 - rho) / 2)`` of the canonical rewards.

The features come from the dataset alone (fixed seed), so the distances of one dataset are comparable with each
other. Shaping outside the feature class is only partly removed; with few transitions per feature the projection
removes real signal too (``min_transitions_per_feature``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["DistanceConfig", "RewardDistances", "canonicalize", "reward_distances"]

DEGENERATE = 1e-3
"""A reward whose canonical form keeps less than this fraction of its (centered) norm is pure shaping here."""


@dataclass(frozen=True)
class DistanceConfig:
    gamma: float = 0.99
    """Discount of the shaping terms (the RL discount the rewards are meant for)."""
    fourier_features: int = 128
    """Random Fourier features of the standardized state, besides the state itself (0: linear potentials only)."""
    bandwidth: float = 1.0
    """Length scale of the Fourier features, in standard deviations of the state."""
    ridge: float = 1e-6
    """Ridge term of the projection, relative to the mean squared feature norm."""
    min_transitions_per_feature: int = 20
    """Fewer features are used when the dataset has fewer transitions than this many per feature."""
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.fourier_features < 0 or self.bandwidth <= 0 or self.ridge < 0:
            raise ValueError("fourier_features >= 0, bandwidth > 0 and ridge >= 0 are required")


@dataclass
class RewardDistances:
    """Pairwise distances between named rewards on one dataset."""

    names: list[str]
    matrix: np.ndarray
    """``[K, K]`` distances in ``[0, 1]``, symmetric, zero diagonal."""
    transitions: int
    features: int
    degenerate: list[str] = field(default_factory=list)
    """Rewards that are (almost) pure shaping or constant on this dataset: their canonical form is ~0 and their
    distances are NaN."""

    def ranking(self, reference: str) -> list[tuple[str, float]]:
        """The other rewards, nearest to ``reference`` first (NaN last)."""
        i = self.names.index(reference)
        pairs = [(n, float(self.matrix[i, j])) for j, n in enumerate(self.names) if j != i]
        return sorted(pairs, key=lambda p: (np.isnan(p[1]), p[1]))

    def to_json(self) -> dict[str, object]:
        return {"names": self.names, "distances": [[None if np.isnan(x) else round(float(x), 6) for x in row]
                                                   for row in self.matrix],
                "transitions": self.transitions, "features": self.features, "degenerate": self.degenerate}


def _features(states: np.ndarray, next_states: np.ndarray, config: DistanceConfig, budget: int
              ) -> tuple[np.ndarray, np.ndarray]:
    """``phi(s)``, ``phi(s')``: standardized state plus random Fourier features (at most ``budget`` columns)."""
    mean, std = states.mean(0), states.std(0)
    keep = np.flatnonzero(std > 1e-8)[:budget]  # constant state dims carry no potential
    z, z2 = (states[:, keep] - mean[keep]) / std[keep], (next_states[:, keep] - mean[keep]) / std[keep]
    ones = np.ones((len(z), 1))  # a constant potential shapes too: gamma * c * (1 - terminal) - c
    z, z2 = np.hstack([ones, z]), np.hstack([ones, z2])
    k = int(min(config.fourier_features, max(0, budget - len(keep))))
    if k == 0:
        return z, z2
    rng = np.random.default_rng(config.seed)
    w = rng.normal(0.0, 1.0 / config.bandwidth, (z.shape[1], k))
    b = rng.uniform(0, 2 * np.pi, k)
    scale = np.sqrt(2.0 / k)
    return (np.hstack([z, scale * np.cos(z @ w + b)]), np.hstack([z2, scale * np.cos(z2 @ w + b)]))


def _shaping_basis(states: np.ndarray, next_states: np.ndarray, terminals: np.ndarray,
                   config: DistanceConfig) -> np.ndarray:
    """Columns spanning constants and shaping ``gamma * phi(s') (1 - terminal) - phi(s)`` on the transitions."""
    n = len(states)
    budget = max(1, n // config.min_transitions_per_feature - 1)
    phi, phi2 = _features(np.asarray(states, np.float64), np.asarray(next_states, np.float64), config, budget)
    shaping = config.gamma * phi2 * (1.0 - terminals.astype(np.float64))[:, None] - phi
    return np.hstack([np.ones((n, 1)), shaping])


def canonicalize(rewards: dict[str, np.ndarray], states: np.ndarray, next_states: np.ndarray,
                 terminals: np.ndarray, config: DistanceConfig | None = None) -> tuple[dict[str, np.ndarray], int]:
    """Each reward vector with its constant and potential-shaping component (in the feature class) projected out;
    also the number of basis columns."""
    config = config or DistanceConfig()
    basis = _shaping_basis(states, next_states, terminals, config)
    gram = basis.T @ basis
    gram[np.diag_indices_from(gram)] += config.ridge * np.trace(gram) / len(gram)
    factor = np.linalg.cholesky(gram)
    out = {}
    for name, r in rewards.items():
        r = np.asarray(r, np.float64)
        coef = np.linalg.solve(factor.T, np.linalg.solve(factor, basis.T @ r))
        out[name] = r - basis @ coef
    return out, basis.shape[1]


def reward_distances(rewards: dict[str, np.ndarray], states: np.ndarray, next_states: np.ndarray,
                     terminals: np.ndarray, config: DistanceConfig | None = None) -> RewardDistances:
    """Pairwise EPIC/STARC-style distances (module docstring) between the named reward vectors, each ``[N]`` over
    the same transitions (``states``/``next_states`` ``[N, D]``, ``terminals`` ``[N]``)."""
    n = len(states)
    for name, r in rewards.items():
        if np.shape(r) != (n,):
            raise ValueError(f"reward '{name}': {list(np.shape(r))} values for {n} transitions")
        bad = np.flatnonzero(~np.isfinite(r))
        if len(bad):
            raise ValueError(f"reward '{name}': non-finite value at transition {int(bad[0])} (unlabeled steps?)")
    if n < 3:
        raise ValueError(f"{n} transitions: too few to compare rewards")
    canon, features = canonicalize(rewards, states, next_states, terminals, config)
    names = list(rewards)
    units, degenerate = [], []
    for name in names:
        c = canon[name]
        norm = float(np.linalg.norm(c))
        raw = float(np.linalg.norm(np.asarray(rewards[name], np.float64) - np.mean(rewards[name])))
        if norm <= DEGENERATE * max(raw, 1e-12):
            degenerate.append(name)
            units.append(np.full(n, np.nan))
        else:
            units.append(c / norm)
    u = np.stack(units)
    matrix = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (u @ u.T))) / 2  # ||a - b|| / 2 for unit vectors
    np.fill_diagonal(matrix, 0.0)
    return RewardDistances(names, np.clip(matrix, 0.0, 1.0), n, features, degenerate)
