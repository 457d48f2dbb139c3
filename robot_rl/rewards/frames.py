"""Frames for segments: read from the dataset where it stores them, else rendered on demand from stored sim states.

Renders show the simulator's own camera view of the full scene (arm included), exactly what the policy's image
observations show; nothing is hidden or modified. The frames come from ``robot_rl.rl.image_data.DatasetFrames``,
the one frame source that image training uses too; this module only addresses them by segment.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robot_rl.data import Dataset, Episode
from robot_rl.rewards.base import Segment
from robot_rl.rl.image_data import DatasetFrames

DEFAULT_SIZE = (224, 224)
"""(height, width) of frames shown to VLMs, CLIP and people, unless asked otherwise."""


class FrameSource(DatasetFrames):
    """Frames of ``camera`` (default: ``dataset_camera``'s) at ``size`` (height, width) for any step of
    ``dataset``'s episodes, addressed by segment. Stored and rendered frames are cached by (episode, step)."""

    def __init__(self, dataset: Dataset, camera: str | None = None, size: tuple[int, int] = DEFAULT_SIZE) -> None:
        super().__init__(dataset, camera, size)

    def identity(self) -> dict[str, Any]:
        return {"camera": self.camera, "size": list(self.size)}

    def frames(self, segment: Segment, steps: list[int] | None = None) -> np.ndarray:
        """uint8 ``[K, H, W, 3]``: the frames before the segment's steps (``steps``: offsets within the segment,
        default all of them)."""
        offsets = np.arange(segment.ref.length) if steps is None else np.asarray(steps, dtype=np.int64)
        sim_states = None if segment.sim_states is None else segment.sim_states[offsets]
        return self.frames_at(segment.ref.episode, segment.ref.start + offsets, sim_states)

    def episode_frames(self, name: str, episode: Episode) -> np.ndarray:
        """uint8 ``[T, H, W, 3]``: the frame before every step of a whole episode (``episode`` read from the
        dataset as ``name``)."""
        return self.frames_at(name, np.arange(episode.length), episode.sim_states,
                              episode if episode.images else None)

    def last_frame(self, segment: Segment) -> np.ndarray:
        """uint8 ``[H, W, 3]``: the frame at the segment's last step (what a single-frame query shows)."""
        return self.frames(segment, [segment.ref.length - 1])[0]


class EpisodeFrames:
    """The frames of every step of a dataset's episodes at one camera and square size (stored, or rendered from
    sim states), the frame source opened on first use and again for another dataset."""

    def __init__(self, camera: str | None, size: int) -> None:
        self.camera, self.size = camera, size
        self._source: Any = None

    def of(self, ds: Dataset, name: str, episode: Episode) -> Any:
        """uint8 ``[T, size, size, 3]``: the frame before every step of episode ``name``."""
        if self._source is None or self._source.dataset is not ds:
            self._source = FrameSource(ds, self.camera, (self.size, self.size))
        return self._source.episode_frames(name, episode)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()


def online_camera(context: Any, camera: str | None) -> str:
    """The camera an online image source reads: its own, else the default one of the run's dataset (``context``: a
    ``sources.SourceContext``)."""
    if context.ds is not None:
        return FrameSource(context.ds, camera).camera
    with Dataset(context.dataset) as ds:
        return FrameSource(ds, camera).camera


def camera_frames(obs: dict[str, torch.Tensor], camera_input: tuple[str, int]) -> torch.Tensor:
    """uint8 ``[N, size, size, 3]`` of ``obs["image/<camera>"]``; a one-line error when the env does not render it."""
    camera, size = camera_input
    key = f"image/{camera}"
    if key not in obs:
        raise ValueError(f"the reward reads frames of camera '{camera}' but the environment renders "
                         f"{sorted(k for k in obs if k.startswith('image/')) or 'none'}; build it with "
                         f"cameras=('{camera}',), image_size=({size}, {size})")
    frames = obs[key]
    if tuple(frames.shape[-3:]) != (size, size, 3):
        raise ValueError(f"the reward reads {size}x{size} frames of camera '{camera}', the environment renders "
                         f"{tuple(frames.shape[-3:-1])}")
    return frames
