"""Evaluate a policy in a sim backend: success rate and return over N episodes, plus a GIF of one episode."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robot_rl.core import RobotEnv, SimEnv
from robot_rl.envs.task_cards import default_camera

PolicyFn = Callable[[dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class EvalResult:
    episodes: int
    success_rate: float
    """Fraction of episodes in which ``info["success"]`` was ever true (NaN where the backend cannot tell)."""
    return_mean: float
    return_std: float
    length_mean: float

    def success_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Wilson score interval of the success rate (NaN, NaN where the backend cannot tell success): with 20
        episodes a 15% policy's interval is 5-36%, so compare policies on enough episodes."""
        if math.isnan(self.success_rate):
            return math.nan, math.nan
        from scipy.stats import binomtest

        ci = binomtest(round(self.success_rate * self.episodes), self.episodes).proportion_ci(confidence, "wilson")
        return float(ci.low), float(ci.high)

    def as_metrics(self, prefix: str = "eval/") -> dict[str, float]:
        return {f"{prefix}success_rate": self.success_rate, f"{prefix}return_mean": self.return_mean,
                f"{prefix}return_std": self.return_std, f"{prefix}length_mean": self.length_mean}


@torch.no_grad()
def evaluate(policy: PolicyFn, env: RobotEnv, episodes: int, seed: int = 10_000, gif: Path | None = None,
             camera: str | None = None, image_size: int = 128,
             on_episode: Callable[[int, int], None] | None = None) -> EvalResult:
    """Run ``episodes`` episodes; the first one goes to ``gif``.

    Episode ``k`` starts from ``env.reset(seed=...)`` with seed ``seed + k`` whatever the batch size: the episodes
    run in rounds of ``num_envs``, each round reset with ``seed + round * num_envs`` (env ``i`` gets ``+ i``), and
    only each env's first episode of a round counts. So 20 episodes on 1 env and on 4 envs see the same 20 layouts
    (on backends that seed env ``i`` with ``seed + i``), and episodes that end early are not over-counted. Same
    layouts are not always same trajectories: on MJX the batch size changes float rounding, which contacts can
    amplify (``benchmarks/reward_quality.md``, push).
    Frames are rendered from stored sim states after the episode, so evaluation itself runs at full speed.
    ``on_episode(done, episodes)`` is called as episodes finish (progress bars).
    """
    if episodes < 1:
        raise ValueError(f"evaluate: episodes must be >= 1, got {episodes}")
    n = env.num_envs
    done_returns: list[float] = []
    done_lengths: list[int] = []
    done_success: list[bool] = []
    has_success = True
    gif_states: list[np.ndarray] = []
    recording = gif is not None and isinstance(env, SimEnv)
    if recording and camera is None:
        try:
            camera = default_camera(env.spec)
        except ValueError:  # a backend with no camera to render (Isaac Lab here): no GIF
            recording = False
    for first in range(0, episodes, n):
        obs, info = env.reset(seed=seed + first)
        counted = min(n, episodes - first)  # the last round's extra envs step along, uncounted
        returns = np.zeros(counted)
        lengths = np.zeros(counted, dtype=np.int64)
        success = np.zeros(counted, dtype=bool)
        running = np.ones(counted, dtype=bool)
        while running.any():
            if recording and "sim_state" in info:
                gif_states.append(info["sim_state"][0].cpu().numpy())
            res = env.step(policy(obs))
            returns += np.where(running, res.reward.cpu().numpy()[:counted], 0.0)
            lengths += running
            if "success" in res.info:
                success |= running & res.info["success"].cpu().numpy()[:counted]
            else:
                has_success = False
            ended = running & (res.terminated | res.truncated).cpu().numpy()[:counted]
            if recording and ended[0]:
                recording = False
                _write_gif(env, np.stack(gif_states), gif, camera, image_size)  # type: ignore[arg-type]
            running &= ~ended
            for i in np.flatnonzero(ended):
                done_returns.append(float(returns[i]))
                done_lengths.append(int(lengths[i]))
                done_success.append(bool(success[i]))
                if on_episode is not None:
                    on_episode(len(done_returns), episodes)
            obs, info = res.obs, res.info
    r = np.array(done_returns)
    return EvalResult(episodes, float(np.mean(done_success)) if has_success else float("nan"),
                      float(r.mean()), float(r.std()), float(np.mean(done_lengths)))


def _write_gif(env: SimEnv, states: np.ndarray, path: Path, camera: str | None, size: int, max_frames: int = 60
               ) -> None:
    from PIL import Image

    step = max(1, len(states) // max_frames)
    cam = camera or default_camera(env.spec)
    frames = env.render(torch.from_numpy(states[::step]), cam, size, size).cpu().numpy()
    images = [Image.fromarray(f) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=100, loop=0)
