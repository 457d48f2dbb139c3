"""Frames for segments: read from the dataset where it stores them, else rendered on demand from stored sim states.

Renders show the simulator's own camera view of the full scene (arm included), exactly what the policy's image
observations show; nothing is hidden or modified. The frames come from ``robot_rl.rl.image_data.DatasetFrames``,
the one frame source that image training uses too; this module only addresses them by segment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

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
