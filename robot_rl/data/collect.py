"""Collect rollouts from any ``RobotEnv`` into a dataset, one behaviour per episode.

Works on batched envs: each of the N env slots runs its own episode; finished episodes are written as
soon as they end (memory holds at most one episode per slot), in the order they finish.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from robot_rl.core import RobotEnv, SimEnv
from robot_rl.data.behaviours import TARGET_SLICE_NAMES, Behaviour, BehaviourSpec, Expert, choose_behaviour
from robot_rl.data.episode import Episode
from robot_rl.data.writer import DatasetWriter


@dataclass(frozen=True)
class ImageOptions:
    """Which frames to store as images (rendered from the stored sim state at the end of each episode)."""

    camera: str
    """Camera name (see ``env.spec.cameras``)."""
    every: int = 1
    """Store the frame of every k-th step (frame j is step j * every)."""
    width: int = 128
    height: int = 128


@dataclass
class _Slot:
    """The episode in progress in one env slot (lists of per-step numpy rows)."""

    behaviour: Behaviour
    env_seed: int | None
    episode_in_env: int
    rows: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def add(self, key: str, value: np.ndarray) -> None:
        self.rows.setdefault(key, []).append(value)

    @property
    def length(self) -> int:
        return len(self.rows.get("actions", []))


def resume_seed(stored: Iterable[int | None], seed: int | None, num_envs: int) -> int:
    """The ``seed`` for a ``collect`` that appends to episodes recorded with env seeds ``stored``.

    ``None`` continues the sequence after the largest stored seed (0 if none is known), so that no env is reset
    with a seed already used: the same seed replays the same layouts and behaviours, i.e. records the same
    episodes again. An explicit ``seed`` whose envs (``seed .. seed + num_envs - 1``) would reuse one is refused.
    """
    known = {s for s in stored if s is not None and s >= 0}
    after = max(known) + 1 if known else 0
    if seed is None:
        return after
    reused = sorted(known & set(range(seed, seed + num_envs)))
    if reused:
        raise ValueError(f"seed {seed} would record again the episodes of env seed(s) "
                         f"{', '.join(map(str, reused))}, already stored; use a seed >= {after}")
    return seed


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().cpu().numpy()


def collect(
    env: RobotEnv,
    writer: DatasetWriter,
    episodes: int,
    preset: tuple[BehaviourSpec, ...],
    expert: Expert | None = None,
    seed: int = 0,
    noise: float | None = None,
    images: ImageOptions | None = None,
    on_episode: Callable[[str, Episode], None] | None = None,
) -> list[str]:
    """Run ``episodes`` full episodes with behaviours drawn from ``preset`` and write each to ``writer``.

    ``noise`` overrides the Gaussian action-noise sigma of every expert behaviour in the preset.
    Env ``i`` is reset with ``seed + i``; its k-th episode after that reset is recorded with attrs
    ``env_seed = seed + i`` and ``episode_in_env = k``, which reproduces its layout.
    Returns the names of the written episodes.
    """
    names: list[str] = []
    for _, finished in rollouts(env, preset, expert, seed, noise, images):
        for _, ep in finished:
            name = writer.add_episode(ep)
            names.append(name)
            if on_episode is not None:
                on_episode(name, ep)
            if len(names) >= episodes:
                return names
    return names


def rollouts(
    env: RobotEnv,
    preset: tuple[BehaviourSpec, ...],
    expert: Expert | None = None,
    seed: int = 0,
    noise: float | None = None,
    images: ImageOptions | None = None,
    first_slot: int = 0,
) -> Iterator[tuple[int, list[tuple[int, Episode]]]]:
    """Episodes of ``env``'s slots, without end: one ``(step, [(slot, episode), ...])`` per env step, the episodes
    that ended at that step in slot order (often none).

    ``env``'s slot ``j`` is slot ``first_slot + j`` of a larger batch: reset with ``seed + first_slot + j``, its
    behaviours drawn from ``default_rng([seed, first_slot + j, k])``. So envs holding slots ``0..a-1`` and
    ``a..n-1`` give together exactly the episodes of one env of ``n`` slots (what ``scale.collect`` relies on).
    """
    if images is not None and not isinstance(env, SimEnv):
        raise ValueError(f"{env.spec.name}: images are rendered from stored sim states, and this backend has none")
    spec = env.spec
    targets = [spec.state_slice(n) for n in TARGET_SLICE_NAMES if any(s.name == n for s in spec.state_slices)]
    n = env.num_envs

    def new_behaviour(i: int, k: int) -> Behaviour:
        rng = np.random.default_rng([seed, first_slot + i, k])
        return Behaviour(choose_behaviour(preset, rng), expert, spec.action.dim, spec.max_episode_steps, rng,
                         targets, default_noise=noise)

    # Build the first behaviours before touching the env, so a preset that needs a missing expert fails fast.
    slots = [_Slot(new_behaviour(i, 0), seed + first_slot + i, 0) for i in range(n)]
    obs, info = env.reset(seed=seed + first_slot)
    step = 0
    while True:
        state = _np(obs["state"])
        actions = np.stack([s.behaviour.act(state[i], s.length) for i, s in enumerate(slots)])
        actions = np.clip(actions, -1.0, 1.0).astype(np.float32)  # NaN stays NaN: the env names the env index
        res = env.step(torch.from_numpy(actions).to(env.device))
        done = _np(res.terminated | res.truncated)
        next_state = _np(res.obs["state"]).copy()
        if done.any():
            final = _np(res.info["final_obs"]["state"])
            next_state[done] = final[done]
        per_step = {
            "states": state, "actions": actions, "rewards": _np(res.reward), "next_states": next_state,
            "terminals": _np(res.terminated), "dones": done,
        }
        if "success" in res.info:
            per_step["successes"] = _np(res.info["success"])
        if "sim_state" in info:
            per_step["sim_states"] = _np(info["sim_state"])
        if "privileged" in obs:
            per_step["privileged"] = _np(obs["privileged"])
        for i, slot in enumerate(slots):
            for key, value in per_step.items():
                slot.add(key, value[i])
        finished: list[tuple[int, Episode]] = []
        for i in np.flatnonzero(done).tolist():
            finished.append((first_slot + i, _finish(env, slots[i], images)))
            slots[i] = _Slot(new_behaviour(i, slots[i].episode_in_env + 1), slots[i].env_seed,
                             slots[i].episode_in_env + 1)
        yield step, finished
        step += 1
        obs, info = res.obs, res.info


def _finish(env: RobotEnv, slot: _Slot, images: ImageOptions | None) -> Episode:
    rows = {k: np.stack(v) for k, v in slot.rows.items()}
    rewards = rows["rewards"].astype(np.float32)
    labels = {}
    if np.isfinite(rewards).all():
        labels["ground_truth"] = (rewards.copy(), {
            "labeler": "ground_truth", "source": env.spec.name,
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        })
    frames: dict[str, np.ndarray] = {}
    every = 1
    if images is not None and isinstance(env, SimEnv) and "sim_states" in rows:
        every = images.every
        states = torch.from_numpy(rows["sim_states"][::every])
        frames[images.camera] = _np(env.render(states, images.camera, images.width, images.height))
    return Episode(
        states=rows["states"].astype(np.float32),
        actions=rows["actions"].astype(np.float32),
        rewards=rewards,
        next_states=rows["next_states"].astype(np.float32),
        terminals=rows["terminals"].astype(bool),
        dones=rows["dones"].astype(bool),
        successes=rows["successes"].astype(bool) if "successes" in rows else None,
        sim_states=rows.get("sim_states"),
        privileged=rows["privileged"].astype(np.float32) if "privileged" in rows else None,
        images=frames,
        image_every=every,
        seed=slot.env_seed,
        reward_labels=labels,
        attrs={**slot.behaviour.attrs, "episode_in_env": slot.episode_in_env},
    )
