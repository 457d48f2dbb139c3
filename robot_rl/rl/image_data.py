"""Frames of an offline dataset: ``DatasetFrames`` (the one source of frames: stored where the dataset holds the
step at the wanted size, else rendered from the stored ``sim_state``; also behind ``robot_rl.rewards.frames``),
``step_frames`` (a frame for every step, for image IQL / BC, rendered once at load time) and the sampler that
serves them. The sim backend is imported lazily: ``robot_rl.rl`` never imports the simulators at module import
time. The default camera is ``dataset_camera``'s (the rule of ``robot_rl.envs.task_cards.default_camera``).

The image after an episode's last step is never stored (``sim_state`` holds the state *before* each step), so
the last step's next-obs image reuses the last step's own frame; its next-obs *state* is the true one. This
touches one transition per episode, and none that bootstraps when the episode ended by termination.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from robot_rl.data import Dataset, DatasetError, Episode, TransitionSampler
from robot_rl.data.layout import IMAGE_GROUP
from robot_rl.envs.task_cards import default_camera

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
    """A square frame of ``camera`` for every step of every episode of ``ds`` (in ``ds.episode_names`` order),
    from a ``DatasetFrames``: stored where the dataset holds the step at the size, else rendered.

    ``camera`` None: ``dataset_camera``'s default. ``image_size`` None: the stored frames' size when the dataset
    stores every step, else 64. Raises ``DatasetError`` (one line, naming the episode) where an episode lacks a
    frame and the sim state to render it, before rendering anything.
    """
    names = ds.episode_names
    if not names:
        raise DatasetError(f"{ds.path}: no episodes")
    camera = dataset_camera(ds, camera)
    first = ds.load_episode(names[0], images=True)
    if image_size is None:
        shape = first.images[camera].shape if camera in first.images else (0, 0, -1)
        image_size = int(shape[1]) if shape[1] == shape[2] and first.image_every == 1 else DEFAULT_IMAGE_SIZE
    size = image_size
    source = DatasetFrames(ds, camera, (size, size), cache=False)
    frames = np.empty((ds.num_transitions, size, size, 3), dtype=np.uint8)
    to_render: list[tuple[np.ndarray, np.ndarray]] = []  # (rows of frames, sim states [K, S])
    row = 0
    for name in names:
        ep = first if name == names[0] else ds.load_episode(name, images=True)
        steps = np.arange(ep.length)
        got, missing = source.lookup(name, steps, ep)
        frames[row:row + ep.length] = got
        if missing.size:
            if ep.sim_states is None:
                raise source.missing_error(name, int(missing[0]), ep)
            to_render.append((row + missing, ep.sim_states[missing]))
        row += ep.length
    total, done = sum(len(s) for _, s in to_render), 0
    if total and progress is not None:
        progress(0, total)
    try:
        for rows, states in to_render:
            for i in range(0, len(states), RENDER_CHUNK):
                chunk = states[i:i + RENDER_CHUNK]
                frames[rows[i:i + len(chunk)]] = source.render(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(done, total)
    finally:
        source.close()
    return StepFrames(frames, camera, size, total)


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


def stored_cameras(ds: Dataset) -> list[str]:
    """Cameras whose frames ``ds`` stores in any episode (from the file's layout; no frame is read)."""
    prefix = IMAGE_GROUP + "/"
    return [key[len(prefix):] for key, _, _ in ds.describe() if key.startswith(prefix)]


def dataset_camera(ds: Dataset, camera: str | None = None) -> str:
    """``camera`` (checked against the env's and the stored cameras), or the default one for ``ds``: the rule of
    ``robot_rl.envs.task_cards.default_camera`` over the cameras ``ds`` stores."""
    stored = stored_cameras(ds)
    if camera is None:
        try:
            return default_camera(ds.spec, stored)
        except ValueError as e:
            raise DatasetError(f"{ds.path}: {e}") from None
    if ds.spec.cameras and camera not in ds.spec.cameras and camera not in stored:
        raise ValueError(f"{ds.spec.name}: unknown camera '{camera}' (cameras: {', '.join(ds.spec.cameras)})")
    return camera


class DatasetFrames:
    """Frames of one camera at one size (height, width) for any step of a dataset's episodes: the one source of
    frames for image training, labelers, reward models and success classifiers.

    A stored frame is used where the dataset holds that step at that size; otherwise the step is rendered from its
    stored sim state through the task's simulator (made lazily, once; ``close()`` frees it). With ``cache``, each
    episode's stored frames and every rendered frame are kept for later calls.
    """

    def __init__(self, dataset: Dataset, camera: str | None = None, size: tuple[int, int] = (64, 64),
                 cache: bool = True) -> None:
        self.dataset = dataset
        self.camera = dataset_camera(dataset, camera)
        self.size = (int(size[0]), int(size[1]))
        self.cache = cache
        self.rendered = 0
        """How many frames were rendered (not read from the dataset) so far."""
        self._env: Any = None
        self._stored: dict[str, tuple[np.ndarray, int] | None] = {}
        self._rendered: dict[tuple[str, int], np.ndarray] = {}

    def lookup(self, name: str, steps: Sequence[int] | np.ndarray, episode: Episode | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(frames uint8 [K, H, W, 3], missing int64 [M])``: the stored (or cached) frame before each of
        ``steps`` of episode ``name``, and the positions in ``steps`` that have none (their rows are zero).
        ``episode``: the episode already read with images, to save reading it again."""
        out = np.zeros((len(steps), *self.size, 3), dtype=np.uint8)
        stored = self._stored_frames(name, episode)
        missing = []
        for k, step in enumerate(steps):
            frame = self._rendered.get((name, int(step)))
            if frame is None and stored is not None and step % stored[1] == 0:
                frame = stored[0][step // stored[1]]
            if frame is None:
                missing.append(k)
            else:
                out[k] = frame
        return out, np.asarray(missing, dtype=np.int64)

    def frames_at(self, name: str, steps: Sequence[int] | np.ndarray, sim_states: np.ndarray | None,
               episode: Episode | None = None) -> np.ndarray:
        """uint8 ``[K, H, W, 3]``: the frame before each of ``steps`` of episode ``name``; ``sim_states`` (float
        ``[K, S]``, row k the state before ``steps[k]``, or None) renders those the dataset does not store."""
        out, missing = self.lookup(name, steps, episode)
        if missing.size:
            if sim_states is None:
                raise self.missing_error(name, int(steps[missing[0]]), episode)
            rendered = self.render(sim_states[missing])
            out[missing] = rendered
            if self.cache:
                for k, frame in zip(missing, rendered, strict=True):
                    self._rendered[(name, int(steps[k]))] = frame
        return out

    def render(self, sim_states: np.ndarray) -> np.ndarray:
        """uint8 ``[K, H, W, 3]``: frames rendered from sim states ``[K, S]`` in the dataset's task."""
        if self._env is None:
            from robot_rl.envs import list_tasks, make_env  # lazily: the simulators load only to render

            task = self.dataset.spec.name
            if task not in list_tasks():
                raise DatasetError(f"no sim backend for '{task}' to render frames from the stored sim states; "
                                   "collect the dataset with --image-every 1 instead")
            self._env = make_env(task, cameras=(self.camera,), image_size=self.size)
        frames = self._env.render(torch.as_tensor(sim_states, dtype=torch.float64), self.camera,
                                  self.size[1], self.size[0])
        self.rendered += len(sim_states)
        return np.asarray(frames.cpu().numpy(), dtype=np.uint8)

    def missing_error(self, name: str, step: int, episode: Episode | None = None) -> DatasetError:
        """The one-line error for a step that has no usable frame and no sim state to render one from."""
        ep = episode if episode is not None else self.dataset.load_episode(name, images=True)
        stored = ep.images.get(self.camera)
        h, w = self.size
        why = (f"stores no frames of camera '{self.camera}'" if stored is None
               else f"stores {stored.shape[1]}x{stored.shape[2]} frames" if tuple(stored.shape[1:3]) != self.size
               else f"stores only every {ep.image_every}th frame")
        return DatasetError(f"{self.dataset.path}: episode {name}: needs a {h}x{w} frame of camera '{self.camera}' "
                            f"at step {step}; the episode {why} and has no sim_state to render it from (pick "
                            "--image-size / --camera to match the stored frames)")

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env = None

    def _stored_frames(self, name: str, episode: Episode | None) -> tuple[np.ndarray, int] | None:
        """(frames [F, H, W, 3], stride) of the episode's stored frames of the camera at the size, else None."""
        if name in self._stored:
            return self._stored[name]
        ep = episode if episode is not None and episode.images else self.dataset.load_episode(name, images=True)
        images = ep.images.get(self.camera)
        found = (images, ep.image_every) if images is not None and tuple(images.shape[1:3]) == self.size else None
        if self.cache:
            self._stored[name] = found
        return found
