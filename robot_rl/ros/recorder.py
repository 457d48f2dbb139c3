"""Recorder logic of the recorder node: steps in memory, episodes into the project's HDF5 format.

``start`` opens an episode, ``record`` appends one step (state, normalized action, optional images), ``mark_success``
flags it, ``stop`` commits it through ``DatasetWriter`` (one crash-safe commit per episode). Rewards are NaN: a
labeler or the reward model fills them later (``robot-rl relabel``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from robot_rl.core.specs import EnvSpec
from robot_rl.data.episode import Episode
from robot_rl.data.writer import DatasetWriter


class RecorderError(RuntimeError):
    """A recorder call out of order (e.g. ``record`` before ``start``); one line."""


@dataclass
class _Buffer:
    states: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    images: dict[str, list[np.ndarray]] = field(default_factory=dict)
    success: bool = False


class EpisodeRecorder:
    """Writes recorded episodes to one dataset file (created, or appended to with ``resume``)."""

    def __init__(self, path: str | os.PathLike[str], spec: EnvSpec, source: str = "ros2", task_text: str | None = None,
                 resume: bool = False, cameras: tuple[str, ...] = ()):
        self.spec = spec
        self.cameras = cameras
        Path(path).parent.mkdir(parents=True, exist_ok=True)  # the default output is recordings/robot.h5
        self.writer = DatasetWriter(path, spec, source, task_text, resume=resume, image_compression="lzf")
        self._buffer: _Buffer | None = None
        self._seen_state: np.ndarray | None = None

    @property
    def recording(self) -> bool:
        return self._buffer is not None

    @property
    def num_steps(self) -> int:
        return len(self._buffer.states) if self._buffer is not None else 0

    def start(self) -> None:
        """Begin an episode (the ``~/start`` service); an episode already open is discarded."""
        self._buffer = _Buffer(images={c: [] for c in self.cameras})

    def record(self, state: np.ndarray, action: np.ndarray, images: Mapping[str, np.ndarray] | None = None) -> bool:
        """Append one step; returns False (and records nothing) when not recording. Raises ``RecorderError`` on
        a non-finite state or action, or a missing camera image."""
        s = np.asarray(state, dtype=np.float32).reshape(-1)
        if np.all(np.isfinite(s)):
            self._seen_state = s
        if self._buffer is None:
            return False
        a = np.asarray(action, dtype=np.float32).reshape(-1)
        if s.shape != (self.spec.state_dim,) or a.shape != (self.spec.action.dim,):
            raise RecorderError(f"step has state {list(s.shape)} and action {list(a.shape)}, expected "
                                f"[{self.spec.state_dim}] and [{self.spec.action.dim}]")
        if not (np.all(np.isfinite(s)) and np.all(np.isfinite(a))):
            raise RecorderError("step has a non-finite state or action; not recorded")
        for cam in self.cameras:
            if images is None or cam not in images:
                raise RecorderError(f"step lacks the image of camera '{cam}'")
            self._buffer.images[cam].append(np.asarray(images[cam], dtype=np.uint8))
        self._buffer.states.append(s)
        self._buffer.actions.append(np.clip(a, -1.0, 1.0))  # finite checked above
        return True

    def observe(self, state: np.ndarray) -> None:
        """Note the latest state without recording a step (the final next-state of the episode); non-finite
        states are ignored."""
        s = np.asarray(state, dtype=np.float32).reshape(-1)
        if np.all(np.isfinite(s)):
            self._seen_state = s

    def mark_success(self) -> None:
        """Flag the open episode as successful (the ``~/mark_success`` service)."""
        if self._buffer is None:
            raise RecorderError("not recording: call start first")
        self._buffer.success = True

    def stop(self) -> str | None:
        """End the episode and commit it; returns its name (``demo_<i>``), or ``None`` if it had no steps."""
        if self._buffer is None:
            raise RecorderError("not recording: call start first")
        buf, self._buffer = self._buffer, None
        t = len(buf.states)
        if t == 0:
            return None
        states = np.stack(buf.states)
        last = self._seen_state if self._seen_state is not None and self._seen_state.shape == states[-1].shape \
            else states[-1]
        next_states = np.concatenate([states[1:], last[None]]).astype(np.float32)
        dones = np.zeros(t, bool)
        dones[-1] = True
        success = np.zeros(t, bool)
        success[-1] = buf.success
        episode = Episode(states=states, actions=np.stack(buf.actions), rewards=np.full(t, np.nan, np.float32),
                          next_states=next_states, terminals=np.zeros(t, bool), dones=dones, successes=success,
                          images={c: np.stack(f) for c, f in buf.images.items()})
        return self.writer.add_episode(episode)

    def close(self) -> None:
        """Discard an open episode and close the file (masks written)."""
        self._buffer = None
        self.writer.close()
