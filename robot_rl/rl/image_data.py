"""A camera frame for every step of an offline dataset, for image IQL / BC, and the sampler that serves them.

Frames come from the dataset when it stores every step (``image_every == 1``) at the wanted size; otherwise they
are rendered once, at load time, from the stored ``sim_state`` rows through the sim backend (imported lazily:
``robot_rl.rl`` never imports the simulators at module import time).

The image after an episode's last step is never stored (``sim_state`` holds the state *before* each step), so
the last step's next-obs image reuses the last step's own frame; its next-obs *state* is the true one. This
touches one transition per episode, and none that bootstraps when the episode ended by termination.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from robot_rl.data import Dataset, DatasetError, TransitionSampler

DEFAULT_IMAGE_SIZE = 64
RENDER_CHUNK = 64
"""States rendered per ``env.render`` call (and per progress report)."""

RenderProgress = Callable[[int, int], None]
"""``(frames rendered so far, frames to render)``, called before the first and after every chunk."""


@dataclass(frozen=True)
class StepFrames:
    frames: np.ndarray
    """uint8 ``[N, S, S, 3]``: the frame before step i, rows in ``Dataset.transitions()`` order."""
    camera: str
    image_size: int
    """S, pixels."""
    rendered: int
    """How many of the N frames were rendered from sim states (the rest were read from the dataset)."""


def step_frames(ds: Dataset, camera: str | None = None, image_size: int | None = None,
                progress: RenderProgress | None = None) -> StepFrames:
    """A square frame of ``camera`` for every step of every episode of ``ds`` (in ``ds.episode_names`` order).

    ``camera`` None: the dataset's only stored camera; with none stored, the task's default camera.
    ``image_size`` None: the stored frames' size when the dataset stores every step, else 64.
    Raises ``DatasetError`` (one line, naming the episode) where an episode has neither usable frames nor sim
    states.
    """
    names = ds.episode_names
    if not names:
        raise DatasetError(f"{ds.path}: no episodes")
    first = ds.load_episode(names[0], images=True)
    camera = camera or _default_camera(ds, sorted(first.images))
    if image_size is None:
        shape = first.images[camera].shape if camera in first.images else (0, 0, -1)
        image_size = int(shape[1]) if shape[1] == shape[2] and first.image_every == 1 else DEFAULT_IMAGE_SIZE
    size = image_size
    frames = np.empty((ds.num_transitions, size, size, 3), dtype=np.uint8)
    to_render: list[tuple[int, np.ndarray]] = []  # (first row, sim states [T, S])
    row = 0
    for name in names:
        ep = first if name == names[0] else ds.load_episode(name, images=True)
        stored = ep.images.get(camera)
        if stored is not None and ep.image_every == 1 and stored.shape[1:3] == (size, size):
            frames[row:row + ep.length] = stored
        elif ep.sim_states is not None:
            to_render.append((row, ep.sim_states))
        else:
            why = (f"stores no frames of camera '{camera}'" if stored is None
                   else f"stores only every {ep.image_every}th frame" if ep.image_every != 1
                   else f"stores {stored.shape[1]}x{stored.shape[2]} frames")
            raise DatasetError(f"{ds.path}: episode {name}: image training needs a {size}x{size} frame of camera "
                               f"'{camera}' at every step; the episode {why} and has no sim_state to render them "
                               "from (pick --image-size / --camera to match the stored frames)")
        row += ep.length
    if to_render:
        _render(ds.spec.name, to_render, frames, camera, progress)
    return StepFrames(frames, camera, size, sum(len(s) for _, s in to_render))


def next_frame_rows(episode_index: np.ndarray) -> np.ndarray:
    """int64 ``[N]``: the row of the frame after each step: ``i + 1``, or ``i`` itself at an episode's last step
    (rows grouped by episode, steps in order, as ``Dataset.transitions()`` returns them)."""
    n = len(episode_index)
    last = np.ones(n, dtype=bool)
    last[:-1] = episode_index[1:] != episode_index[:-1]
    return np.arange(n, dtype=np.int64) + ~last


class FrameSampler(TransitionSampler):
    """A ``TransitionSampler`` that adds ``image`` and ``next_image`` uint8 ``[B, S, S, 3]`` to each batch.

    ``transitions`` holds ``frame`` and ``next_frame`` (int64 ``[N]``: rows of ``frames``); they are replaced by
    the images in the batch. ``frames`` (uint8 ``[F, S, S, 3]``) moves to ``device`` once, like the rest.
    """

    def __init__(self, transitions: Mapping[str, np.ndarray | torch.Tensor], frames: np.ndarray | torch.Tensor,
                 device: torch.device | str = "cpu", seed: int = 0) -> None:
        super().__init__(transitions, device, seed)
        self.frames = torch.as_tensor(frames).to(self.device)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        batch = super().sample(batch_size)
        batch["image"] = self.frames[batch.pop("frame")]
        batch["next_image"] = self.frames[batch.pop("next_frame")]
        return batch


def _default_camera(ds: Dataset, stored: list[str]) -> str:
    if len(stored) > 1:
        raise DatasetError(f"{ds.path}: stores images of cameras {', '.join(stored)}; pick one (--camera)")
    if stored:
        return stored[0]
    camera = ds.spec.extras.get("camera") or (ds.spec.cameras[0] if ds.spec.cameras else None)
    if not camera:
        raise DatasetError(f"{ds.path}: stores no images and '{ds.spec.name}' names no camera to render from")
    return str(camera)


def _render(task: str, to_render: list[tuple[int, np.ndarray]], frames: np.ndarray, camera: str,
            progress: RenderProgress | None) -> None:
    """Render ``to_render`` episodes' sim states into ``frames`` rows (``frames`` square, ``[N, S, S, 3]``)."""
    from robot_rl.envs import list_tasks, make_env  # lazily: the simulators load only when frames are rendered

    if task not in list_tasks():
        raise DatasetError(f"no sim backend for '{task}' to render frames from the stored sim states; "
                           "collect the dataset with --image-every 1 instead")
    size = frames.shape[1]
    total, done = sum(len(s) for _, s in to_render), 0
    if progress is not None:
        progress(0, total)
    env = make_env(task)
    try:
        for row, states in to_render:
            for i in range(0, len(states), RENDER_CHUNK):
                chunk = torch.from_numpy(states[i:i + RENDER_CHUNK])
                frames[row + i:row + i + len(chunk)] = env.render(chunk, camera, size, size).cpu().numpy()
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    finally:
        env.close()
