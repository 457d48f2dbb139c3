"""``rl.evaluate``: episode ``k`` is seeded ``seed + k`` whatever the batch size, and episodes that end early are
not over-counted (real gymnasium Hopper, whose episodes end when it falls)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robot_rl.envs import make_env
from robot_rl.rl.evaluate import EvalResult, evaluate


class _Linear:
    """A fixed linear policy: how long Hopper stays up, and what it earns, depends on the episode's first state."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.w = torch.randn(obs_dim, act_dim, generator=torch.Generator().manual_seed(0))

    def __call__(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.tanh(obs["state"] @ self.w)


def _run(num_envs: int, episodes: int) -> tuple[list[float], int]:
    env = make_env("gym/Hopper-v5", num_envs=num_envs)
    try:
        policy = _Linear(env.spec.observations["state"].shape[0], env.spec.action.dim)
        seen: list[int] = []
        res = evaluate(policy, env, episodes, seed=123, on_episode=lambda done, _: seen.append(done))
    finally:
        env.close()
    assert seen == list(range(1, episodes + 1))
    return [res.return_mean, res.return_std, res.length_mean], res.episodes


@pytest.mark.parametrize("num_envs", [3, 4])
def test_the_same_episodes_whatever_the_batch(num_envs: int) -> None:
    one, n1 = _run(1, 7)
    many, n2 = _run(num_envs, 7)
    assert n1 == n2 == 7
    np.testing.assert_allclose(many, one, rtol=1e-5)  # the same 7 first states: the same returns and lengths


def test_episodes_that_end_early_are_not_over_counted() -> None:
    """On 4 envs, an env whose Hopper falls early would finish more episodes if every finished episode counted; counted
    per round, 8 episodes on 4 envs equal 8 single-env episodes seeded ``seed + k``."""
    env = make_env("gym/Hopper-v5", num_envs=1)
    policy = _Linear(env.spec.observations["state"].shape[0], env.spec.action.dim)
    lengths = []
    try:
        for k in range(8):
            lengths.append(evaluate(policy, env, 1, seed=123 + k).length_mean)
    finally:
        env.close()
    assert len(set(lengths)) > 1  # the first state decides how long the episode lasts: the check means something
    assert _run(4, 8)[0][2] == pytest.approx(float(np.mean(lengths)))


def test_no_episodes_is_an_error() -> None:
    env = make_env("gym/Hopper-v5", num_envs=1)
    try:
        with pytest.raises(ValueError, match="episodes must be >= 1"):
            evaluate(lambda obs: torch.zeros(1, 3), env, 0)
    finally:
        env.close()


@pytest.mark.parametrize(("successes", "episodes"), [(0, 20), (3, 20), (13, 100), (100, 100)])
def test_the_success_interval_is_wilsons(successes: int, episodes: int) -> None:
    z = 1.959963984540054  # the normal's 97.5% quantile
    p, n = successes / episodes, episodes
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    res = EvalResult(episodes, p, 0.0, 0.0, 100.0)
    assert res.success_interval() == pytest.approx((max(centre - half, 0.0), min(centre + half, 1.0)), abs=1e-9)


@pytest.mark.parametrize(("successes", "episodes", "low", "high"), [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0)])
def test_the_success_interval_matches_newcombes_published_wilson_intervals(successes: int, episodes: int, low: float,
                                                                          high: float) -> None:
    """Newcombe (1998), Statistics in Medicine 17:857-872, worked examples, method 3 (score interval without
    continuity correction): values published to four decimals."""
    res = EvalResult(episodes, successes / episodes, 0.0, 0.0, 100.0)
    assert res.success_interval() == pytest.approx((low, high), abs=6e-5)


def test_no_interval_without_success() -> None:
    assert all(np.isnan(EvalResult(10, float("nan"), 0.0, 0.0, 100.0).success_interval()))
