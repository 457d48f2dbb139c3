"""Frames for segments: read from the dataset where it stores them, else rendered on demand from stored sim states.

Renders show the simulator's own camera view of the full scene (arm included), exactly what the policy's image
observations show; nothing is hidden or modified.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from robot_rl.data import Dataset, DatasetError, Episode
from robot_rl.rewards.base import Segment, SegmentRef

DEFAULT_SIZE = (224, 224)
"""(height, width) of frames shown to VLMs, CLIP and people, unless asked otherwise."""


class FrameSource:
    """Frames of ``camera`` at ``size`` (height, width) for any step of ``dataset``'s episodes.

    A stored frame is used when the dataset holds that step at that size; otherwise the step is rendered from
    its stored sim state through the task's simulator (made lazily, once). Frames are cached by (episode, step).
    """

    def __init__(self, dataset: Dataset, camera: str | None = None, size: tuple[int, int] = DEFAULT_SIZE) -> None:
        self.dataset = dataset
        spec = dataset.spec
        if camera is None:
            if not spec.cameras:
                raise DatasetError(f"{dataset.path}: the dataset's env has no cameras; frames cannot be rendered")
            camera = spec.cameras[0]
        elif spec.cameras and camera not in spec.cameras:
            raise ValueError(f"{spec.name}: unknown camera '{camera}' (cameras: {', '.join(spec.cameras)})")
        self.camera = camera
        self.size = (int(size[0]), int(size[1]))
        self._env: Any = None
        self._stored: dict[str, tuple[np.ndarray, int] | None] = {}
        self._cache: dict[tuple[str, int], np.ndarray] = {}
        self.rendered = 0
        """How many frames were rendered (not read from the dataset) so far."""

    def identity(self) -> dict[str, Any]:
        return {"camera": self.camera, "size": list(self.size)}

    def frames(self, segment: Segment, steps: list[int] | None = None) -> np.ndarray:
        """uint8 ``[K, H, W, 3]``: the frames before the segment's steps (``steps``: offsets within the segment,
        default all of them)."""
        offsets = list(range(segment.ref.length)) if steps is None else steps
        out = np.empty((len(offsets), *self.size, 3), dtype=np.uint8)
        missing: list[tuple[int, int]] = []
        for k, off in enumerate(offsets):
            step = segment.ref.start + off
            frame = self._cached_or_stored(segment.ref.episode, step)
            if frame is None:
                missing.append((k, off))
            else:
                out[k] = frame
        if missing:
            if segment.sim_states is None:
                raise DatasetError(f"{self.dataset.path}: episode {segment.ref.episode}: no stored frame of camera "
                                   f"'{self.camera}' at {self.size[0]}x{self.size[1]} and no sim_state to render it")
            rows = np.stack([segment.sim_states[off] for _, off in missing])
            rendered = self._render(rows)
            for (k, off), frame in zip(missing, rendered, strict=True):
                out[k] = frame
                self._cache[(segment.ref.episode, segment.ref.start + off)] = frame
            self.rendered += len(missing)
        return out

    def episode_frames(self, name: str, episode: Episode) -> np.ndarray:
        """uint8 ``[T, H, W, 3]``: the frame before every step of a whole episode (``episode`` read from the
        dataset as ``name``)."""
        ref = SegmentRef(name, 0, episode.length)
        return self.frames(Segment(ref, episode.states, episode.actions, episode.rewards, episode.sim_states))

    def last_frame(self, segment: Segment) -> np.ndarray:
        """uint8 ``[H, W, 3]``: the frame at the segment's last step (what a single-frame query shows)."""
        return self.frames(segment, [segment.ref.length - 1])[0]

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def _cached_or_stored(self, episode: str, step: int) -> np.ndarray | None:
        frame = self._cache.get((episode, step))
        if frame is not None:
            return frame
        if episode not in self._stored:
            ep = self.dataset.load_episode(episode, images=True)
            images = ep.images.get(self.camera)
            ok = images is not None and tuple(images.shape[1:3]) == self.size
            self._stored[episode] = (images, ep.image_every) if ok and images is not None else None
        stored = self._stored[episode]
        if stored is None or step % stored[1]:
            return None
        return stored[0][step // stored[1]]

    def _render(self, sim_states: np.ndarray) -> np.ndarray:
        if self._env is None:
            from robot_rl.envs import make_env  # imported lazily: MuJoCo and GL only when frames must be rendered

            self._env = make_env(self.dataset.spec.name, cameras=(self.camera,), image_size=self.size)
        frames = self._env.render(torch.as_tensor(sim_states, dtype=torch.float64), self.camera,
                                  self.size[1], self.size[0])
        return np.asarray(frames.cpu().numpy(), dtype=np.uint8)
