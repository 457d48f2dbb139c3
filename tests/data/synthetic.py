"""Deterministic synthetic episodes and a small spec for the dataset tests (no simulator needed)."""

from __future__ import annotations

import numpy as np

from robot_rl.core import ActionSpec, ArraySpec, EnvSpec, StateSlice
from robot_rl.data import GROUND_TRUTH, Episode

STATE_DIM, ACTION_DIM, SIM_DIM, PRIV_DIM = 4, 2, 5, 3


def make_spec() -> EnvSpec:
    return EnvSpec(
        name="toy/point-v0",
        observations={"state": ArraySpec((STATE_DIM,)), "privileged": ArraySpec((PRIV_DIM,)),
                      "image/front": ArraySpec((16, 16, 3), "uint8")},
        action=ActionSpec(ACTION_DIM, "ee_delta", scale=(0.1, 0.1), offset=(0.0, 0.0)),
        state_slices=(StateSlice("hand_pos", 0, 2, "m"), StateSlice("goal_pos", 2, 4, "m")),
        max_episode_steps=50, task_text="reach the goal", sim_state_dim=SIM_DIM, cameras=("front",),
    )


def make_episode(seed: int, length: int | None = None, every: int = 3, hw: int = 16,
                 cameras: tuple[str, ...] = ("front",), labeled: bool = True) -> Episode:
    """Episode whose every array is a function of ``seed`` (so a test can regenerate what a writer wrote)."""
    rng = np.random.default_rng(seed)
    t = int(rng.integers(5, 30)) if length is None else length
    states = rng.normal(size=(t + 1, STATE_DIM)).astype(np.float32)
    terminated = bool(seed % 2)
    terminals = np.zeros(t, dtype=bool)
    terminals[-1] = terminated
    dones = np.zeros(t, dtype=bool)
    dones[-1] = True
    rewards = rng.normal(size=t).astype(np.float32) if labeled else np.full(t, np.nan, dtype=np.float32)
    successes = rng.random(t) < 0.1
    frames = {cam: rng.integers(0, 256, size=(-(-t // every), hw, hw, 3), dtype=np.uint8) for cam in cameras}
    labels = {GROUND_TRUTH: (rewards.copy(), {"labeler": "ground_truth", "source": "toy", "time": "2026-01-01"})}
    return Episode(
        states=states[:-1], actions=rng.uniform(-1, 1, size=(t, ACTION_DIM)).astype(np.float32), rewards=rewards,
        next_states=states[1:], terminals=terminals, dones=dones, successes=successes,
        sim_states=rng.normal(size=(t, SIM_DIM)), privileged=rng.normal(size=(t, PRIV_DIM)).astype(np.float32),
        images=frames, image_every=every, seed=seed, reward_labels=labels if labeled else {},
        attrs={"behaviour": "noisy_expert", "noise": 0.25, "goal_offset": [0.1, -0.2]},
    )


def crash_episode(seed: int) -> Episode:
    """What ``crash_writer.py`` writes for ``seed``: 40 steps, two cameras at 48x48 every step (slow to write)."""
    return make_episode(seed, length=40, every=1, hw=48, cameras=("front", "wrist"))


def assert_same_episode(got: Episode, want: Episode, images: bool = True) -> None:
    for key in ("states", "actions", "next_states", "terminals", "dones", "successes", "sim_states", "privileged"):
        a, b = getattr(got, key), getattr(want, key)
        assert a.dtype == b.dtype and a.shape == b.shape, key
        np.testing.assert_array_equal(a, b, err_msg=key)
    np.testing.assert_array_equal(got.rewards, want.rewards)  # NaN == NaN here
    assert got.seed == want.seed and got.success == want.success and got.length == want.length
    assert set(got.reward_labels) == set(want.reward_labels)
    for lid, (values, provenance) in want.reward_labels.items():
        np.testing.assert_array_equal(got.reward_labels[lid][0], values)
        assert got.reward_labels[lid][1] == provenance
    assert got.attrs["behaviour"] == want.attrs["behaviour"] and got.attrs["noise"] == want.attrs["noise"]
    np.testing.assert_allclose(got.attrs["goal_offset"], want.attrs["goal_offset"])
    if images:
        assert got.image_every == want.image_every
        assert set(got.images) == set(want.images)
        for cam, frames in want.images.items():
            assert got.images[cam].dtype == np.uint8
            np.testing.assert_array_equal(got.images[cam], frames)
